//! Read-only figures for the dashboard's overview and `/v1/stats`: finished jobs per
//! queue and minute, and the wait from due to start, and the per-minute rollups they
//! are read from (migration 0020).
//!
//! Closed minutes come from `job_minutes`, filled by [`roll_up`] (the API's refresher
//! runs it): each minute of `job_history` is aggregated once, when it closed more than
//! [`GRACE`] ago. The minutes after the rollup's progress mark (the current one and the
//! grace) are aggregated from `job_history` per request; they are few rows. Waits are
//! kept as histograms (see [`wait_bucket_seconds`]) so that percentiles over any set
//! of minutes and queues come from summed buckets.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};

use super::Result;

/// A minute is rolled up once it ended this long ago: a finish statement's finished_at
/// is its transaction's start, so a row can commit after its minute closed. A row
/// whose finish committed more than this after it began (finish statements are single
/// short statements) is missing from the rollup, not double counted.
pub const GRACE: Duration = Duration::from_secs(30);
/// Longest window the rollups cover (and `/v1/stats` accepts), in minutes; rows older
/// than this and an hour are deleted by [`roll_up`].
pub const MAX_MINUTES: i32 = 1440;
/// Minutes aggregated per roll-up statement (one transaction each): bounds how long a
/// catch-up statement runs on a busy history.
const CHUNK_MINUTES: i32 = 10;

/// The histogram bucket of a wait (`attempted_at - run_at`), NULL for a job that never
/// started: 0 under 1 ms, then eight buckets per doubling of milliseconds.
const BUCKET: &str = "\
CASE WHEN attempted_at IS NULL THEN NULL
     WHEN attempted_at - run_at < interval '1 millisecond' THEN 0
     ELSE least(1 + floor(8 * ln(extract(epoch FROM attempted_at - run_at)::float8 * 1000) / ln(2)), 400)::int
END";

/// The aggregate of `job_history` rows finished in [$lo, $hi) per minute and queue,
/// as `job_minutes` rows. `{lo}` / `{hi}` are replaced by SQL expressions.
const AGGREGATE: &str = "\
SELECT minute, queue, sum(completed)::bigint AS completed, sum(failed)::bigint AS failed,
       coalesce(jsonb_object_agg(bucket, jobs) FILTER (WHERE bucket IS NOT NULL), '{}') AS wait_buckets
FROM (
    SELECT date_trunc('minute', finished_at) AS minute, queue, {bucket} AS bucket,
           count(*) FILTER (WHERE state = 'completed') AS completed,
           count(*) FILTER (WHERE state = 'failed') AS failed,
           count(*) AS jobs
    FROM job_history
    WHERE finished_at >= {lo} AND finished_at < {hi}
    GROUP BY 1, 2, 3
) AS per_bucket
GROUP BY minute, queue";

/// [`AGGREGATE`] between two SQL expressions; built from this file's constants only
/// (never from input), hence the `AssertSqlSafe` of its callers.
fn aggregate(lo: &str, hi: &str) -> String {
    AGGREGATE
        .replace("{bucket}", BUCKET)
        .replace("{lo}", lo)
        .replace("{hi}", hi)
}

/// The wait a histogram bucket stands for, in seconds: the geometric middle of its
/// range (bucket 0: half a millisecond). Bucket k >= 1 spans a factor 2^(1/8), so the
/// middle is within 2^(1/16) - 1 = 4.4% of any wait in it.
pub fn wait_bucket_seconds(bucket: i32) -> f64 {
    if bucket <= 0 {
        0.0005
    } else {
        2f64.powf((f64::from(bucket) - 0.5) / 8.0) / 1000.0
    }
}

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
#[derive(Debug, Clone, Serialize)]
pub struct WaitPercentiles {
    /// Queue.
    pub queue: String,
    /// Jobs measured.
    pub jobs: i64,
    /// Their waits.
    #[serde(flatten)]
    pub waits: Percentiles,
}

/// Wait percentiles, all queues together, of the jobs finished in one minute.
#[derive(Debug, Clone, Serialize)]
pub struct MinuteWaits {
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Their waits.
    #[serde(flatten)]
    pub waits: Percentiles,
}

/// Nearest-rank percentiles of waits, in seconds (None when no job was measured).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median wait in seconds.
    pub p50: Option<f64>,
    /// 95th percentile in seconds.
    pub p95: Option<f64>,
    /// 99th percentile in seconds.
    pub p99: Option<f64>,
}

