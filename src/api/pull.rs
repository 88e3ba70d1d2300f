//! `/v1/pull`: the pull model, so workers in any language can run jobs over HTTP.
//!
//! A pull client claims jobs with a lease, extends the lease while it works, and
//! completes or fails each job; the same store functions and guards as the built-in
//! worker apply (claim with SKIP LOCKED, finish fenced by lease_owner AND the claimed
//! attempt), so a job is finished exactly once and a lost lease, or an outcome for an
//! older attempt than the job's current one, is reported as 409.
//!
//! A pull client is identified only by its lease-owner UUID (chosen by the client or
//! issued by the first claim). It is deliberately NOT registered in `workers`: the
//! rescuer treats a worker row whose session advisory lock nobody holds as dead and
//! would hand its jobs back at once. A pull client's jobs are rescued by lease expiry
//! instead; heartbeats extend the lease.

use std::time::Duration;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Json, Path, int, parse_duration, parse_id};
use super::jobs::{check_name, has_nul};
use crate::db::due_work::{self, Finish, FinishKind};
use crate::db::events::Received;
use crate::db::{history, queues};
use crate::model::{self, Backoff, Settled};

/// A queue name (`model::validate_name`), for the OpenAPI document.
#[derive(ToSchema)]
#[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
pub struct QueueName(#[allow(dead_code)] String);

/// Longest claim wait.
pub const MAX_CLAIM_WAIT: Duration = Duration::from_secs(60);
/// A waiting claim stops claiming this long (at most half its wait) before its
/// deadline and then answers (see [`claim_window`]).
pub const CLAIM_MARGIN: Duration = Duration::from_millis(1500);
/// Most jobs per claim or heartbeat.
const MAX_JOBS: usize = 1000;
/// Most queues per claim.
const MAX_QUEUES: usize = 100;
/// Lease bounds in seconds.
const LEASE_RANGE: std::ops::RangeInclusive<u32> = 2..=3600;
/// Pull clients never snooze (a fail with retry_after is a retry), so no budget applies.
const NO_SNOOZE_BUDGET: u32 = u32::MAX;

/// A required attempt number, 1 or more (accepts `2.0` like the other integers).
fn attempt_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    use serde::de::Error;
    match int::opt_i32(d)? {
        Some(n) if n >= 1 => Ok(n),
        Some(n) => Err(D::Error::custom(format!("attempt {n} must be at least 1"))),
        None => Err(D::Error::custom(
            "attempt is required: the attempt number from the claim",
        )),
    }
}

/// What to claim.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Queues to claim from (paused ones are skipped), 1 to 100.
    #[schema(min_items = 1, max_items = 100, value_type = Vec<QueueName>)]
    pub queues: Vec<String>,
    /// Most jobs to claim, 1..=1000 (default 1).
    #[serde(default, deserialize_with = "int::opt_u32")]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Lease length in seconds, 2..=3600 (default WORKER_LEASE_SECONDS).
    #[serde(default, deserialize_with = "int::opt_u32")]
    #[schema(minimum = 2, maximum = 3600)]
    pub lease_seconds: Option<u32>,
    /// Wait up to this long for work when none is due ("10s"); longer waits are cut to
    /// 60s. Claiming stops 1.5 s (at most half the wait) before the wait ends; an empty
    /// answer comes then.
    #[schema(pattern = r"^[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)?$", example = "10s")]
    pub wait: Option<String>,
    /// Your lease-owner id; one is issued when absent. Reuse it for later claims.
    pub lease_owner: Option<Uuid>,
}

/// A claimed job.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimedJob {
    /// Job id.
    pub id: Uuid,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// Payload.
    pub payload: serde_json::Value,
    /// This attempt's number, from 1. Send it back with heartbeats, completes and
    /// fails: an outcome for any other attempt is refused (409 `stale_attempt`).
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Per-attempt timeout in ms set at enqueue.
    pub timeout_ms: Option<i64>,
    /// Metadata set at enqueue.
    pub metadata: serde_json::Value,
    /// When the job was due.
    pub run_at: DateTime<Utc>,
    /// When this attempt started.
    pub attempted_at: DateTime<Utc>,
}

