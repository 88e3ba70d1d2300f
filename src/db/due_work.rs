//! `due_work`: the live jobs. Enqueue, claim, heartbeat, finish, rescue, cancel, retry.
//!
//! This is the hot path's SQL. Its write budget per batch of n jobs is one claim
//! statement and one finish statement; nothing here writes once per job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use super::{Error, Result, map_constraint};
use crate::model::{ClaimedJob, JobState};

/// A job to insert. `id` is chosen by the caller (UUIDv7).
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Job id.
    pub id: Uuid,
    /// Queue name (validated).
    pub queue: String,
    /// Kind name (validated).
    pub kind: String,
    /// JSON payload.
    pub payload: serde_json::Value,
    /// Lower runs first.
    pub priority: i16,
    /// Not before; None = now.
    pub run_at: Option<DateTime<Utc>>,
    /// None = queue default, else config default.
    pub max_attempts: Option<i32>,
    /// Idempotency key among live jobs.
    pub unique_key: Option<String>,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
    /// Free-form metadata (request id, correlation).
    pub metadata: serde_json::Value,
    /// Schedule that fired it.
    pub schedule_id: Option<Uuid>,
    /// Intended fire time of that schedule.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Jobs sharing a key are limited by their queue's key_concurrency.
    pub concurrency_key: Option<String>,
}

impl NewJob {
    /// A job with defaults for everything but queue, kind and payload.
    pub fn new(
        queue: impl Into<String>,
        kind: impl Into<String>,
        payload: serde_json::Value,
    ) -> NewJob {
        NewJob {
            id: Uuid::now_v7(),
            queue: queue.into(),
            kind: kind.into(),
            payload,
            priority: 0,
            run_at: None,
            max_attempts: None,
            unique_key: None,
            timeout: None,
            metadata: serde_json::Value::Object(Default::default()),
            schedule_id: None,
            scheduled_for: None,
            concurrency_key: None,
        }
    }
}

/// What an enqueue did for one input job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id: the new one, or the existing live job's for a duplicate unique key.
    pub id: Uuid,
    /// True when an existing live job was returned instead of inserting.
    pub duplicate: bool,
}

const ENQUEUE_MANY: &str = include_str!("sql/enqueue_many.sql");

const FIND_BY_UNIQUE_KEYS: &str =
    "SELECT unique_key, id FROM due_work WHERE unique_key = ANY($1::text[])";

/// Inserts `jobs` in one statement, all or nothing, and returns one result per input in
/// input order.
///
/// Takes row locks on the inserted rows only; conflicts on `due_work_unique_key_idx` are
/// resolved to the existing live job. Batches with unique keys run in a transaction so
/// that the follow-up lookup and any re-insert stay all or nothing.
#[tracing::instrument(skip_all, fields(jobs = jobs.len()))]
pub async fn enqueue_many(
    pool: &PgPool,
    jobs: &[NewJob],
    default_max_attempts: i32,
) -> Result<Vec<Enqueued>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    if jobs.iter().all(|j| j.unique_key.is_none()) {
        let mut conn = pool.acquire().await?;
        insert_jobs(&mut conn, jobs, default_max_attempts).await?;
        return Ok(jobs
            .iter()
            .map(|j| Enqueued {
                id: j.id,
                duplicate: false,
            })
            .collect());
    }
    let mut tx = pool.begin().await?;
    let mut results: Vec<Option<Enqueued>> = vec![None; jobs.len()];
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    // A conflicting live job can finish between the insert and the lookup; then its key
    // is free again and the next round inserts ours. Bounded: each round either resolves
    // a job or observes one finishing. Sets and maps keep each round linear in the
    // batch (a Vec lookup per job made a 100,000-job batch quadratic).
    for _ in 0..16 {
        let batch: Vec<NewJob> = pending.iter().map(|&i| jobs[i].clone()).collect();
        let inserted: std::collections::HashSet<Uuid> =
            insert_jobs(&mut tx, &batch, default_max_attempts)
                .await?
                .into_iter()
                .collect();
        let keys: Vec<&str> = pending
            .iter()
            .filter(|&&i| !inserted.contains(&jobs[i].id))
            .filter_map(|&i| jobs[i].unique_key.as_deref())
            .collect();
        let existing: std::collections::HashMap<String, Uuid> = if keys.is_empty() {
            Default::default()
        } else {
            sqlx::query_as::<_, (String, Uuid)>(FIND_BY_UNIQUE_KEYS)
                .bind(&keys)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect()
        };
        let mut still = Vec::new();
        for &i in &pending {
            let job = &jobs[i];
            if inserted.contains(&job.id) {
                results[i] = Some(Enqueued {
                    id: job.id,
                    duplicate: false,
                });
            } else if let Some(id) = job.unique_key.as_ref().and_then(|k| existing.get(k)) {
                results[i] = Some(Enqueued {
                    id: *id,
                    duplicate: true,
                });
            } else {
                still.push(i);
            }
        }
        pending = still;
        if pending.is_empty() {
            tx.commit().await?;
            return Ok(results
                .into_iter()
                .map(|r| r.expect("every pending job was resolved"))
                .collect());
        }
    }
    Err(Error::Conflict(
        "unique keys kept changing while enqueueing; try again".to_owned(),
    ))
}