/// One roll-up step: under the progress row's lock (another refresher holding it makes
/// this one skip), aggregates up to [`CHUNK_MINUTES`] closed minutes after the mark
/// (at most a day back) into `job_minutes`, moves the mark past them and deletes rows
/// older than the longest window. The upsert replaces a minute's figures, so running
/// a minute twice cannot count it twice. Returns whether closed minutes remain.
const ROLL_UP: &str = "\
WITH bounds AS (
    SELECT lo, least(seal, lo + make_interval(mins => $2)) AS hi, seal
    FROM (SELECT greatest(through, date_trunc('minute', now()) - make_interval(mins => $1 + 1)) AS lo,
                 date_trunc('minute', now() - make_interval(secs => $3)) AS seal
          FROM job_minutes_progress) AS b
), rolled AS (
    INSERT INTO job_minutes (minute, queue, completed, failed, wait_buckets)
    {aggregate}
    ON CONFLICT (minute, queue) DO UPDATE
        SET completed = EXCLUDED.completed, failed = EXCLUDED.failed,
            wait_buckets = EXCLUDED.wait_buckets
)
UPDATE job_minutes_progress SET through = bounds.hi FROM bounds
WHERE bounds.hi > bounds.lo
RETURNING bounds.hi < bounds.seal";

/// What [`roll_up`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollUp {
    /// Every closed minute is rolled up; this many statements ran.
    CaughtUp(u32),
    /// Another process is rolling up now; nothing was done.
    Busy,
}

/// Rolls up every closed minute not rolled up yet, [`CHUNK_MINUTES`] per transaction.
/// Safe to run from several processes at once (see [`ROLL_UP`]).
pub async fn roll_up(pool: &PgPool) -> Result<RollUp> {
    roll_up_sealing(pool, GRACE.as_secs_f64()).await
}

/// [`roll_up`] of the minutes that ended `grace_seconds` ago; a negative grace seals
/// minutes still to come, which is how tests stand in for time passing.
#[doc(hidden)]
pub async fn roll_up_sealing(pool: &PgPool, grace_seconds: f64) -> Result<RollUp> {
    let statement = ROLL_UP.replace(
        "{aggregate}",
        &aggregate("(SELECT lo FROM bounds)", "(SELECT hi FROM bounds)"),
    );
    let mut steps = 0;
    loop {
        let mut tx = pool.begin().await?;
        let locked: Option<bool> =
            sqlx::query_scalar("SELECT true FROM job_minutes_progress FOR UPDATE SKIP LOCKED")
                .fetch_optional(&mut *tx)
                .await?;
        if locked.is_none() {
            return Ok(RollUp::Busy);
        }
        let more: Option<bool> = sqlx::query_scalar(sqlx::AssertSqlSafe(statement.as_str()))
            .bind(MAX_MINUTES)
            .bind(CHUNK_MINUTES)
            .bind(grace_seconds)
            .fetch_optional(&mut *tx)
            .await?;
        let caught_up = more != Some(true);
        if caught_up {
            // Once per pass, with its last step: the window has moved on by then.
            sqlx::query(
                "DELETE FROM job_minutes WHERE minute < now() - make_interval(mins => $1 + 60)",
            )
            .bind(MAX_MINUTES)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        match more {
            None => return Ok(RollUp::CaughtUp(steps)),
            Some(more) => {
                steps += 1;
                if !more {
                    return Ok(RollUp::CaughtUp(steps));
                }
            }
        }
    }
}

/// The window's rows: counts per queue and minute (bucket NULL), and summed wait
/// buckets per queue (minute NULL) and per minute of all queues (queue NULL). Rolled-up
/// minutes come from `job_minutes`, later ones from `job_history` (partition pruning
/// and its finished_at BRIN index keep that to the last minutes).
const WINDOW: &str = "\
WITH bounds AS (
    SELECT date_trunc('minute', now()) - make_interval(mins => $1) AS start,
           coalesce((SELECT through FROM job_minutes_progress), '-infinity') AS through
), m AS MATERIALIZED (
    SELECT minute, queue, completed, failed, wait_buckets FROM job_minutes
    WHERE minute >= (SELECT start FROM bounds) AND minute < (SELECT through FROM bounds)
    UNION ALL
    {aggregate}
)
SELECT queue, minute, NULL::int AS bucket, sum(completed)::bigint AS completed,
       sum(failed)::bigint AS failed, 0::bigint AS jobs
