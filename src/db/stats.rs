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

/// The window's three figures from one scan of it: GROUPING SETS gives the counts per
/// queue and minute (both set), the wait percentiles per queue (minute NULL) and per
/// minute of all queues (queue NULL). Two scans of the last hour were most of
/// `/v1/stats`'s time on a big history.
const WINDOW: &str = "\
SELECT queue, minute,
       count(*) FILTER (WHERE state = 'completed') AS completed,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       count(w) AS jobs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY w) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY w) AS p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY w) AS p99
FROM (
    SELECT queue, date_trunc('minute', finished_at) AS minute, state,
           CASE WHEN attempted_at IS NOT NULL
                THEN greatest(extract(epoch FROM attempted_at - run_at)::float8, 0) END AS w
    FROM job_history
    WHERE finished_at > now() - make_interval(mins => $1)
) AS finished
GROUP BY GROUPING SETS ((queue, minute), (queue), (minute))
ORDER BY queue, minute";

#[derive(FromRow)]
struct WaitRow {
    queue: Option<String>,
    minute: Option<DateTime<Utc>>,
    completed: i64,
    failed: i64,
    jobs: i64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

/// The jobs finished in the last `minutes` minutes: completed and failed per queue and
/// minute, wait percentiles per queue, and per minute of all queues together (minutes
/// without finished jobs are absent). Partition pruning keeps this to the recent days.
pub async fn window(
    pool: &PgPool,
    minutes: i32,
) -> Result<(Vec<MinuteCount>, Vec<WaitPercentiles>, Vec<MinuteWaits>)> {
    let rows: Vec<WaitRow> = sqlx::query_as(WINDOW).bind(minutes).fetch_all(pool).await?;
    let mut counts = Vec::new();
    let mut per_queue = Vec::new();
    let mut per_minute = Vec::new();
    for r in rows {
        match (r.queue, r.minute) {
            (Some(queue), Some(minute)) => counts.push(MinuteCount {
                queue,
                minute,
                completed: r.completed,
                failed: r.failed,
            }),
            // Only jobs that started count towards waits (cancelled before a start
            // did not wait for a worker).
            (Some(queue), None) if r.jobs > 0 => per_queue.push(WaitPercentiles {
                queue,
                jobs: r.jobs,
                p50: r.p50,
                p95: r.p95,
                p99: r.p99,
            }),
            (None, Some(minute)) if r.jobs > 0 => per_minute.push(MinuteWaits {
                minute,
                p50: r.p50,
                p95: r.p95,
                p99: r.p99,
            }),
            _ => {}
        }
    }
    Ok((counts, per_queue, per_minute))
}

/// Wait percentiles, all queues together, of the jobs finished in one minute.
#[derive(Debug, Clone, Serialize)]
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
