//! `job_attempts`: one row per finished attempt, written by the finish and rescue
//! statements in `due_work`. This module only reads them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::Result;

// One type for the row and the API's `Attempt`: its doc comments are the OpenAPI
// document's.
/// One finished attempt with its captured output.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
#[schema(as = Attempt)]
pub struct AttemptView {
    /// Attempt number (1-based).
    pub attempt: i32,
    /// Worker or pull lease owner that ran it.
    pub worker_id: Option<Uuid>,
    /// Start.
    pub started_at: Option<DateTime<Utc>>,
    /// End.
    pub finished_at: DateTime<Utc>,
    /// completed, retry, failed, snoozed, cancelled, lost or interrupted.
    pub outcome: String,
    /// Error message.
    pub error: Option<String>,
    /// Captured output excerpt (response body or stdout/stderr).
    pub log: Option<String>,
}

const LIST_ATTEMPTS: &str = "\
SELECT attempt, worker_id, started_at, finished_at, outcome, error, log
FROM all_attempts WHERE job_id = $1
ORDER BY finished_at, attempt";

/// A job's attempts, oldest first (job_attempts_job_idx and job_history_id_idx per
/// partition).
pub async fn list_attempts(pool: &PgPool, job_id: Uuid) -> Result<Vec<AttemptView>> {
    Ok(sqlx::query_as(LIST_ATTEMPTS)
        .bind(job_id)
        .fetch_all(pool)
        .await?)
}