/// Claimed jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimResponse {
    /// Lease owner holding the jobs: send it, with each job's `attempt`, with
    /// heartbeats, completes and fails.
    pub lease_owner: Uuid,
    /// Lease length granted, in seconds.
    pub lease_seconds: u32,
    /// The jobs (possibly none).
    pub jobs: Vec<ClaimedJob>,
}

fn lease_from(state: &AppState, lease_seconds: Option<u32>) -> ApiResult<Duration> {
    match lease_seconds {
        None => Ok(state.settings().lease),
        Some(s) if LEASE_RANGE.contains(&s) => Ok(Duration::from_secs(u64::from(s))),
        Some(s) => Err(ApiError::invalid(
            "lease_seconds",
            format!("{s} is out of range 2..=3600"),
        )),
    }
}

/// Claim up to `limit` due jobs, optionally waiting for work.
#[utoipa::path(
    post, path = "/v1/pull/claim", tag = "pull",
    request_body = ClaimRequest,
    responses(
        (status = 200, description = "Claimed jobs (maybe none)", body = ClaimResponse),
        (status = 400, description = "Malformed JSON or an invalid field", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn claim(
    State(state): State<AppState>,
    Json(req): Json<ClaimRequest>,
) -> ApiResult<Json<ClaimResponse>> {
    if req.queues.is_empty() || req.queues.len() > MAX_QUEUES {
        return Err(ApiError::invalid(
            "queues",
            format!("must name 1 to {MAX_QUEUES} queues"),
        ));
    }
    for (i, q) in req.queues.iter().enumerate() {
        check_name(&format!("queues[{i}]"), q)?;
    }
    let limit = req.limit.unwrap_or(1) as usize;
    if !(1..=MAX_JOBS).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("{limit} is out of range 1..={MAX_JOBS}"),
        ));
    }
    let lease = lease_from(&state, req.lease_seconds)?;
    let wait = match &req.wait {
        None => Duration::ZERO,
        Some(w) => parse_duration("wait", w, false)?
            .min(MAX_CLAIM_WAIT)
            .min(state.settings().max_wait),
    };
    let owner = req.lease_owner.unwrap_or_else(Uuid::now_v7);
    // Queues with limits are claimed through ordinaut_claim_limited, within their
    // limits (claim_due skips them). Read once per request: a queue that gains limits
    // meanwhile is skipped by claim_due until the client's next claim, never overrun.
    let limited: Vec<String> = queues::queue_defaults(state.pool(), &req.queues)
        .await?
        .into_iter()
        .filter(|q| q.limited)
        .map(|q| q.name)
        .collect();
    let claim_until = Instant::now() + claim_window(wait);
    // The event gate (and with it the NOTIFY cost of every claim, finish and enqueue in
    // the cluster) opens only for a claim that actually has to wait.
    let mut rx: Option<broadcast::Receiver<Received>> = None;
    let jobs = loop {
        let jobs = claim_handed_over(&state, &req.queues, &limited, limit, owner, lease).await?;
        if !jobs.is_empty() || Instant::now() >= claim_until {
            break jobs;
        }
        let Some(rx) = rx.as_mut() else {
            // Claim once more right after subscribing: work enqueued before the
            // subscription sends this receiver no event.
            rx = Some(state.subscribe().await);
            continue;
        };
        // Events wake us for new or handed-back work; the poll covers jobs whose
        // run_at passes, which send no event.
        tokio::select! {
            _ = tokio::time::sleep_until(claim_until) => {}
            _ = tokio::time::sleep(state.settings().poll_interval) => {}
            _ = state.stopping().cancelled() => break Vec::new(),
            _ = work_arrived(rx, &req.queues) => {}
        }
    };
    for job in &jobs {
        crate::metrics::jobs_claimed(&job.queue, "pull", 1);
    }
    tracing::debug!(lease_owner = %owner, claimed = jobs.len(), "pull claim");
    Ok(Json(ClaimResponse {
        lease_owner: owner,
        lease_seconds: lease.as_secs() as u32,
        jobs: jobs
            .into_iter()
            .map(|j| ClaimedJob {
                id: j.id,
                queue: j.queue,
                kind: j.kind,
                payload: j.payload,
                attempt: j.attempt,
                max_attempts: j.max_attempts,
                timeout_ms: j.timeout.map(|t| t.as_millis() as i64),
                metadata: j.metadata,
                run_at: j.run_at,
                attempted_at: j.attempted_at,
            })
            .collect(),
    }))
}

