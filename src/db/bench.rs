//! The statements of `ordinaut bench` (src/bench.rs): creating and dropping its
//! throwaway database, counting what the runs did, and measuring latencies and table
//! sizes. Not part of the product's SQL surface; kept here so every statement lives
//! under `src/db/`.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::Result;

/// Creates database `ordinaut_bench_<simple uuid>` and returns its name.
#[doc(hidden)]
pub async fn create_database(admin: &PgPool, id: Uuid) -> Result<String> {
    let name = format!("ordinaut_bench_{}", id.simple());
    // The name is built from a UUID's hex digits: safe to interpolate (identifiers
    // cannot be bound).
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin)
        .await?;
    Ok(name)
}

/// Creates the bench database `name` unless it exists (`ordinaut bench ui --keep-db`).
#[doc(hidden)]
pub async fn create_database_named(admin: &PgPool, name: &str) -> Result<()> {
    bench_name(name)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(admin)
            .await?;
    if !exists {
        // Checked by bench_name: letters, digits and '_' only.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(admin)
            .await?;
    }
    Ok(())
}

/// True when `ordinaut bench ui` finished filling this database (its last step makes
/// the marker table).
#[doc(hidden)]
pub async fn ui_filled(pool: &PgPool) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT to_regclass('bench_ui_filled') IS NOT NULL")
            .fetch_one(pool)
            .await?,
    )
}

/// Marks the database as filled (see [`ui_filled`]).
#[doc(hidden)]
pub async fn mark_ui_filled(pool: &PgPool) -> Result<()> {
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_ui_filled ()")
        .execute(pool)
        .await?;
    Ok(())
}

fn bench_name(name: &str) -> Result<()> {
    if !name.starts_with("ordinaut_bench_")
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(super::Error::Invalid {
            field: "database".to_owned(),
            reason: format!("{name:?} is not a bench database"),
        });
    }
    Ok(())
}

/// Drops a database made by [`create_database`], disconnecting its sessions.
#[doc(hidden)]
pub async fn drop_database(admin: &PgPool, name: &str) -> Result<()> {
    bench_name(name)?;
    // Checked above to be one of ours: letters, digits and '_' only.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(admin)
    .await?;
    Ok(())
}

/// Completed jobs of `queue` in history.
#[doc(hidden)]
pub async fn completed_in(pool: &PgPool, queue: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM job_history WHERE state = 'completed' AND queue = $1",
    )
    .bind(queue)
    .fetch_one(pool)
    .await?)
}

/// What [`count`] counts.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Counted {
    /// Attempt rows of every job (live and finished).
    Attempts,
    /// Finished jobs.
    Finished,
    /// Live (not finished) jobs.
    Live,
    /// Registered workers.
    Workers,
}

/// How many rows of `what` there are (a full count: bench databases only).
#[doc(hidden)]
pub async fn count(pool: &PgPool, what: Counted) -> Result<i64> {
    let sql = match what {
        Counted::Attempts => "SELECT count(*) FROM all_attempts",
        Counted::Finished => "SELECT count(*) FROM job_history",
        Counted::Live => "SELECT count(*) FROM due_work",
        Counted::Workers => "SELECT count(*) FROM workers",
    };
    Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
}

/// Which latency a run measures, in milliseconds per finished job of queue `bench`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Latency {
    /// From the job's run_at to its attempt's start (burn-down, command).
    ClaimDelay,
    /// From the producer's clock (`payload.t0`) to the attempt's start.
    SinceEnqueue,
}

macro_rules! percentiles_of {
    ($expr:literal) => {
        concat!(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v), percentile_cont(0.95) WITHIN GROUP (ORDER BY v),
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY v), max(v)
             FROM (SELECT (",
            $expr,
            ")::float8 AS v FROM job_history WHERE queue = 'bench') s"
        )
    };
}

/// p50, p95, p99 and max of `latency` (0 when nothing finished).
#[doc(hidden)]
pub async fn percentiles(pool: &PgPool, latency: Latency) -> Result<(f64, f64, f64, f64)> {
    let sql = match latency {
        Latency::ClaimDelay => percentiles_of!("extract(epoch FROM attempted_at - run_at) * 1000"),
        Latency::SinceEnqueue => percentiles_of!(
            "extract(epoch FROM attempted_at - (payload->>'t0')::timestamptz) * 1000"
        ),
    };
    let row: (Option<f64>, Option<f64>, Option<f64>, Option<f64>) =
        sqlx::query_as(sql).fetch_one(pool).await?;
    Ok((
        row.0.unwrap_or(0.0),
        row.1.unwrap_or(0.0),
        row.2.unwrap_or(0.0),
        row.3.unwrap_or(0.0),
    ))
}