pub(crate) async fn insert_jobs(
    conn: &mut PgConnection,
    jobs: &[NewJob],
    default_max_attempts: i32,
) -> Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    let kinds: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = jobs.iter().map(|j| &j.payload).collect();
    let priorities: Vec<i16> = jobs.iter().map(|j| j.priority).collect();
    let run_ats: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.run_at).collect();
    let max_attempts: Vec<Option<i32>> = jobs.iter().map(|j| j.max_attempts).collect();
    let unique_keys: Vec<Option<&str>> = jobs.iter().map(|j| j.unique_key.as_deref()).collect();
    let timeouts: Vec<Option<i64>> = jobs
        .iter()
        .map(|j| j.timeout.map(|t| t.as_millis().max(1) as i64))
        .collect();
    let metadata: Vec<&serde_json::Value> = jobs.iter().map(|j| &j.metadata).collect();
    let schedule_ids: Vec<Option<Uuid>> = jobs.iter().map(|j| j.schedule_id).collect();
    let scheduled_for: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.scheduled_for).collect();
    let keys: Vec<Option<&str>> = jobs.iter().map(|j| j.concurrency_key.as_deref()).collect();
    sqlx::query_scalar(ENQUEUE_MANY)
        .bind(&ids)
        .bind(&queues)
        .bind(&kinds)
        .bind(&payloads)
        .bind(&priorities)
        .bind(&run_ats)
        .bind(&max_attempts)
        .bind(&unique_keys)
        .bind(&timeouts)
        .bind(&metadata)
        .bind(&schedule_ids)
        .bind(default_max_attempts)
        .bind(&scheduled_for)
        .bind(&keys)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_constraint)
}

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

const CLAIM_DUE: &str = include_str!("sql/claim_due.sql");

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
    let rows: Vec<ClaimRow> = sqlx::query_as(CLAIM_DUE)
        .bind(queues)
        .bind(limit as i64)
        .bind(worker)
        .bind(lease.as_secs_f64())
        .fetch_all(pool)
        .await?;
    tracing::Span::current().record("claimed", rows.len());
    Ok(to_claimed(rows))
}

const CLAIM_LIMITED: &str = "\
SELECT id, queue, kind, payload, attempt, max_attempts, timeout_ms, metadata, schedule_id, run_at, attempted_at
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
    let rows: Vec<ClaimRow> = sqlx::query_as(CLAIM_LIMITED)
        .bind(queue)
        .bind(limit.min(i32::MAX as usize) as i32)
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

/// How one attempt ended, as the finish statement stores it.
#[derive(Debug, Clone)]
pub struct Finish {
    /// Job id.
    pub id: Uuid,
    /// The attempt this outcome belongs to (from the claim): the fence.
    pub attempt: i32,
    /// One of completed, failed, cancelled, retry, snoozed, interrupted.
    pub outcome: FinishKind,
    /// When to run again (retry, snoozed).
    pub next_run_at: Option<DateTime<Utc>>,
    /// Error text (retry, failed, cancelled, snoozed reason).
    pub error: Option<String>,
    /// Output kept in history (completed).
    pub output: Option<serde_json::Value>,
    /// Captured log excerpt for the attempt record.
    pub log: Option<String>,
}

