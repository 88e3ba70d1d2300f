//! `POST /v1/pull/jobs/{id}/complete` and `/fail`: finish an attempt, fenced by the
//! lease owner and the attempt number; a failure is settled as the built-in worker
//! settles it ([`crate::model::settle`]).

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoResponses, ToSchema};
use uuid::Uuid;

use super::super::AppState;
use super::super::error::{ApiError, ApiResult, ErrorBody};
use super::super::extract::{Json, parse_duration};
use super::super::jobs::{check_no_nul, check_size, job_not_found};
use super::super::keys::{JobPath, KeyAndJson};
use super::{InvalidRequest, NO_SNOOZE_BUDGET, attempt_number, finish};
use crate::db::due_work::{self, Finish, FinishKind};
use crate::db::{history, queues};
use crate::model::{self, Backoff, Settled};

/// A successful result.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The lease owner from the claim.
    pub lease_owner: Uuid,
    /// The attempt number from the claim.
    #[serde(deserialize_with = "attempt_number")]
    #[schema(minimum = 1)]
    pub attempt: i32,
    /// Output kept with the finished job: any JSON value without U+0000 in strings.
    pub output: Option<serde_json::Value>,
    /// Captured log for the attempt record (cut to WORKER_OUTPUT_LIMIT_BYTES).
    pub log: Option<String>,
}

/// A failed attempt.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// The lease owner from the claim.
    pub lease_owner: Uuid,
    /// The attempt number from the claim.
    #[serde(deserialize_with = "attempt_number")]
    #[schema(minimum = 1)]
    pub attempt: i32,
    /// What went wrong.
    #[schema(min_length = 1)]
    pub error: String,
    /// Retry after this delay ("30s") instead of the backoff, if attempts remain.
    #[schema(pattern = r"^[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)?$")]
    pub retry_after: Option<String>,
    /// false: fail for good whatever attempts remain (default true).
    pub retryable: Option<bool>,
    /// true: you stopped the job because its cancel was requested.
    pub cancelled: Option<bool>,
    /// Captured log for the attempt record (cut to WORKER_OUTPUT_LIMIT_BYTES).
    pub log: Option<String>,
}

/// Where a finished attempt left the job.
#[derive(Debug, Serialize, ToSchema)]
pub struct FinishResponse {
    /// Job id.
    pub id: Uuid,
    /// What was stored: completed, retry, failed or cancelled (a retry of a job whose
    /// cancel was requested is stored as cancelled).
    #[schema(example = "completed")]
    pub outcome: String,
    /// When it runs again (retry).
    pub next_run_at: Option<DateTime<Utc>>,
}

/// The errors of [`leased_job`], as the routes that finish a job document them.
#[derive(IntoResponses)]
#[allow(dead_code)] // Documentation only: the answers are `ApiError`s.
enum LeasedJobErrors {
    #[response(status = 404, description = "No such job")]
    NotFound(ErrorBody),
    #[response(
        status = 409,
        description = "The job is not running under this lease owner (`lease_lost`) or is at another attempt (`stale_attempt`)"
    )]
    NotLeased(ErrorBody),
}

/// The running job `id` as leased by `owner` at `attempt`, or 409/404.
async fn leased_job(
    state: &AppState,
    id: Uuid,
    owner: Uuid,
    attempt: i32,
) -> ApiResult<history::JobView> {
    let job = history::get_job(state.pool(), id)
        .await?
        .ok_or_else(|| job_not_found(id))?;
    if job.state != crate::model::JobState::Running || job.lease_owner != Some(owner) {
        return Err(lease_lost(id));
    }
    if job.attempt != attempt {
        return Err(stale_attempt(id, attempt, job.attempt));
    }
    Ok(job)
}

fn lease_lost(id: Uuid) -> ApiError {
    ApiError::Conflict {
        code: "lease_lost",
        message: format!(
            "job {id} is not running under this lease_owner (lease expired and rescued, cancelled, or finished)"
        ),
    }
}

/// An outcome for an older (or unknown) attempt than the job's current one: refused,
/// whoever sends it, so it never overwrites the newer attempt.
fn stale_attempt(id: Uuid, attempt: i32, current: i32) -> ApiError {
    tracing::info!(job_id = %id, attempt, current_attempt = current, "pull outcome refused: stale attempt");
    ApiError::Conflict {
        code: "stale_attempt",
        message: format!(
            "job {id} is at attempt {current}, not {attempt}: this attempt's lease was lost and the job claimed again"
        ),
    }
}

