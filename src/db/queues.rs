//! `queues`: per-queue settings (pause, defaults) and live statistics.

use std::time::Duration;

use serde::Serialize;
use sqlx::{FromRow, PgPool};

use super::{Result, map_constraint};

/// A queue with its settings and live counts.
#[derive(Debug, Clone, Serialize, FromRow)]
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
}

const QUEUE_STATS: &str = "\
WITH live AS (
    SELECT queue,
           count(*) FILTER (WHERE state <> 'running' AND run_at <= now()) AS available,
           count(*) FILTER (WHERE state <> 'running' AND run_at > now()) AS scheduled,
           count(*) FILTER (WHERE state = 'running') AS running,
           extract(epoch FROM now() - min(run_at) FILTER (WHERE state <> 'running' AND run_at <= now()))::float8
               AS oldest_wait_seconds
    FROM due_work GROUP BY queue
),
failed AS (
    SELECT queue, count(*) AS failed_recently
    FROM job_history
    WHERE state = 'failed' AND finished_at > now() - interval '24 hours'
    GROUP BY queue
),
names AS (
    SELECT queue AS name FROM live UNION SELECT queue FROM failed UNION SELECT name FROM queues
)
SELECT n.name,
       coalesce(q.paused, false) AS paused,
       coalesce(l.available, 0) AS available,
       coalesce(l.scheduled, 0) AS scheduled,
       coalesce(l.running, 0) AS running,
       coalesce(f.failed_recently, 0) AS failed_recently,
       l.oldest_wait_seconds,
       q.max_attempts, q.timeout_ms, q.backoff_base_ms, q.backoff_max_ms,
       coalesce(q.keep_completed, true) AS keep_completed
FROM names n
LEFT JOIN live l ON l.queue = n.name
LEFT JOIN failed f ON f.queue = n.name
LEFT JOIN queues q ON q.name = n.name
WHERE $1::text IS NULL OR n.name = $1
ORDER BY n.name";

/// Every known queue (or just `only`) with live counts. Scans due_work (live rows only)
/// and the last day of job_history.
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

/// Per-queue defaults; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct QueueSettings {
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
INSERT INTO queues AS q (name, max_attempts, timeout_ms, backoff_base_ms, backoff_max_ms, keep_completed)
VALUES ($1, $2, $3, $4, $5, coalesce($6, true))
ON CONFLICT (name) DO UPDATE SET
    max_attempts = coalesce($2, q.max_attempts),
    timeout_ms = coalesce($3, q.timeout_ms),
    backoff_base_ms = coalesce($4, q.backoff_base_ms),
    backoff_max_ms = coalesce($5, q.backoff_max_ms),
    keep_completed = coalesce($6, q.keep_completed),
    updated_at = now()";

/// Creates or updates a queue's defaults.
pub async fn upsert_settings(pool: &PgPool, name: &str, s: &QueueSettings) -> Result<()> {
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as i64);
    sqlx::query(UPSERT_SETTINGS)
        .bind(name)
        .bind(s.max_attempts)
        .bind(ms(s.timeout))
        .bind(ms(s.backoff_base))
        .bind(ms(s.backoff_max))
        .bind(s.keep_completed)
        .execute(pool)
        .await
        .map_err(map_constraint)?;
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
}

/// Defaults of the named queues that have a settings row.
pub async fn queue_defaults(pool: &PgPool, names: &[String]) -> Result<Vec<QueueDefaults>> {
    Ok(sqlx::query_as(
        "SELECT name, timeout_ms, backoff_base_ms, backoff_max_ms FROM queues WHERE name = ANY($1::text[])",
    )
    .bind(names)
    .fetch_all(pool)
    .await?)
}