impl Finish {
    /// Makes every field storable whatever the handler produced: no U+0000, JSON
    /// numbers within `numeric`, output and log within twice `output_limit` plus 1 KiB
    /// (handlers keep up to the limit per stream, stdout and stderr, plus their cut
    /// markers; JSON escaping can grow a body kept at the limit), error within
    /// [`MAX_ERROR_BYTES`](crate::model::MAX_ERROR_BYTES).
    pub fn sanitize(&mut self, output_limit: usize) {
        let bound = output_limit.saturating_mul(2).saturating_add(1024);
        self.sanitize_within(bound, bound);
    }

    /// [`Finish::sanitize`] with explicit bounds: the output's JSON text within
    /// `output_bytes`, the log within `log_bytes`.
    pub fn sanitize_within(&mut self, output_bytes: usize, log_bytes: usize) {
        use crate::model::{MAX_ERROR_BYTES, storable_json, storable_text};
        self.error = self.error.take().map(|e| storable_text(e, MAX_ERROR_BYTES));
        self.log = self.log.take().map(|l| storable_text(l, log_bytes));
        self.output = self.output.take().map(|o| storable_json(o, output_bytes));
    }
}

/// The stored outcome names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishKind {
    /// Succeeded: to history.
    Completed,
    /// Failed for good: to history.
    Failed,
    /// Cancelled by an operator: to history.
    Cancelled,
    /// Failed with attempts left: rescheduled.
    Retry,
    /// Asked to run later without spending an attempt (within the snooze budget).
    Snoozed,
    /// Handed back at shutdown without spending an attempt.
    Interrupted,
}

impl FinishKind {
    /// Name stored in job_attempts.outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishKind::Completed => "completed",
            FinishKind::Failed => "failed",
            FinishKind::Cancelled => "cancelled",
            FinishKind::Retry => "retry",
            FinishKind::Snoozed => "snoozed",
            FinishKind::Interrupted => "interrupted",
        }
    }

    /// The kind named `name` (as stored), if any.
    pub fn from_name(name: &str) -> Option<FinishKind> {
        Some(match name {
            "completed" => FinishKind::Completed,
            "failed" => FinishKind::Failed,
            "cancelled" => FinishKind::Cancelled,
            "retry" => FinishKind::Retry,
            "snoozed" => FinishKind::Snoozed,
            "interrupted" => FinishKind::Interrupted,
            _ => return None,
        })
    }
}

/// An outcome the finish statement stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Job id.
    pub id: Uuid,
    /// The attempt it was for.
    pub attempt: i32,
    /// What was stored: differs from the input when a cancel was requested (cancelled),
    /// the snooze budget was spent (retry, failed), or Postgres refused the outcome's
    /// data (failed).
    pub outcome: FinishKind,
}

const FINISH_MANY: &str = include_str!("sql/finish_many.sql");

/// Records a batch of outcomes for `worker` in one statement; returns what it applied.
/// Ids missing from the result had lost their lease (rescued, cancelled, or claimed
/// again: a newer attempt) and were left untouched. Snoozes past `max_snoozes` count as
/// failed attempts.
///
/// If Postgres refuses the batch's data (SQLSTATE class 22, 23 or 54: a value it cannot
/// store), the batch is split in halves until the offending outcome is isolated; that
/// one is recorded as a failed attempt carrying the database's message, the others as
/// they were. A batch is never retried as it is. Other errors (connection, timeout) are
/// returned for the caller to retry; halves already written are then fenced off
/// (missing from the retry's result).
///
/// Locks the rows it updates or deletes (by primary key); guarded by lease_owner =
/// worker AND attempt = the outcome's attempt.
#[tracing::instrument(skip_all, fields(jobs = batch.len()))]
pub async fn finish_many(
    pool: &PgPool,
    worker: Uuid,
    max_snoozes: u32,
    batch: &[Finish],
) -> Result<Vec<Applied>> {
    let max_snoozes = max_snoozes.min(i32::MAX as u32) as i32;
    let mut applied = Vec::with_capacity(batch.len());
    let mut pending: Vec<&[Finish]> = vec![batch];
    while let Some(part) = pending.pop() {
        if part.is_empty() {
            continue;
        }
        let error = match finish_statement(pool, worker, max_snoozes, part).await {
            Ok(rows) => {
                applied.extend(rows);
                continue;
            }
            Err(e) if is_data_error(&e) => e,
            Err(e) => return Err(e.into()),
        };
        if part.len() > 1 {
            let (a, b) = part.split_at(part.len() / 2);
            pending.push(b);
            pending.push(a);
            continue;
        }
        let refused = &part[0];
        let message = crate::model::storable_text(error.to_string(), 1024);
        tracing::warn!(job_id = %refused.id, attempt = refused.attempt, outcome = refused.outcome.as_str(), error = %message,
            "job outcome refused by the database; recording a failed attempt instead");
        let replacement = Finish {
            id: refused.id,
            attempt: refused.attempt,
            outcome: FinishKind::Failed,
            next_run_at: None,
            error: Some(format!(
                "the attempt's {} outcome could not be stored: {message}",
                refused.outcome.as_str()
            )),
            output: None,
            log: None,
        };
        match finish_statement(
            pool,
            worker,
            max_snoozes,
            std::slice::from_ref(&replacement),
        )
        .await
        {
            Ok(rows) => applied.extend(rows),
            // Nothing of ours is left in it; its lease expires and the rescuer takes it.
            Err(e) if is_data_error(&e) => tracing::error!(job_id = %refused.id, error = %e,
                "even a plain failed outcome was refused; leaving the job to the rescuer"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(applied)
}

/// Postgres refused the values (data exception, integrity violation, program limit):
/// the same batch would fail the same way again.
fn is_data_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("54")),
        _ => false,
    }
}

