//! `workers`: one row per live worker process, and the session advisory lock each holds.
//!
//! A worker takes `pg_advisory_lock(ordinaut_worker_lock_class(), lock_key)` on a
//! dedicated connection before inserting its row and holds it for its whole life. When
//! the process dies Postgres drops the session and the lock; `find_dead` sees a row
//! whose lock nobody holds. The class is derived from the install's schema (migration
//! 0009), so installs sharing a database never see each other's locks.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use super::Result;

/// First key of the two-key advisory lock form for the `public` schema, "ORD1": keeps
/// worker locks apart from the single-bigint locks applications and sqlx's migrator
/// use. Other schemas get their own class from `ordinaut_worker_lock_class()`.
pub const WORKER_LOCK_CLASS: i32 = 0x4F52_4431;

/// What a worker says about itself when it registers: the first part of its
/// [`WorkerView`] (the field docs are the OpenAPI document's `Worker`).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Registration {
    /// Worker id (its lease owner id).
    pub id: Uuid,
    /// Host name.
    pub hostname: String,
    /// OS process id.
    pub pid: i32,
    /// Queues served.
    pub queues: Vec<String>,
    /// Slots.
    pub concurrency: i32,
    /// Ordinaut version.
    pub version: String,
}

/// Takes a fresh advisory lock key on `conn` and (re)writes the worker's row. Must run
/// on the connection that then stays open for the worker's life.
pub async fn register(conn: &mut PgConnection, reg: &Registration) -> Result<i32> {
    let lock_key = loop {
        let key: i32 = sqlx::query_scalar("SELECT nextval('workers_lock_key_seq')::int4")
            .fetch_one(&mut *conn)
            .await?;
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(ordinaut_worker_lock_class(), $1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await?;
        if locked {
            break key;
        }
    };
    sqlx::query(
        "INSERT INTO workers (id, lock_key, hostname, pid, queues, concurrency, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET lock_key = EXCLUDED.lock_key, last_heartbeat_at = now()",
    )
    .bind(reg.id)
    .bind(lock_key)
    .bind(&reg.hostname)
    .bind(reg.pid)
    .bind(&reg.queues)
    .bind(reg.concurrency)
    .bind(&reg.version)
    .execute(&mut *conn)
    .await?;
    Ok(lock_key)
}

/// Refreshes the worker's heartbeat with its busy slots and prefetched jobs; false if
/// its row is gone (it was judged dead).
pub async fn heartbeat(conn: &mut PgConnection, id: Uuid, slots: Slots) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE workers SET last_heartbeat_at = now(), busy = $2, prefetched = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(slots.busy)
    .bind(slots.prefetched)
    .execute(conn)
    .await?;
    Ok(n.rows_affected() == 1)
}

/// What a worker reports of its slots with each heartbeat.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slots {
    /// Handlers running.
    pub busy: i32,
    /// Jobs claimed and not started yet.
    pub prefetched: i32,
}

/// Removes the worker's row (graceful exit).
pub async fn deregister(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM workers WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

const FIND_DEAD: &str = "\
WITH epoch AS (
    -- When this server (re)started serving, as far as can be seen: the postmaster's
    -- start, the checkpointer's (it restarts on a crash reset, which keeps the
    -- postmaster's start time; visible to superusers and pg_read_all_stats), and the
    -- moment the asking rescuer itself got through again ($2).
    SELECT greatest(pg_postmaster_start_time(),
                    (SELECT max(backend_start) FROM pg_stat_activity
                     WHERE backend_type = 'checkpointer'),
                    $2::timestamptz) AS at
)
SELECT ARRAY(
    SELECT w.id
    FROM workers w, epoch e
    WHERE NOT EXISTS (
            SELECT 1 FROM pg_locks l
            WHERE l.locktype = 'advisory'
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid = ordinaut_worker_lock_class()::oid
              AND l.objid = w.lock_key::oid
              AND l.objsubid = 2
              AND l.granted)
      -- After a restart every lock is gone at once: give live workers time to
      -- reconnect and take theirs again before judging them.
      AND NOT (w.last_heartbeat_at < e.at AND now() < e.at + make_interval(secs => $1))
    ORDER BY w.id
) AS dead,
(SELECT now() < e.at + make_interval(secs => $1) FROM epoch e) AS in_grace";

