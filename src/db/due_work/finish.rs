//! Finishing: one statement records a batch of outcomes (history, requeue, attempts),
//! isolating values Postgres refuses.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::Result;

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

const FINISH_MANY: &str = include_str!("../sql/finish_many.sql");

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