/// Jobs of queue `bench` started in `[start + from_ms, start + to_ms)`, with the p50
/// and p99 of their latency since enqueue.
#[doc(hidden)]
pub async fn phase(
    pool: &PgPool,
    start: DateTime<Utc>,
    from_ms: i64,
    to_ms: i64,
) -> Result<(i64, Option<f64>, Option<f64>)> {
    Ok(sqlx::query_as(
        "SELECT count(*),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY lat),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY lat)
         FROM (SELECT extract(epoch FROM attempted_at - (payload->>'t0')::timestamptz) * 1000 AS lat
               FROM job_history
               WHERE queue = 'bench'
                 AND attempted_at >= $1 + make_interval(secs => $2 / 1000.0)
                 AND attempted_at < $1 + make_interval(secs => $3 / 1000.0)) s",
    )
    .bind(start)
    .bind(from_ms as f64)
    .bind(to_ms as f64)
    .fetch_one(pool)
    .await?)
}

/// `due_work`'s dead tuples, table bytes and index bytes.
#[doc(hidden)]
pub async fn due_work_size(pool: &PgPool) -> Result<(i64, i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT coalesce((SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'due_work'), 0),
                pg_relation_size('due_work'), pg_indexes_size('due_work')",
    )
    .fetch_one(pool)
    .await?)
}

/// Puts `n` finished jobs (queue `old`, spread over the last day) into history and
/// vacuums it.
#[doc(hidden)]
pub async fn fill_history(pool: &PgPool, n: u64) -> Result<()> {
    sqlx::query(
        "INSERT INTO job_history (id, queue, kind, payload, priority, state, attempt, max_attempts, metadata,
                                  run_at, created_at, attempted_at, finished_at)
         SELECT ordinaut_uuid_v7(), 'old', 'noop', '{}', 0, 'completed', 1, 4, '{}', now(), now(), now(),
                now() - (g % 86400) * interval '1 second'
         FROM generate_series(1, $1) AS g",
    )
    .bind(n as i64)
    .execute(pool)
    .await?;
    sqlx::query("VACUUM ANALYZE job_history")
        .execute(pool)
        .await?;
    Ok(())
}

/// Holds a REPEATABLE READ snapshot open (so vacuum cannot remove dead rows) until
/// `release` resolves.
#[doc(hidden)]
pub async fn hold_snapshot(
    pool: &PgPool,
    release: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT count(*) FROM queues")
        .execute(&mut *tx)
        .await?;
    eprintln!("bench: holding a REPEATABLE READ transaction open");
    release.await;
    tx.commit().await?;
    Ok(())
}

/// Drops index `name` (the bench's `--drop-index`, to measure what an index costs).
#[doc(hidden)]
pub async fn drop_index(pool: &PgPool, name: &str) -> Result<()> {
    crate::model::validate_name(name)
        .ok()
        .filter(|_| name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .ok_or_else(|| super::Error::Invalid {
            field: "index".to_owned(),
            reason: format!("{name:?} is not an index name (letters, digits and '_')"),
        })?;
    // Checked above: letters, digits and '_' only.
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX {name}")))
        .execute(pool)
        .await?;
    Ok(())
}

/// Rows `from..to` of `ordinaut bench ui`'s history of `total` finished jobs: g = 0 is
/// the newest, finished_at spread evenly over ten days, `queues` queues `q00`.., kinds
/// scan/deploy, about 5% failed (with an error naming a host) and 1% cancelled,
/// metadata team red (1 in 7) or blue, 80 ms from due to finish.
#[doc(hidden)]
pub async fn fill_ui_history(
    pool: &PgPool,
    from: i64,
    to: i64,
    queues: i64,
    total: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO job_history (id, queue, kind, payload, priority, state, attempt, max_attempts,
                                  metadata, last_error, run_at, created_at, attempted_at, finished_at)
         SELECT ordinaut_uuid_v7(), 'q' || lpad((g % $3)::text, 2, '0'),
                CASE WHEN g % 2 = 0 THEN 'scan' ELSE 'deploy' END,
                jsonb_build_object('target', 'host-' || (g % 100000) || '.example', 'port', g % 1000),
                0, CASE WHEN g % 19 = 1 THEN 'failed' WHEN g % 101 = 3 THEN 'cancelled' ELSE 'completed' END,
                1, 4,
                CASE WHEN g % 7 = 0 THEN '{\"team\": \"red\"}'::jsonb ELSE '{\"team\": \"blue\"}'::jsonb END,
                CASE WHEN g % 19 = 1 THEN 'connection refused by host-' || (g % 100000) END,
                f - interval '80 ms', f - interval '80 ms', f - interval '50 ms', f
         FROM (SELECT g, now() - g * (864000.0 / $4) * interval '1 second' AS f
               FROM generate_series($1, $2 - 1) AS g) AS s",
    )
    .bind(from)
    .bind(to)
    .bind(queues)
    .bind(total as f64)
    .execute(pool)
    .await?;
    Ok(())
}

/// VACUUM ANALYZE of job_history and due_work (after a bulk fill).
#[doc(hidden)]
pub async fn vacuum_analyze(pool: &PgPool) -> Result<()> {
    sqlx::query("VACUUM ANALYZE job_history")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM ANALYZE due_work").execute(pool).await?;
    Ok(())
}