async fn finish_statement(
    pool: &PgPool,
    worker: Uuid,
    max_snoozes: i32,
    batch: &[Finish],
) -> Result<Vec<Applied>, sqlx::Error> {
    let ids: Vec<Uuid> = batch.iter().map(|f| f.id).collect();
    let attempts: Vec<i32> = batch.iter().map(|f| f.attempt).collect();
    let outcomes: Vec<&str> = batch.iter().map(|f| f.outcome.as_str()).collect();
    let next: Vec<Option<DateTime<Utc>>> = batch.iter().map(|f| f.next_run_at).collect();
    let errors: Vec<Option<&str>> = batch.iter().map(|f| f.error.as_deref()).collect();
    let outputs: Vec<Option<&serde_json::Value>> =
        batch.iter().map(|f| f.output.as_ref()).collect();
    let logs: Vec<Option<&str>> = batch.iter().map(|f| f.log.as_deref()).collect();
    let rows: Vec<(Uuid, i32, String)> = sqlx::query_as(FINISH_MANY)
        .bind(worker)
        .bind(&ids)
        .bind(&attempts)
        .bind(&outcomes)
        .bind(&next)
        .bind(&errors)
        .bind(&outputs)
        .bind(&logs)
        .bind(max_snoozes)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, attempt, outcome)| {
            FinishKind::from_name(&outcome).map(|outcome| Applied {
                id,
                attempt,
                outcome,
            })
        })
        .collect())
}

/// A live job's current attempt and lease owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct LiveAttempt {
    /// Job id.
    pub id: Uuid,
    /// Its current attempt number.
    pub attempt: i32,
    /// Who holds its lease, if it is running.
    pub lease_owner: Option<Uuid>,
}

const LIVE_ATTEMPTS: &str =
    "SELECT id, attempt, lease_owner FROM due_work WHERE id = ANY($1::uuid[])";

/// The current attempts of those of `ids` still live (primary-key lookups, no lock).
/// Used to log a refused outcome's attempt next to the one it lost to.
pub async fn live_attempts(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<LiveAttempt>> {
    Ok(sqlx::query_as(LIVE_ATTEMPTS)
        .bind(ids)
        .fetch_all(pool)
        .await?)
}

/// A lease the heartbeat extended, and whether its cancel was requested.
#[derive(Debug, Clone, Copy, FromRow)]
pub struct Extended {
    /// Job id.
    pub id: Uuid,
    /// An operator asked to cancel it.
    pub cancel_requested: bool,
}

const EXTEND_LEASES: &str = "\
WITH input AS (
    SELECT * FROM unnest($2::uuid[], $3::int4[]) AS i(id, attempt)
),
mine AS (
    -- Which leases are still ours, for the very attempt we run: a plain read, no lock.
    SELECT d.id FROM due_work d JOIN input i ON d.id = i.id AND d.attempt = i.attempt
    WHERE d.lease_owner = $1
),
extended AS (
    -- SKIP LOCKED: a row being finished right now by our completer is locked by it; we
    -- neither wait for it nor, worse, lock rows in an order that deadlocks with it.
    UPDATE due_work d
    SET lease_expires_at = now() + make_interval(secs => $4)
    FROM (SELECT d.id FROM due_work d JOIN input i ON d.id = i.id AND d.attempt = i.attempt
          WHERE d.lease_owner = $1
          ORDER BY d.id FOR UPDATE OF d SKIP LOCKED) AS l
    WHERE d.id = l.id
    RETURNING d.id, d.cancel_requested
)
SELECT m.id, coalesce(e.cancel_requested, false) AS cancel_requested
FROM mine m LEFT JOIN extended e ON e.id = m.id";

