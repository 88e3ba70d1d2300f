//! `queues`: per-queue settings (pause, defaults) and live statistics.

use std::time::Duration;

use serde::Serialize;
use sqlx::{FromRow, PgPool};

use super::{Result, map_constraint};

// One type for the row and the API's `Queue`: its doc comments are the OpenAPI document's.
/// A queue with its settings and live counts.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
#[schema(as = Queue)]
pub struct QueueStats {
    /// Queue name.
    pub name: String,
    /// Paused queues are not claimed from.
    pub paused: bool,
    /// Due jobs waiting for a worker.
    pub available: i64,
    /// Jobs waiting for a future run_at.
    pub scheduled: i64,
    /// Jobs leased by a worker.
    pub running: i64,
    /// Jobs failed in the last 24 hours.
    pub failed_recently: i64,
    /// Seconds the oldest due job has been waiting.
    pub oldest_wait_seconds: Option<f64>,
    /// Default max attempts for jobs that set none.
    pub max_attempts: Option<i32>,
    /// Default per-attempt timeout in ms.
    pub timeout_ms: Option<i64>,
    /// Backoff base in ms.
    pub backoff_base_ms: Option<i64>,
    /// Backoff cap in ms.
    pub backoff_max_ms: Option<i64>,
    /// Whether completed jobs are kept in history.
    pub keep_completed: bool,
    /// Most jobs running at once across the cluster (`running` counts against it).
    pub concurrency_limit: Option<i32>,
    /// Job starts per `rate_period_ms`.
    pub rate_limit: Option<i32>,
    /// Rate period in ms.
    pub rate_period_ms: i64,
    /// Token bucket size (defaults to the rate).
    pub rate_burst: Option<i32>,
    /// Starts available right now.
    pub rate_tokens: Option<f64>,
    /// Most running jobs per concurrency key.
    pub key_concurrency: Option<i32>,
}

const QUEUE_STATS: &str = "\
SELECT name, paused, available, scheduled, running, failed_recently, oldest_wait_seconds,
       max_attempts, timeout_ms, backoff_base_ms, backoff_max_ms, keep_completed,
       concurrency_limit, rate_limit, rate_period_ms, rate_burst, rate_tokens, key_concurrency
FROM queue_stats
WHERE $1::text IS NULL OR name = $1";

/// Every known queue (or just `only`) with live counts, from the `queue_stats` view
/// (migration 0006), which scans due_work (live rows only) and the last day of failures.
pub async fn queue_stats(pool: &PgPool, only: Option<&str>) -> Result<Vec<QueueStats>> {
    Ok(sqlx::query_as(QUEUE_STATS)
        .bind(only)
        .fetch_all(pool)
        .await?)
}

const SET_PAUSED: &str = "\
INSERT INTO queues (name, paused) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()";

/// Pauses or resumes a queue. A paused queue keeps its jobs; workers skip it.
pub async fn set_paused(pool: &PgPool, name: &str, paused: bool) -> Result<()> {
    sqlx::query(SET_PAUSED)
        .bind(name)
        .bind(paused)
        .execute(pool)
        .await?;
    Ok(())
}

/// A setting to change: leave it, clear it, or set it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Change<T> {
    /// Leave as it is.
    #[default]
    Keep,
    /// Remove (no limit).
    Clear,
    /// Set to this value.
    Set(T),
}

impl<T: Copy> Change<T> {
    fn parts(self) -> (bool, Option<T>) {
        match self {
            Change::Keep => (false, None),
            Change::Clear => (true, None),
            Change::Set(v) => (true, Some(v)),
        }
    }
}

/// A rate limit: `limit` starts per `period`, bursting to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Starts per period.
    pub limit: i32,
    /// Period.
    pub period: Duration,
    /// Bucket size; None = the limit.
    pub burst: Option<i32>,
}

/// Per-queue settings; `None`/`Keep` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct QueueSettings {
    /// Most jobs running at once across the cluster (`running` counts against it).
    pub concurrency_limit: Change<i32>,
    /// Job starts per period.
    pub rate_limit: Change<RateLimit>,
    /// Most running jobs per concurrency key.
    pub key_concurrency: Change<i32>,
    /// Default max attempts.
    pub max_attempts: Option<i32>,
    /// Default per-attempt timeout.
    pub timeout: Option<Duration>,
    /// Backoff base.
    pub backoff_base: Option<Duration>,
    /// Backoff cap.
    pub backoff_max: Option<Duration>,
    /// Keep completed jobs in history.
    pub keep_completed: Option<bool>,
}

const UPSERT_SETTINGS: &str = "\
INSERT INTO queues AS q (name, max_attempts, timeout_ms, backoff_base_ms, backoff_max_ms, keep_completed,
                         concurrency_limit, rate_limit, rate_period_ms, rate_burst, key_concurrency)
