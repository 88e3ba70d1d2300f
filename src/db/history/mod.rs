//! Reading jobs wherever they live: `due_work` (live) and `job_history` (terminal), and
//! the upkeep of the history tables' partitions (`job_history`, `job_attempts`).
//!
//! The writes that move rows into history live in `due_work` (`finish`, `lease`,
//! `cancel`), in the same statements as the transitions that cause them; here are only
//! reads and the retention service's partition changes, each a lock-bounded function of
//! migration 0010.
//!
//! Here the job as read (`JobView`) and the single-job lookup; `list` holds the filtered,
//! paged and searched list, `partitions` the partition upkeep.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::Result;
use crate::model::JobState;

mod list;
mod partitions;

pub use list::{
    JSON_PATH_MATCH, JobFilter, JobMatch, JobsPage, check_json_path, explain_list_jobs, list_jobs,
    list_jobs_budgeted,
};
pub use partitions::{
    PartitionChange, create_partition, drop_partition, partitions_older_than,
    prune_default_partitions,
};

// One type for the row and the API's `Job`: its doc comments are the OpenAPI document's.
/// A job, live or finished.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
#[schema(as = Job)]
pub struct JobView {
    /// Job id (UUIDv7, time-ordered).
    pub id: Uuid,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    // The effective state: a 'scheduled' row whose run_at has passed reads as
    // 'available'. A name no `JobState` knows is a decode error.
    /// Effective state.
    #[sqlx(try_from = "String")]
    pub state: JobState,
    /// JSON payload.
    pub payload: serde_json::Value,
    /// Lower runs first.
    pub priority: i16,
    /// Attempts made, including a running one.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Not before.
    pub run_at: DateTime<Utc>,
    /// Idempotency key.
    pub unique_key: Option<String>,
    /// Lease owner of a running job.
    pub lease_owner: Option<Uuid>,
    /// Schedule that created it.
    pub schedule_id: Option<Uuid>,
    /// Metadata (`request_id` of the enqueueing request, ...).
    pub metadata: serde_json::Value,
    /// Output of a completed job.
    pub output: Option<serde_json::Value>,
    // Read by the single-job lookup only.
    /// Latest progress of a running job: `{"attempt", "percent", "message", "at"}`.
    #[schema(value_type = Option<Object>)]
    #[sqlx(default)]
    pub progress: Option<serde_json::Value>,
    /// Last error.
    pub last_error: Option<String>,
    /// Enqueue time.
    pub created_at: DateTime<Utc>,
    /// Start of the latest attempt.
    pub attempted_at: Option<DateTime<Utc>>,
    /// Terminal time.
    pub finished_at: Option<DateTime<Utc>>,
    /// The workflow it is a step of.
    #[sqlx(default)]
    pub workflow_id: Option<Uuid>,
}

const GET_JOB: &str = "\
SELECT id, queue, kind,
       CASE WHEN state = 'scheduled' AND run_at <= now() THEN 'available' ELSE state END AS state,
       payload, priority, attempt, max_attempts, run_at, unique_key, lease_owner, schedule_id, metadata,
       NULL::jsonb AS output, progress, last_error, created_at, attempted_at,
       NULL::timestamptz AS finished_at, workflow_id
FROM due_work WHERE id = $1
UNION ALL
SELECT id, queue, kind, state, payload, priority, attempt, max_attempts, run_at, unique_key,
       NULL::uuid, schedule_id, metadata, output, NULL::jsonb, last_error, created_at, attempted_at,
       finished_at, workflow_id
FROM job_history WHERE id = $1
UNION ALL
SELECT job_id, queue, kind, CASE state WHEN 'skipped' THEN 'cancelled' ELSE state END, payload,
       priority, 0, max_attempts, created_at, NULL::text, NULL::uuid, NULL::uuid, metadata, output,
       NULL::jsonb, reason, created_at, NULL::timestamptz, finished_at, workflow_id
FROM workflow_steps WHERE job_id = $1
LIMIT 1";

/// One job by id, live or finished, or a workflow step without a job row (waiting for
/// its dependencies, or ended without running: skipped reads as cancelled). Primary-key
/// lookup on due_work, then the id index of each job_history partition, then the
/// steps' job index (reached only when neither has the job).
pub async fn get_job(pool: &PgPool, id: Uuid) -> Result<Option<JobView>> {
    Ok(sqlx::query_as(GET_JOB)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}