/// How long after its start a claim that may wait `wait` keeps claiming: until
/// [`CLAIM_MARGIN`] (at most half the wait) before the deadline. A claim committed in
/// the wait's last moment would often reach a client that has just given up (its own
/// timeout, a proxy's), leaving the jobs leased to nobody until the lease expires.
fn claim_window(wait: Duration) -> Duration {
    wait.saturating_sub(CLAIM_MARGIN.min(wait / 2))
}

/// One claim round, run to its end even if the request is dropped meanwhile: when the
/// client disconnected while the claim ran (the server then drops this handler), the
/// jobs claimed for nobody are handed back at once, their attempt given back, instead
/// of waiting out the lease and being rescued as `lost`.
async fn claim_handed_over(
    state: &AppState,
    queues: &[String],
    limited: &[String],
    limit: usize,
    owner: Uuid,
    lease: Duration,
) -> ApiResult<Vec<crate::model::ClaimedJob>> {
    let (tx, rx) = oneshot::channel();
    let pool = state.pool().clone();
    let (queues, limited) = (queues.to_vec(), limited.to_vec());
    // Not awaited by anyone once the request is gone, by design; it is bounded by its
    // statements (one per limited queue, one claim_due, at most one hand-back).
    tokio::spawn(async move {
        let claimed = claim_from(&pool, &queues, &limited, limit, owner, lease).await;
        if let Err(Ok(jobs)) = tx.send(claimed)
            && !jobs.is_empty()
        {
            tracing::info!(lease_owner = %owner, jobs = jobs.len(), "pull client gone before its claim returned; handing the jobs back");
            hand_back(&pool, owner, &jobs).await;
        }
    });
    match rx.await {
        Ok(claimed) => Ok(claimed?),
        Err(_) => Err(ApiError::Internal(
            "the claim task ended without a result".to_owned(),
        )),
    }
}

/// Claims up to `limit` jobs: from the limited queues first (each within its limits),
/// then from the others. If a later statement fails, the jobs already claimed are
/// handed back before the error is returned.
async fn claim_from(
    pool: &crate::db::Pool,
    queues: &[String],
    limited: &[String],
    limit: usize,
    owner: Uuid,
    lease: Duration,
) -> crate::db::Result<Vec<crate::model::ClaimedJob>> {
    let mut jobs = Vec::new();
    // Limited first: a backlog on an unlimited queue would otherwise fill every claim.
    for queue in limited {
        let left = limit.saturating_sub(jobs.len());
        if left == 0 {
            return Ok(jobs);
        }
        match due_work::claim_limited(pool, queue, left, owner, lease).await {
            Ok(more) => jobs.extend(more),
            Err(e) => {
                hand_back(pool, owner, &jobs).await;
                return Err(e);
            }
        }
    }
    let left = limit.saturating_sub(jobs.len());
    if left > 0 && limited.len() < queues.len() {
        match due_work::claim_due(pool, queues, left, owner, lease).await {
            Ok(more) => jobs.extend(more),
            Err(e) => {
                hand_back(pool, owner, &jobs).await;
                return Err(e);
            }
        }
    }
    Ok(jobs)
}

