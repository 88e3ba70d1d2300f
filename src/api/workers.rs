//! `/v1/workers`: live worker processes (built-in workers only; pull clients are not
//! registered and appear only as lease owners of their jobs).

use std::collections::HashMap;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::ApiResult;
use super::extract::Json;
use crate::db::workers::{self as store, WorkerView as Worker};

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
    ),
)]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<WorkerList>> {
    let rows = store::list_workers(state.pool()).await?;
    let ids: Vec<Uuid> = rows.iter().map(|w| w.registration.id).collect();
    let mut jobs: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (owner, job) in store::list_running_jobs(state.pool(), &ids).await? {
        jobs.entry(owner).or_default().push(job);
    }
    let workers: Vec<Worker> = rows
        .into_iter()
        .map(|mut w| {
            w.life.running_jobs = jobs.remove(&w.registration.id).unwrap_or_default();
            w
        })
        .collect();
    Ok(Json(WorkerList { workers }))
}