FROM m GROUP BY queue, minute
UNION ALL
SELECT queue, minute, b.key::int, 0, 0, sum(b.value::bigint)::bigint
FROM m CROSS JOIN LATERAL jsonb_each_text(m.wait_buckets) AS b
GROUP BY GROUPING SETS ((queue, b.key), (minute, b.key))";

#[derive(FromRow)]
struct WindowRow {
    queue: Option<String>,
    minute: Option<DateTime<Utc>>,
    bucket: Option<i32>,
    completed: i64,
    failed: i64,
    jobs: i64,
}

/// Jobs in a histogram and its p50, p95 and p99 (nearest rank, each read as its
/// bucket's [`wait_bucket_seconds`]).
fn percentiles(buckets: &BTreeMap<i32, i64>) -> (i64, Percentiles) {
    let total: i64 = buckets.values().sum();
    let at = |p: f64| {
        let rank = ((p * total as f64).ceil() as i64).max(1);
        let mut seen = 0;
        buckets.iter().find_map(|(b, n)| {
            seen += n;
            (seen >= rank).then(|| wait_bucket_seconds(*b))
        })
    };
    let waits = Percentiles {
        p50: at(0.5),
        p95: at(0.95),
        p99: at(0.99),
    };
    (total, waits)
}

/// The jobs finished in the current minute and the `minutes` whole minutes before it:
/// completed and failed per queue and minute, wait percentiles per queue, and per
/// minute of all queues together (minutes without finished jobs are absent).
pub async fn window(
    pool: &PgPool,
    minutes: i32,
) -> Result<(Vec<MinuteCount>, Vec<WaitPercentiles>, Vec<MinuteWaits>)> {
    let statement = WINDOW.replace(
        "{aggregate}",
        &aggregate(
            "(SELECT greatest(start, through) FROM bounds)",
            "'infinity'",
        ),
    );
    let rows: Vec<WindowRow> = sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .bind(minutes)
        .fetch_all(pool)
        .await?;
    let mut counts = Vec::new();
    let mut per_queue: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    let mut per_minute: BTreeMap<DateTime<Utc>, BTreeMap<i32, i64>> = BTreeMap::new();
    for r in rows {
        match (r.queue, r.minute, r.bucket) {
            (Some(queue), Some(minute), None) => counts.push(MinuteCount {
                queue,
                minute,
                completed: r.completed,
                failed: r.failed,
            }),
            // Only jobs that started count towards waits (cancelled before a start
            // did not wait for a worker); they are the bucketed ones.
            (Some(queue), None, Some(b)) => {
                *per_queue.entry(queue).or_default().entry(b).or_default() += r.jobs
            }
            (None, Some(minute), Some(b)) => {
                *per_minute.entry(minute).or_default().entry(b).or_default() += r.jobs
            }
            _ => {}
        }
    }
    counts.sort_by(|a, b| (&a.queue, a.minute).cmp(&(&b.queue, b.minute)));
    let per_queue = per_queue
        .into_iter()
        .map(|(queue, buckets)| {
            let (jobs, waits) = percentiles(&buckets);
            WaitPercentiles { queue, jobs, waits }
        })
        .collect();
    let per_minute = per_minute
        .into_iter()
        .map(|(minute, buckets)| {
            let (_, waits) = percentiles(&buckets);
            MinuteWaits { minute, waits }
        })
        .collect();
    Ok((counts, per_queue, per_minute))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_stands_for_its_waits_within_four_and_a_half_percent() {
        // The SQL bucket of a wait w ms >= 1 is 1 + floor(8 log2 w).
        for w_ms in [1.0f64, 1.3, 7.9, 50.0, 999.0, 86_400_000.0] {
            let bucket = 1 + (8.0 * w_ms.log2()).floor() as i32;
            let got = wait_bucket_seconds(bucket) * 1000.0;
            assert!((got / w_ms - 1.0).abs() < 0.045, "{w_ms} ms read as {got}");
        }
    }

    #[test]
    fn percentiles_are_nearest_rank_over_summed_buckets() {
        let buckets = BTreeMap::from([(0, 90), (80, 9), (160, 1)]);
        let (jobs, waits) = percentiles(&buckets);
        assert_eq!(jobs, 100);
        assert_eq!(waits.p50, Some(wait_bucket_seconds(0)));
        assert_eq!(waits.p95, Some(wait_bucket_seconds(80)));
        assert_eq!(waits.p99, Some(wait_bucket_seconds(80)));
        let none = percentiles(&BTreeMap::new()).1;
        assert_eq!([none.p50, none.p95, none.p99], [None, None, None]);
    }
}