/// Gives claimed jobs back as never started (`interrupted`: available again at once,
/// the attempt not spent). If that fails too, lease expiry rescues them later.
async fn hand_back(pool: &crate::db::Pool, owner: Uuid, jobs: &[crate::model::ClaimedJob]) {
    if jobs.is_empty() {
        return;
    }
    let batch: Vec<Finish> = jobs
        .iter()
        .map(|j| Finish {
            id: j.id,
            attempt: j.attempt,
            outcome: FinishKind::Interrupted,
            next_run_at: None,
            error: None,
            output: None,
            log: None,
        })
        .collect();
    if let Err(e) = due_work::finish_many(pool, owner, NO_SNOOZE_BUDGET, &batch).await {
        tracing::warn!(lease_owner = %owner, jobs = jobs.len(), error = %e, "cannot hand back unclaimed pull jobs; their leases will expire");
    }
}

async fn work_arrived(rx: &mut broadcast::Receiver<Received>, queues: &[String]) {
    loop {
        match rx.recv().await {
            Ok(Received::Events(batch))
                if batch
                    .iter()
                    .any(|e| e.state == "available" && queues.contains(&e.queue)) =>
            {
                return;
            }
            Ok(Received::Events(_)) => {}
            Ok(Received::Reconnected) | Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// One claimed attempt you hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeldAttempt {
    /// Job id.
    pub id: Uuid,
    /// The attempt number from the claim.
    #[serde(deserialize_with = "attempt_number")]
    #[schema(minimum = 1)]
    pub attempt: i32,
}

/// Leases to extend.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The lease owner from the claim.
    pub lease_owner: Uuid,
    /// Jobs to extend, each with its attempt from the claim, 1 to 1000.
    #[schema(min_items = 1, max_items = 1000)]
    pub jobs: Vec<HeldAttempt>,
    /// New lease length from now in seconds, 2..=3600 (default WORKER_LEASE_SECONDS).
    #[serde(default, deserialize_with = "int::opt_u32")]
    #[schema(minimum = 2, maximum = 3600)]
    pub lease_seconds: Option<u32>,
}

/// A lease that was extended.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExtendedLease {
    /// Job id.
    pub id: Uuid,
    /// An operator asked to cancel this job: stop it and fail it with `cancelled: true`.
    pub cancel_requested: bool,
}

/// Result of a heartbeat.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatResponse {
    /// Leases extended.
    pub extended: Vec<ExtendedLease>,
    /// Jobs that are no longer yours at that attempt (rescued after lease expiry,
    /// finished, or claimed again since): stop working on them; their results will be
    /// refused.
    pub lost: Vec<Uuid>,
}

/// Extend the leases of jobs you are running (one statement for all of them).
#[utoipa::path(
    post, path = "/v1/pull/heartbeat", tag = "pull",
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "Leases extended; lost ones listed", body = HeartbeatResponse),
        (status = 400, description = "Malformed JSON or an invalid field", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    Json(req): Json<HeartbeatRequest>,
) -> ApiResult<Json<HeartbeatResponse>> {
    if req.jobs.is_empty() || req.jobs.len() > MAX_JOBS {
        return Err(ApiError::invalid(
            "jobs",
            format!("must list 1 to {MAX_JOBS} jobs"),
        ));
    }
    let held: Vec<(Uuid, i32)> = req.jobs.iter().map(|j| (j.id, j.attempt)).collect();
    let lease = lease_from(&state, req.lease_seconds)?;
    let mut conn = state
        .pool()
        .acquire()
        .await
        .map_err(crate::db::Error::from)?;
    let extended = due_work::extend_leases(&mut conn, req.lease_owner, &held, lease).await?;
    drop(conn);
    let lost = held
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !extended.iter().any(|e| e.id == *id))
        .collect();
    Ok(Json(HeartbeatResponse {
        extended: extended
            .into_iter()
            .map(|e| ExtendedLease {
                id: e.id,
                cancel_requested: e.cancel_requested,
            })
            .collect(),
        lost,
    }))
}

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

