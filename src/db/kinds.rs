//! `kinds`: which worker serves which kind, as published by the workers (migration
//! 0014), and `due_work.progress`, the latest progress a running job reported.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::Result;

/// Rows older than this are deleted by the next publish.
const FORGET_AFTER: &str = "1 day";

/// One kind as one worker serves it.
#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct Published {
    /// The kind and its settings.
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub kind: PublishedKind,
    /// Worker serving it.
    pub worker_id: Uuid,
    /// The worker's host.
    pub hostname: String,
    /// Last publish by this worker.
    pub published_at: DateTime<Utc>,
    /// Whether the worker's row is still there (it has not exited or been judged dead).
    #[sqlx(default)]
    pub worker_alive: bool,
}

/// A kind's name, type and defaults as a worker publishes them: the first part of the
/// API's `KindListing` (the field docs are the OpenAPI document's).
#[derive(Debug, Clone, Serialize, FromRow, PartialEq, utoipa::ToSchema)]
pub struct PublishedKind {
    /// Kind name.
    #[sqlx(rename = "kind")]
    pub name: String,
    /// http, command, noop or custom (a Rust handler).
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind_type: String,
    /// Default queue of an enqueue that names none.
    pub queue: Option<String>,
    /// Default priority.
    pub priority: Option<i32>,
    /// Default max attempts.
    pub max_attempts: Option<i32>,
    /// Per-attempt timeout in milliseconds.
    pub timeout_ms: Option<i64>,
    /// SIGTERM-to-SIGKILL grace in milliseconds (command kinds).
    pub kill_grace_ms: Option<i64>,
    /// JSON Schema enqueues are validated against.
    #[schema(value_type = Option<Object>)]
    pub payload_schema: Option<serde_json::Value>,
}

/// Writes the worker's kinds (replacing what it published before) and forgets rows
/// nobody refreshed for a day.
pub async fn publish(pool: &PgPool, worker_id: Uuid, kinds: &[Published]) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM kinds WHERE worker_id = $1 OR published_at < now() - $2::interval")
        .bind(worker_id)
        .bind(FORGET_AFTER)
        .execute(&mut *tx)
        .await?;
    let col = |f: fn(&Published) -> Option<i64>| kinds.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO kinds (kind, worker_id, hostname, type, queue, priority, max_attempts,
                            timeout_ms, kill_grace_ms, payload_schema)
         SELECT k, $2, $3, t, q, p, m, tm, kg, s
         FROM unnest($1::text[], $4::text[], $5::text[], $6::int4[], $7::int4[], $8::int8[],
                     $9::int8[], $10::jsonb[]) AS u(k, t, q, p, m, tm, kg, s)",
    )
    .bind(
        kinds
            .iter()
            .map(|k| k.kind.name.clone())
            .collect::<Vec<_>>(),
    )
    .bind(worker_id)
    .bind(
        kinds
            .first()
            .map(|k| k.hostname.clone())
            .unwrap_or_default(),
    )
    .bind(
        kinds
            .iter()
            .map(|k| k.kind.kind_type.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        kinds
            .iter()
            .map(|k| k.kind.queue.clone())
            .collect::<Vec<_>>(),
    )
    .bind(kinds.iter().map(|k| k.kind.priority).collect::<Vec<_>>())
    .bind(
        kinds
            .iter()
            .map(|k| k.kind.max_attempts)
            .collect::<Vec<_>>(),
    )
    .bind(col(|k| k.kind.timeout_ms))
    .bind(col(|k| k.kind.kill_grace_ms))
    .bind(
        kinds
            .iter()
            .map(|k| k.kind.payload_schema.clone())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Every published row seen within `window`, newest first per kind.
pub async fn list(pool: &PgPool, window: Duration) -> Result<Vec<Published>> {
    Ok(sqlx::query_as(
        "SELECT k.kind, k.worker_id, k.hostname, k.type, k.queue, k.priority, k.max_attempts,
                k.timeout_ms, k.kill_grace_ms, k.payload_schema, k.published_at,
                EXISTS (SELECT 1 FROM workers w WHERE w.id = k.worker_id) AS worker_alive
         FROM kinds k
         WHERE k.published_at > now() - make_interval(secs => $1)
         ORDER BY k.kind, k.published_at DESC, k.worker_id",
    )
    .bind(window.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

/// One job's progress report.
#[derive(Debug, Clone)]
pub struct ProgressRow {
    /// Job.
    pub id: Uuid,
    /// The attempt reporting.
    pub attempt: i32,
    /// `{"attempt", "percent", "message", "at"}`.
    pub progress: serde_json::Value,
}

/// Stores the latest progress of running jobs, only where `worker_id` still holds the
/// reporting attempt's lease, and tells `/v1/events` subscribers: one statement for
/// the batch, one notification per 16 jobs (far below Postgres's 8000-byte payload
/// limit; messages are cut to [`crate::kinds::registry::MAX_PROGRESS_MESSAGE`]).
pub async fn set_progress(pool: &PgPool, worker_id: Uuid, rows: &[ProgressRow]) -> Result<()> {
    sqlx::query(
        "WITH u AS (
             UPDATE due_work d SET progress = u.p
             FROM unnest($1::uuid[], $2::int4[], $3::jsonb[]) AS u(id, attempt, p)
             WHERE d.id = u.id AND d.attempt = u.attempt AND d.lease_owner = $4
               AND d.state = 'running'
             RETURNING d.id, d.queue, d.progress
         ), c AS (
             SELECT json_agg(json_build_array(id, left(queue, 100), 'running', progress))::text AS payload
             FROM (SELECT u.*, (row_number() OVER () - 1) / 16 AS chunk FROM u) x
             GROUP BY chunk
         )
         SELECT pg_notify(ordinaut_channel('ordinaut_events'), payload) FROM c",
    )
    .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.attempt).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.progress.clone()).collect::<Vec<_>>())
    .bind(worker_id)
    .execute(pool)
    .await?;
    Ok(())
}