/// Workers whose advisory lock nobody holds: their process or session is gone.
pub async fn find_dead(pool: &PgPool, restart_grace: Duration) -> Result<Vec<Uuid>> {
    let (dead, _): (Vec<Uuid>, bool) = sqlx::query_as(FIND_DEAD)
        .bind(restart_grace.as_secs_f64())
        .bind(None::<DateTime<Utc>>)
        .fetch_one(pool)
        .await?;
    Ok(dead)
}

/// What a rescuer may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    /// Workers whose lock nobody holds and who are past any restart grace.
    pub dead: Vec<Uuid>,
    /// The server (re)started, or the asking rescuer got through again, less than the
    /// restart grace ago: live workers may not have re-taken their locks yet.
    pub in_grace: bool,
}

/// [`find_dead`] on the rescuer's own session, with the grace also counted from
/// `back_since`, when that rescuer last got through to the server after losing it.
pub async fn liveness(
    conn: &mut PgConnection,
    restart_grace: Duration,
    back_since: Option<DateTime<Utc>>,
) -> Result<Liveness> {
    let (dead, in_grace): (Vec<Uuid>, bool) = sqlx::query_as(FIND_DEAD)
        .bind(restart_grace.as_secs_f64())
        .bind(back_since)
        .fetch_one(conn)
        .await?;
    Ok(Liveness { dead, in_grace })
}

/// The server's clock.
pub async fn server_now(conn: &mut PgConnection) -> Result<DateTime<Utc>> {
    Ok(sqlx::query_scalar("SELECT now()").fetch_one(conn).await?)
}

/// Deletes rows of dead workers that no longer own running jobs.
pub async fn delete_dead(pool: &PgPool, dead: &[Uuid]) -> Result<u64> {
    let n = sqlx::query(
        "DELETE FROM workers w WHERE w.id = ANY($1::uuid[])
         AND NOT EXISTS (SELECT 1 FROM due_work d WHERE d.state = 'running' AND d.lease_owner = w.id)",
    )
    .bind(dead)
    .execute(pool)
    .await?;
    Ok(n.rows_affected())
}

/// A live worker process, served as the API's `Worker`: its registration and what
/// the workers table and its heartbeats say since.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct WorkerView {
    /// What it registered with.
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub registration: Registration,
    /// Its life since.
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub life: WorkerLife,
}

crate::model::flat_schema::flat_schema!(
    WorkerView as "Worker",
    "A live worker process.",
    [Registration, WorkerLife]
);

/// A registered worker's life: the second part of [`WorkerView`].
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct WorkerLife {
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// Last heartbeat.
    pub last_heartbeat_at: DateTime<Utc>,
    /// Jobs it holds a lease on (running or prefetched).
    pub running: i64,
    /// Handlers running, as of its last heartbeat (absent until it reported one).
    pub busy: Option<i32>,
    /// Jobs claimed and not started yet, as of its last heartbeat.
    pub prefetched: Option<i32>,
    // Filled from `list_running_jobs`: `list_workers` leaves it empty.
    /// Ids of the jobs it is running.
    #[sqlx(skip)]
    pub running_jobs: Vec<Uuid>,
}

/// Registered workers with their running job counts.
pub async fn list_workers(pool: &PgPool) -> Result<Vec<WorkerView>> {
    Ok(sqlx::query_as(
        "SELECT w.id, w.hostname, w.pid, w.queues, w.concurrency, w.version, w.started_at, w.last_heartbeat_at,
                w.busy, w.prefetched, (SELECT count(*) FROM due_work d WHERE d.state = 'running' AND d.lease_owner = w.id) AS running
         FROM workers w ORDER BY w.started_at",
    )
    .fetch_all(pool)
    .await?)
}

/// The jobs each of `owners` is running, as (lease owner, job id) pairs. Scans running
/// rows only (`due_work_running_idx`).
pub async fn list_running_jobs(pool: &PgPool, owners: &[Uuid]) -> Result<Vec<(Uuid, Uuid)>> {
    Ok(sqlx::query_as(
        "SELECT lease_owner, id FROM due_work
         WHERE state = 'running' AND lease_owner = ANY($1::uuid[])
         ORDER BY lease_owner, id",
    )
    .bind(owners)
    .fetch_all(pool)
    .await?)
}