/// The running job `id` as leased by `owner` at `attempt`, or 409/404.
async fn leased_job(
    state: &AppState,
    id: Uuid,
    owner: Uuid,
    attempt: i32,
) -> ApiResult<history::JobView> {
    let job = history::get_job(state.pool(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job {id} not found")))?;
    if job.state != "running" || job.lease_owner != Some(owner) {
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
    params(("id" = Uuid, Path, description = "Job id")),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "Completed", body = FinishResponse),
        (status = 400, description = "Malformed JSON or an invalid field", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is not running under this lease owner (`lease_lost`) or is at another attempt (`stale_attempt`)", body = ErrorBody),
        (status = 413, description = "Body or output too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn complete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<CompleteRequest>,
) -> ApiResult<Json<FinishResponse>> {
    let id = parse_id("id", &id)?;
    if req.output.as_ref().is_some_and(has_nul) {
        return Err(ApiError::invalid(
            "output",
            "strings must not contain U+0000",
        ));
    }
    if let Some(output) = &req.output {
        let size = serde_json::to_string(output)
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        let limit = state.settings().max_payload_bytes;
        if size > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "output: {size} bytes exceeds the limit of {limit} bytes"
            )));
        }
    }
    let job = leased_job(&state, id, req.lease_owner, req.attempt).await?;
    // apply() sanitizes: NUL in the log, numbers beyond numeric in the output.
    let finish = Finish {
        id,
        attempt: req.attempt,
        outcome: FinishKind::Completed,
        next_run_at: None,
        error: None,
        output: req.output,
        log: req.log,
    };
    apply(&state, req.lease_owner, &job, finish).await
}

/// Fail an attempt of a job you claimed: retried with backoff (or after `retry_after`)
/// while attempts remain, else failed for good.
#[utoipa::path(
    post, path = "/v1/pull/jobs/{id}/fail", tag = "pull",
    params(("id" = Uuid, Path, description = "Job id")),
    request_body = FailRequest,
    responses(
        (status = 200, description = "Recorded: retry, failed or cancelled", body = FinishResponse),
        (status = 400, description = "Malformed JSON or an invalid field", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is not running under this lease owner (`lease_lost`) or is at another attempt (`stale_attempt`)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn fail(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<FailRequest>,
) -> ApiResult<Json<FinishResponse>> {
    let id = parse_id("id", &id)?;
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
    let mut finish = Finish {
        id,
        attempt: req.attempt,
        outcome: FinishKind::Failed,
        next_run_at: None,
        error: Some(req.error),
        output: None,
        log: req.log,
    };
    // The built-in worker's decision (model::settle): a retryable failure with
    // attempts left is rescheduled with the queue's (else the configured) backoff.
    let retryable = req.retryable != Some(false);
    if req.cancelled == Some(true) {
        finish.outcome = FinishKind::Cancelled;
    } else if model::settle(retryable, job.attempt, job.max_attempts) == Settled::Retry {
        let delay = match retry_after {
            Some(d) => d,
            None => queue_backoff(&state, &job.queue).await?.delay(job.attempt),
        };
        finish.outcome = FinishKind::Retry;
        finish.next_run_at = Some(model::delayed(Utc::now(), delay));
    }
    apply(&state, req.lease_owner, &job, finish).await
}

async fn queue_backoff(state: &AppState, queue: &str) -> ApiResult<Backoff> {
    let defaults = queues::queue_defaults(state.pool(), &[queue.to_owned()]).await?;
    Ok(queues::QueueDefaults::backoff(
        defaults.first(),
        state.settings().backoff,
    ))
}
