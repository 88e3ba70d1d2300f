//! `GET /v1/jobs/{id}` (optionally waiting for the job to end) and
//! `GET /v1/jobs/{id}/attempts`.

use std::time::Duration;

use axum::extract::State;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{Attempt, Job, JobDetail, JobLookupErrors, MAX_WAIT, StateName, job_not_found};
use crate::api::AppState;
use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::{Json, Query, parse_duration};
use crate::api::keys::JobPath;
use crate::db::events::Received;
use crate::db::history;

/// Options of a job read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Wait up to this long (longer waits are cut to 120s) for the job to finish: answers
    /// as soon as it is completed, failed or cancelled, else with its state when the wait
    /// ends. A job of a queue with keep_completed = false that completes during the wait
    /// is answered as completed, without output (it is not kept).
    #[param(pattern = r"^[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)?$", example = "30s")]
    pub wait: Option<String>,
}

/// Get a job, live or finished, with its attempts; optionally wait for it to finish. A
/// workflow step still waiting for its dependencies is a job in state `waiting`.
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(JobPath, GetQuery),
    responses(
        (status = 200, description = "The job", body = JobDetail),
        (status = 400, description = "Invalid id or wait", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    // The query first: a bad query is refused before a bad id, as it always was.
    Query(q): Query<GetQuery>,
    JobPath(id): JobPath,
) -> ApiResult<Json<JobDetail>> {
    let wait = match &q.wait {
        Some(w) => parse_duration("wait", w, false)?
            .min(MAX_WAIT)
            .min(state.settings().max_wait),
        None => Duration::ZERO,
    };
    let job = if wait.is_zero() {
        read_job(&state, id).await?
    } else {
        wait_for_end(&state, id, wait).await?
    };
    let job = job.ok_or_else(|| job_not_found(id))?;
    let attempts = crate::db::attempts::list_attempts(state.pool(), id).await?;
    // Only a workflow's job pays for the step lookup.
    let workflow_step = match job.workflow_id {
        Some(_) => crate::db::workflows::step_of_job(state.pool(), id).await?,
        None => None,
    };
    Ok(Json(JobDetail {
        job,
        attempts,
        workflow_step,
    }))
}

async fn read_job(state: &AppState, id: Uuid) -> ApiResult<Option<Job>> {
    Ok(history::get_job(state.pool(), id).await?)
}

/// Re-reads the job whenever an event names it (or events may have been missed) until
/// it is terminal or `wait` has passed. Subscribes before the first read, so a change
/// between that read and the wait cannot be missed.
///
/// A job seen live that then vanishes completed in a queue with `keep_completed =
/// false` (failed and cancelled jobs are always kept, and retention never touches live
/// ones): it is answered as completed, without output, rather than as not found.
async fn wait_for_end(state: &AppState, id: Uuid, wait: Duration) -> ApiResult<Option<Job>> {
    let mut rx = state.subscribe().await;
    let deadline = Instant::now() + wait;
    let mut last_live: Option<Job> = None;
    loop {
        let job = read_job(state, id).await?;
        match job {
            None => return Ok(last_live.map(completed_unkept)),
            Some(j) if j.state.is_terminal() => return Ok(Some(j)),
            Some(j) => last_live = Some(j),
        }
        let woke = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => false,
            _ = state.stopping().cancelled() => false,
            woke = changed(&mut rx, id) => woke,
        };
        if !woke {
            return Ok(read_job(state, id)
                .await?
                .or_else(|| last_live.map(completed_unkept)));
        }
    }
}

/// The last live view of a job that completed and was not kept.
fn completed_unkept(mut job: Job) -> Job {
    job.state = StateName::Completed;
    job.lease_owner = None;
    job.finished_at = Some(Utc::now());
    job
}

/// Resolves when an event names `id`, or when events may have been missed.
async fn changed(rx: &mut broadcast::Receiver<Received>, id: Uuid) -> bool {
    loop {
        match rx.recv().await {
            Ok(Received::Events(batch)) if batch.iter().any(|e| e.id == id) => return true,
            Ok(Received::Events(_)) => {}
            Ok(Received::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => return true,
            // The sender lives as long as the state; never reached in practice.
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// A job's attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptList {
    /// Finished attempts, oldest first.
    pub attempts: Vec<Attempt>,
}

/// A job's finished attempts with their errors and captured output.
#[utoipa::path(
    get, path = "/v1/jobs/{id}/attempts", tag = "jobs",
    params(JobPath),
    responses(
        (status = 200, description = "Attempts, oldest first", body = AttemptList),
        JobLookupErrors,
    ),
)]
pub async fn attempts(
    State(state): State<AppState>,
    JobPath(id): JobPath,
) -> ApiResult<Json<AttemptList>> {
    let attempts = crate::db::attempts::list_attempts(state.pool(), id).await?;
    // A completed job of a queue that keeps no history is gone but its attempts stay.
    if attempts.is_empty() && history::get_job(state.pool(), id).await?.is_none() {
        return Err(job_not_found(id));
    }
    Ok(Json(AttemptList { attempts }))
}