VALUES ($1, $2, $3, $4, $5, coalesce($6, true), $8, $10, coalesce($11, 1000), $12, $14)
ON CONFLICT (name) DO UPDATE SET
    max_attempts = coalesce($2, q.max_attempts),
    timeout_ms = coalesce($3, q.timeout_ms),
    backoff_base_ms = coalesce($4, q.backoff_base_ms),
    backoff_max_ms = coalesce($5, q.backoff_max_ms),
    keep_completed = coalesce($6, q.keep_completed),
    concurrency_limit = CASE WHEN $7 THEN $8 ELSE q.concurrency_limit END,
    rate_limit = CASE WHEN $9 THEN $10 ELSE q.rate_limit END,
    rate_period_ms = CASE WHEN $9 THEN coalesce($11, 1000) ELSE q.rate_period_ms END,
    rate_burst = CASE WHEN $9 THEN $12 ELSE q.rate_burst END,
    -- A changed rate starts from a full bucket; the same rate applied again (every
    -- process start applies ordinaut.toml) keeps the bucket exactly as it is, so
    -- restarts and settings syncs never grant a fresh burst.
    rate_tokens = CASE WHEN $9 AND (q.rate_limit, q.rate_period_ms, q.rate_burst)
                                   IS DISTINCT FROM ($10, coalesce($11, 1000), $12)
                       THEN NULL ELSE q.rate_tokens END,
    rate_updated_at = CASE WHEN $9 AND (q.rate_limit, q.rate_period_ms, q.rate_burst)
                                       IS DISTINCT FROM ($10, coalesce($11, 1000), $12)
                           THEN NULL ELSE q.rate_updated_at END,
    key_concurrency = CASE WHEN $13 THEN $14 ELSE q.key_concurrency END,
    updated_at = now()";

/// Creates or updates a queue's defaults. Locks the queue's row; the token bucket is
/// reset (full) only when the rate, period or burst actually changes.
pub async fn upsert_settings(pool: &PgPool, name: &str, s: &QueueSettings) -> Result<()> {
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as i64);
    sqlx::query(UPSERT_SETTINGS)
        .bind(name)
        .bind(s.max_attempts)
        .bind(ms(s.timeout))
        .bind(ms(s.backoff_base))
        .bind(ms(s.backoff_max))
        .bind(s.keep_completed)
        .bind(s.concurrency_limit.parts().0)
        .bind(s.concurrency_limit.parts().1)
        .bind(s.rate_limit.parts().0)
        .bind(s.rate_limit.parts().1.map(|r| r.limit))
        .bind(
            s.rate_limit
                .parts()
                .1
                .map(|r| r.period.as_millis().max(1) as i64),
        )
        .bind(s.rate_limit.parts().1.and_then(|r| r.burst))
        .bind(s.key_concurrency.parts().0)
        .bind(s.key_concurrency.parts().1)
        .execute(pool)
        .await
        .map_err(map_constraint)?;
    Ok(())
}

/// Applies the queues declared in the configuration file.
pub async fn apply_declared(
    pool: &PgPool,
    declared: &std::collections::BTreeMap<String, crate::config::QueueConfig>,
) -> Result<()> {
    let limit = |v: Option<i32>| v.map_or(Change::Clear, Change::Set);
    for (name, q) in declared {
        let rate_limit = match &q.rate_limit {
            None => Change::Clear,
            Some(text) => {
                let (limit, period) =
                    crate::model::parse_rate(text).map_err(|reason| super::Error::Invalid {
                        field: format!("queues.{name}.rate_limit"),
                        reason,
                    })?;
                Change::Set(RateLimit {
                    limit,
                    period,
                    burst: q.burst,
                })
            }
        };
        let settings = QueueSettings {
            concurrency_limit: limit(q.concurrency_limit),
            rate_limit,
            key_concurrency: limit(q.key_concurrency),
            max_attempts: q.max_attempts,
            timeout: q.timeout,
            keep_completed: q.keep_completed,
            ..Default::default()
        };
        upsert_settings(pool, name, &settings).await?;
    }
    Ok(())
}

/// The defaults a worker applies when a job sets none.
#[derive(Debug, Clone, FromRow)]
pub struct QueueDefaults {
    /// Queue name.
    pub name: String,
    /// Per-attempt timeout.
    pub timeout_ms: Option<i64>,
    /// Backoff base.
    pub backoff_base_ms: Option<i64>,
    /// Backoff cap.
    pub backoff_max_ms: Option<i64>,
    /// Has a concurrency, rate or key limit: claimed through claim_limited.
    pub limited: bool,
}

impl QueueDefaults {
    /// The queue's backoff where it sets one, else `fallback` (the configured default).
    pub fn backoff(
        queue: Option<&QueueDefaults>,
        fallback: crate::model::Backoff,
    ) -> crate::model::Backoff {
        let ms = |v: Option<i64>| v.map(|ms| Duration::from_millis(ms.max(1) as u64));
        crate::model::Backoff {
            base: ms(queue.and_then(|q| q.backoff_base_ms)).unwrap_or(fallback.base),
            max: ms(queue.and_then(|q| q.backoff_max_ms)).unwrap_or(fallback.max),
        }
    }
}

/// Defaults of the named queues that have a settings row.
pub async fn queue_defaults(pool: &PgPool, names: &[String]) -> Result<Vec<QueueDefaults>> {
    Ok(sqlx::query_as(
        "SELECT name, timeout_ms, backoff_base_ms, backoff_max_ms,
                (concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL OR key_concurrency IS NOT NULL) AS limited
         FROM queues WHERE name = ANY($1::text[])",
    )
    .bind(names)
    .fetch_all(pool)
    .await?)
}

/// Up to `limit` queue names the cluster knows: those with a settings row and those a
/// live worker serves. Callers' arbitrary names (a job enqueued to a new queue) are not
/// among them. Scans `queues` and `workers`, both small.
pub async fn known_queue_names(pool: &PgPool, limit: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM (SELECT name FROM queues UNION SELECT unnest(queues) FROM workers) AS known
         ORDER BY name LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
