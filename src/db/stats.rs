//! Read-only figures for the dashboard's overview and `/v1/stats`: finished jobs per
//! queue and minute, and the wait from due to start, from `job_history` (only the
//! recent partitions are read: it is partitioned by finished_at).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};

use super::Result;

/// Finished jobs of one queue in one minute.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct MinuteCount {
    /// Queue.
    pub queue: String,
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Jobs completed (of queues that keep completed jobs).
    pub completed: i64,
    /// Jobs failed for good.
    pub failed: i64,
}

const PER_MINUTE: &str = "\
SELECT queue, date_trunc('minute', finished_at) AS minute,
       count(*) FILTER (WHERE state = 'completed') AS completed,
       count(*) FILTER (WHERE state = 'failed') AS failed
FROM job_history
WHERE finished_at > now() - make_interval(mins => $1)
GROUP BY 1, 2
ORDER BY 1, 2";

/// Completed and failed jobs per queue and minute over the last `minutes` minutes;
/// minutes without any are absent. Partition pruning keeps this to the recent days.
pub async fn per_minute(pool: &PgPool, minutes: i32) -> Result<Vec<MinuteCount>> {
    Ok(sqlx::query_as(PER_MINUTE)
        .bind(minutes)
        .fetch_all(pool)
        .await?)
}

/// Percentiles of the wait from due (run_at) to start of the final attempt.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct WaitPercentiles {
    /// Queue.
    pub queue: String,
    /// Jobs measured.
    pub jobs: i64,
    /// Median wait in seconds.
    pub p50: Option<f64>,
    /// 95th percentile in seconds.
    pub p95: Option<f64>,
    /// 99th percentile in seconds.
    pub p99: Option<f64>,
}

const WAITS: &str = "\
SELECT queue, count(*) AS jobs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY w) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY w) AS p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY w) AS p99
FROM (
    SELECT queue, greatest(extract(epoch FROM attempted_at - run_at)::float8, 0) AS w
    FROM job_history
    WHERE finished_at > now() - make_interval(mins => $1) AND attempted_at IS NOT NULL
) AS waits
GROUP BY queue
ORDER BY queue";

/// Wait percentiles per queue of the jobs finished in the last `minutes` minutes.
pub async fn wait_percentiles(pool: &PgPool, minutes: i32) -> Result<Vec<WaitPercentiles>> {
    Ok(sqlx::query_as(WAITS).bind(minutes).fetch_all(pool).await?)
}

/// Wait percentiles, all queues together, of the jobs finished in one minute.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct MinuteWaits {
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Median wait in seconds.
    pub p50: Option<f64>,
    /// 95th percentile in seconds.
    pub p95: Option<f64>,
    /// 99th percentile in seconds.
    pub p99: Option<f64>,
}

const WAITS_PER_MINUTE: &str = "\
SELECT date_trunc('minute', finished_at) AS minute,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY w) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY w) AS p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY w) AS p99
FROM (
    SELECT finished_at, greatest(extract(epoch FROM attempted_at - run_at)::float8, 0) AS w
    FROM job_history
    WHERE finished_at > now() - make_interval(mins => $1) AND attempted_at IS NOT NULL
) AS waits
GROUP BY 1
ORDER BY 1";

/// Wait percentiles per minute (all queues) over the last `minutes` minutes; minutes
/// without finished jobs are absent.
pub async fn waits_per_minute(pool: &PgPool, minutes: i32) -> Result<Vec<MinuteWaits>> {
    Ok(sqlx::query_as(WAITS_PER_MINUTE)
        .bind(minutes)
        .fetch_all(pool)
        .await?)
}
