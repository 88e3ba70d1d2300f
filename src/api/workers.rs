//! `/v1/workers`: live worker processes (built-in workers only; pull clients are not
//! registered and appear only as lease owners of their jobs).

use std::collections::HashMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiResult, ErrorBody};
use super::extract::Json;
use crate::db::workers as store;

/// A live worker process.
#[derive(Debug, Serialize, ToSchema)]
pub struct Worker {
    /// Worker id (its lease owner id).
    pub id: Uuid,
    /// Host name.
    pub hostname: String,
    /// OS process id.
    pub pid: i32,
    /// Queues served.
    pub queues: Vec<String>,
    /// Slots.
    pub concurrency: i32,
    /// Ordinaut version.
    pub version: String,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// Last heartbeat.
    pub last_heartbeat_at: DateTime<Utc>,
    /// Jobs it holds a lease on (running or prefetched).
    pub running: i64,
    /// Handlers running, as of its last heartbeat (absent until it reported one).
    pub busy: Option<i32>,
    /// Jobs claimed and not started yet, as of its last heartbeat.
    pub prefetched: Option<i32>,
    /// Ids of the jobs it is running.
    pub running_jobs: Vec<Uuid>,
}

/// Live workers.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerList {
    /// Workers, oldest first.
    pub workers: Vec<Worker>,
}

/// List live worker processes with heartbeats, queues, concurrency and running jobs.
#[utoipa::path(
    get, path = "/v1/workers", tag = "workers",
    responses(
        (status = 200, description = "Workers", body = WorkerList),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<WorkerList>> {
    let rows = store::list_workers(state.pool()).await?;
    let ids: Vec<Uuid> = rows.iter().map(|w| w.id).collect();
    let mut jobs: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (owner, job) in store::list_running_jobs(state.pool(), &ids).await? {
        jobs.entry(owner).or_default().push(job);
    }
    let workers = rows
        .into_iter()
        .map(|w| Worker {
            running_jobs: jobs.remove(&w.id).unwrap_or_default(),
            id: w.id,
            hostname: w.hostname,
            pid: w.pid,
            queues: w.queues,
            concurrency: w.concurrency,
            version: w.version,
            started_at: w.started_at,
            last_heartbeat_at: w.last_heartbeat_at,
            running: w.running,
            busy: w.busy,
            prefetched: w.prefetched,
        })
        .collect();
    Ok(Json(WorkerList { workers }))
}