/// Extends `worker`'s leases on the given (job id, attempt) pairs in one statement
/// (primary-key lookups). Jobs missing from the result are no longer this worker's at
/// that attempt (rescued, finished, or claimed again). Rows locked by a concurrent
/// finish are reported as still ours but not extended (they are about to leave).
pub async fn extend_leases(
    conn: &mut PgConnection,
    worker: Uuid,
    attempts: &[(Uuid, i32)],
    lease: Duration,
) -> Result<Vec<Extended>> {
    let ids: Vec<Uuid> = attempts.iter().map(|(id, _)| *id).collect();
    let numbers: Vec<i32> = attempts.iter().map(|(_, a)| *a).collect();
    Ok(sqlx::query_as(EXTEND_LEASES)
        .bind(worker)
        .bind(&ids)
        .bind(&numbers)
        .bind(lease.as_secs_f64())
        .fetch_all(conn)
        .await?)
}

/// What one rescue pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromRow)]
pub struct Rescued {
    /// Rescheduled with backoff.
    pub retried: i64,
    /// Out of attempts: failed.
    pub failed: i64,
    /// Cancel had been requested: cancelled.
    pub cancelled: i64,
}

impl Rescued {
    /// Rows changed in all.
    pub fn total(&self) -> i64 {
        self.retried + self.failed + self.cancelled
    }
}

const RESCUE_MANY: &str = include_str!("sql/rescue_many.sql");

