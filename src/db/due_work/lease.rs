//! Leases after the claim: reading live attempts, heartbeats extending leases, and the
//! rescue of expired or orphaned ones.

use std::time::Duration;

use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use crate::db::Result;

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

const RESCUE_MANY: &str = include_str!("../sql/rescue_many.sql");

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
