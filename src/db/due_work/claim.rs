//! Claiming: a batch of due jobs leased to one worker in one statement, plain or within
//! a queue's flow-control limits.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{FromRow, PgPool, Postgres};
use uuid::Uuid;

use crate::db::Result;
use crate::model::ClaimedJob;

#[derive(FromRow)]
struct ClaimRow {
    id: Uuid,
    queue: String,
    kind: String,
    payload: serde_json::Value,
    attempt: i32,
    max_attempts: i32,
    timeout_ms: Option<i64>,
    metadata: serde_json::Value,
    schedule_id: Option<Uuid>,
    run_at: DateTime<Utc>,
    attempted_at: DateTime<Utc>,
}

const CLAIM_DUE: &str = include_str!("../sql/claim_due.sql");

/// Claims up to `limit` due jobs from `queues` for `worker`, leased for `lease`.
///
/// Row locks with FOR UPDATE SKIP LOCKED on `due_work_claim_idx`, held only for the
/// statement; afterwards the lease (state = 'running', lease_owner) is the claim.
#[tracing::instrument(skip_all, fields(limit, claimed = tracing::field::Empty))]
pub async fn claim_due(
    pool: &PgPool,
    queues: &[String],
    limit: usize,
    worker: Uuid,
    lease: Duration,
) -> Result<Vec<ClaimedJob>> {
    let query = sqlx::query_as(CLAIM_DUE).bind(queues).bind(limit as i64);
    run_claim(pool, query, worker, lease).await
}

/// Commits synchronously when it returns jobs, as `claim_due.sql` does (and says why).
const CLAIM_LIMITED: &str = "\
SELECT id, queue, kind, payload, attempt, max_attempts, timeout_ms, metadata, schedule_id, run_at, attempted_at,
       set_config('synchronous_commit', 'on', true) AS durable
FROM ordinaut_claim_limited($1, $2, $3, $4)";

/// Claims up to `limit` jobs of one queue that has flow-control limits (concurrency,
/// rate, per-key), within those limits. Takes the queue row FOR UPDATE for the
/// statement, serialising the claimers of that queue (and only of that queue).
#[tracing::instrument(skip_all, fields(queue, limit, claimed = tracing::field::Empty))]
pub async fn claim_limited(
    pool: &PgPool,
    queue: &str,
    limit: usize,
    worker: Uuid,
    lease: Duration,
) -> Result<Vec<ClaimedJob>> {
    let query = sqlx::query_as(CLAIM_LIMITED)
        .bind(queue)
        .bind(limit.min(i32::MAX as usize) as i32);
    run_claim(pool, query, worker, lease).await
}

/// Runs a claim statement with its first two parameters (what to claim, how many)
/// bound: both claim statements take the worker and the lease as `$3` and `$4`.
async fn run_claim(
    pool: &PgPool,
    query: QueryAs<'_, Postgres, ClaimRow, PgArguments>,
    worker: Uuid,
    lease: Duration,
) -> Result<Vec<ClaimedJob>> {
    let rows = query
        .bind(worker)
        .bind(lease.as_secs_f64())
        .fetch_all(pool)
        .await?;
    tracing::Span::current().record("claimed", rows.len());
    Ok(to_claimed(rows))
}

fn to_claimed(rows: Vec<ClaimRow>) -> Vec<ClaimedJob> {
    rows.into_iter()
        .map(|r| ClaimedJob {
            id: r.id,
            queue: r.queue,
            kind: r.kind,
            payload: r.payload,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            timeout: r.timeout_ms.map(|ms| Duration::from_millis(ms as u64)),
            metadata: r.metadata,
            schedule_id: r.schedule_id,
            run_at: r.run_at,
            attempted_at: r.attempted_at,
        })
        .collect()
}