/// Hands back up to `limit` running jobs owned by `dead_workers` or with expired leases.
/// Each counts as a failed attempt. Row locks FOR UPDATE SKIP LOCKED on
/// `due_work_running_idx` rows.
#[tracing::instrument(skip_all)]
pub async fn rescue_many(
    pool: &PgPool,
    dead_workers: &[Uuid],
    backoff: crate::model::Backoff,
    limit: i64,
) -> Result<Rescued> {
    Ok(sqlx::query_as(RESCUE_MANY)
        .bind(dead_workers)
        .bind(backoff.base.as_millis() as i64)
        .bind(backoff.max.as_millis() as i64)
        .bind(limit)
        .fetch_one(pool)
        .await?)
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelResult {
    /// The job was waiting and is now cancelled (in history).
    Cancelled,
    /// The job is running; its worker was told to stop it.
    Requested,
    /// The job had already finished in this state.
    AlreadyFinished(JobState),
}

const LOCK_LIVE: &str = "SELECT state FROM due_work WHERE id = $1 FOR UPDATE";

/// Moves the waiting (not running) jobs among `$1` to history as cancelled; returns
/// their ids. Shared by [`cancel`] and `bulk::cancel_many`.
pub(super) const CANCEL_WAITING_MANY: &str = include_str!("sql/cancel_waiting_many.sql");

/// Flags the running jobs among `$1` and notifies their workers (`$2`: notify those
/// already flagged again). Shared by [`cancel`] and `bulk::cancel_many`.
pub(super) const REQUEST_CANCEL_MANY: &str = include_str!("sql/request_cancel_many.sql");

const HISTORY_STATE: &str = "SELECT state FROM job_history WHERE id = $1 LIMIT 1";

/// Cancels a job: a waiting one at once (moved to history), a running one by flagging it
/// and notifying the install's `ordinaut_cancel` so its worker stops it within a second;
/// a workflow step still waiting for its dependencies ends cancelled without running
/// (its dependents follow their edges' policies, as for a live step's job).
///
/// Locks the live row first (FOR UPDATE, by primary key) and then branches on its
/// state, so a concurrent rescue or finish cannot move it between the checks: a live
/// job is always cancelled or flagged, never reported as missing. The rescuer skips the
/// locked row (SKIP LOCKED); a finish waits for this short transaction. A waiting step
/// activated between the reads is found live on the next round (a step is activated
/// once, so two rounds suffice).
#[tracing::instrument(skip(pool))]
pub async fn cancel(pool: &PgPool, id: Uuid) -> Result<CancelResult> {
    for _ in 0..3 {
        let mut tx = pool.begin().await?;
        let live: Option<String> = sqlx::query_scalar(LOCK_LIVE)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        match live.as_deref() {
            Some("running") => {
                sqlx::query_scalar::<_, String>(REQUEST_CANCEL_MANY)
                    .bind([id].as_slice())
                    .bind(true)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(CancelResult::Requested);
            }
            Some(_) => {
                sqlx::query_scalar::<_, Uuid>(CANCEL_WAITING_MANY)
                    .bind([id].as_slice())
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(CancelResult::Cancelled);
            }
            None => {}
        }
        // Not live: finished (its history row committed before our read), a workflow
        // step waiting or ended without running, or unknown.
        let state: Option<String> = sqlx::query_scalar(HISTORY_STATE)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(state) = state.and_then(|s| s.parse::<JobState>().ok()) {
            tx.commit().await?;
            return Ok(CancelResult::AlreadyFinished(state));
        }
        let step = super::workflows::cancel_waiting_step(&mut tx, id).await?;
        tx.commit().await?;
        match step.as_ref().map(|(c, s)| (*c, s.as_str())) {
            Some((true, _)) => return Ok(CancelResult::Cancelled),
            // Activated meanwhile: its job is live now.
            Some((false, "enqueued" | "waiting")) => continue,
            Some((false, "completed")) => {
                return Ok(CancelResult::AlreadyFinished(JobState::Completed));
            }
            Some((false, "failed")) => return Ok(CancelResult::AlreadyFinished(JobState::Failed)),
            // Cancelled or skipped without running.
            Some((false, _)) => return Ok(CancelResult::AlreadyFinished(JobState::Cancelled)),
            None => {
                return Err(Error::NotFound {
                    what: "job",
                    id: id.to_string(),
                });
            }
        }
    }
    Err(Error::Conflict(format!(
        "job {id} kept changing state; cancel again"
    )))
}

/// Re-enqueues the failed and cancelled jobs among `$1` with a fresh budget of
/// attempts; returns their ids. Shared by [`retry`] and `bulk::retry_many`.
pub(super) const RETRY_MANY: &str = include_str!("sql/retry_many.sql");

/// Re-enqueues a failed or cancelled job with a fresh budget of attempts. Its attempt
/// records stay. Refused if another live job holds its unique key.
#[tracing::instrument(skip(pool))]
pub async fn retry(pool: &PgPool, id: Uuid) -> Result<()> {
    let mut tx = pool.begin().await?;
    let result = sqlx::query_scalar::<_, Uuid>(RETRY_MANY)
        .bind([id].as_slice())
        .fetch_optional(&mut *tx)
        .await;
    match result {
        Ok(Some(_)) => {
            tx.commit().await?;
            Ok(())
        }
        Ok(None) => {
            let live: Option<String> =
                sqlx::query_scalar("SELECT state FROM due_work WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let finished: Option<String> = sqlx::query_scalar(HISTORY_STATE)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            match (live, finished) {
                (Some(state), _) => Err(Error::Conflict(format!(
                    "job {id} is still live ({state}); only failed or cancelled jobs can be retried"
                ))),
                (None, Some(state)) => Err(Error::Conflict(format!(
                    "job {id} is {state}; only failed or cancelled jobs can be retried"
                ))),
                (None, None) => Err(match super::workflows::step_of_job(pool, id).await? {
                    Some(step) if step.state == "waiting" => Error::Conflict(format!(
                        "job {id} is waiting: step {} of workflow {} has dependencies that have \
                         not ended; only failed or cancelled jobs can be retried",
                        step.step, step.workflow_id
                    )),
                    Some(step) => Error::Conflict(format!(
                        "job {id} never ran: step {} of workflow {} ended {} without running; \
                         retry the workflow to run it",
                        step.step, step.workflow_id, step.state
                    )),
                    None => Error::NotFound {
                        what: "job",
                        id: id.to_string(),
                    },
                }),
            }
        }
        Err(sqlx::Error::Database(db)) if db.constraint() == Some("due_work_unique_key_idx") => {
            Err(Error::Conflict(format!(
                "job {id} cannot be retried: another live job holds its unique key"
            )))
        }
        Err(e) => Err(e.into()),
    }
}