/// Writes `finish` fenced by the lease and attempt; 409 when it was lost in between.
async fn apply(
    state: &AppState,
    owner: Uuid,
    job: &history::JobView,
    mut finish: Finish,
) -> ApiResult<Json<FinishResponse>> {
    // The output was already checked against the payload limit; the log is cut to the
    // output limit, as the built-in handlers cut theirs.
    let settings = state.settings();
    finish.sanitize_within(settings.max_payload_bytes, settings.output_limit);
    let applied = due_work::finish_many(
        state.pool(),
        owner,
        NO_SNOOZE_BUDGET,
        std::slice::from_ref(&finish),
    )
    .await?;
    let Some(stored) = applied.iter().find(|a| a.id == job.id) else {
        // Lost between the check and the write: say which way.
        let now = due_work::live_attempts(state.pool(), &[job.id]).await?;
        return Err(match now.first() {
            Some(n) if n.lease_owner == Some(owner) && n.attempt != finish.attempt => {
                stale_attempt(job.id, finish.attempt, n.attempt)
            }
            _ => lease_lost(job.id),
        });
    };
    let ran = job
        .attempted_at
        .map(|t| (Utc::now() - t).to_std().unwrap_or_default())
        .unwrap_or_default();
    crate::metrics::job_finished(&job.queue, &job.kind, stored.outcome.as_str(), ran);
    Ok(Json(FinishResponse {
        id: job.id,
        outcome: stored.outcome.as_str().to_owned(),
        next_run_at: finish
            .next_run_at
            .filter(|_| stored.outcome == FinishKind::Retry),
    }))
}

/// Complete a job you claimed, with its output.
#[utoipa::path(
    post, path = "/v1/pull/jobs/{id}/complete", tag = "pull",
    params(JobPath),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "Completed", body = FinishResponse),
        InvalidRequest,
        LeasedJobErrors,
        (status = 413, description = "Body or output too large", body = ErrorBody),
    ),
)]
pub async fn complete(
    State(state): State<AppState>,
    KeyAndJson(JobPath(id), req): KeyAndJson<JobPath, CompleteRequest>,
) -> ApiResult<Json<FinishResponse>> {
    if let Some(output) = &req.output {
        check_no_nul("output", output)?;
        check_size("output", output, state.settings().max_payload_bytes)?;
    }
    let job = leased_job(&state, id, req.lease_owner, req.attempt).await?;
    // apply() sanitizes: NUL in the log, numbers beyond numeric in the output.
    let done = Finish {
        output: req.output,
        log: req.log,
        ..finish(id, req.attempt, FinishKind::Completed)
    };
    apply(&state, req.lease_owner, &job, done).await
}

/// Fail an attempt of a job you claimed: retried with backoff (or after `retry_after`)
/// while attempts remain, else failed for good.
#[utoipa::path(
    post, path = "/v1/pull/jobs/{id}/fail", tag = "pull",
    params(JobPath),
    request_body = FailRequest,
    responses(
        (status = 200, description = "Recorded: retry, failed or cancelled", body = FinishResponse),
        InvalidRequest,
        LeasedJobErrors,
    ),
)]
pub async fn fail(
    State(state): State<AppState>,
    KeyAndJson(JobPath(id), req): KeyAndJson<JobPath, FailRequest>,
) -> ApiResult<Json<FinishResponse>> {
    if req.error.is_empty() {
        return Err(ApiError::invalid("error", "must not be empty"));
    }
    let retry_after = req
        .retry_after
        .as_deref()
        .map(|t| parse_duration("retry_after", t, false))
        .transpose()?;
    let job = leased_job(&state, id, req.lease_owner, req.attempt).await?;
    // apply() sanitizes and bounds the error and log.
    let mut failed = Finish {
        error: Some(req.error),
        log: req.log,
        ..finish(id, req.attempt, FinishKind::Failed)
    };
    // The built-in worker's decision (model::settle): a retryable failure with
    // attempts left is rescheduled with the queue's (else the configured) backoff.
    let retryable = req.retryable != Some(false);
    if req.cancelled == Some(true) {
        failed.outcome = FinishKind::Cancelled;
    } else if model::settle(retryable, job.attempt, job.max_attempts) == Settled::Retry {
        let delay = match retry_after {
            Some(d) => d,
            None => queue_backoff(&state, &job.queue).await?.delay(job.attempt),
        };
        failed.outcome = FinishKind::Retry;
        failed.next_run_at = Some(model::delayed(Utc::now(), delay));
    }
    apply(&state, req.lease_owner, &job, failed).await
}

async fn queue_backoff(state: &AppState, queue: &str) -> ApiResult<Backoff> {
    let defaults = queues::queue_defaults(state.pool(), &[queue.to_owned()]).await?;
    Ok(queues::QueueDefaults::backoff(
        defaults.first(),
        state.settings().backoff,
    ))
}
