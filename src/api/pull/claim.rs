//! `POST /v1/pull/claim`: lease up to `limit` due jobs, waiting for work if asked.

use std::time::Duration;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;
use utoipa::ToSchema;
use uuid::Uuid;

use super::super::AppState;
use super::super::error::{ApiError, ApiResult};
use super::super::extract::{Json, check_range, int, parse_duration};
use super::super::jobs::check_name;
use super::{
    CLAIM_MARGIN, InvalidRequest, MAX_CLAIM_WAIT, MAX_JOBS, MAX_QUEUES, NO_SNOOZE_BUDGET,
    QueueName, check_count, finish, lease_from,
};
use crate::db::due_work::{self, Finish, FinishKind};
use crate::db::events::Received;
use crate::db::queues;
use crate::model::ClaimedJob;

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

/// Claim up to `limit` due jobs, optionally waiting for work.
#[utoipa::path(
    post, path = "/v1/pull/claim", tag = "pull",
    request_body = ClaimRequest,
    responses(
        (status = 200, description = "Claimed jobs (maybe none)", body = ClaimResponse),
        InvalidRequest,
    ),
)]
pub async fn claim(
    State(state): State<AppState>,
    Json(req): Json<ClaimRequest>,
) -> ApiResult<Json<ClaimResponse>> {
    check_count("queues", "name", req.queues.len(), MAX_QUEUES)?;
    for (i, q) in req.queues.iter().enumerate() {
        check_name(&format!("queues[{i}]"), q)?;
    }
    let limit = check_range("limit", req.limit.unwrap_or(1) as usize, 1..=MAX_JOBS)?;
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
        jobs,
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
) -> ApiResult<Vec<ClaimedJob>> {
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
) -> crate::db::Result<Vec<ClaimedJob>> {
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
async fn hand_back(pool: &crate::db::Pool, owner: Uuid, jobs: &[ClaimedJob]) {
    if jobs.is_empty() {
        return;
    }
    let batch: Vec<Finish> = jobs
        .iter()
        .map(|j| finish(j.id, j.attempt, FinishKind::Interrupted))
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
            Ok(Received::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}
