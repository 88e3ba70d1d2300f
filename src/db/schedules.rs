//! `schedules` and `schedule_fires`: durable cron schedules and the record of each fire.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use super::{Error, Result};

pub use crate::model::schedule::ScheduleSpec;

/// A stored schedule, served as the API's `Schedule`: its id, its spec and its state.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct ScheduleRow {
    /// Id.
    pub id: Uuid,
    /// What it is.
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub spec: ScheduleSpec,
    /// Where it stands.
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub state: ScheduleState,
}

crate::model::flat_schema::flat_schema!(
    ScheduleRow as "Schedule",
    "A schedule.",
    [RowId, ScheduleSpec, ScheduleState]
);

/// The schema of the `id` heading a [`ScheduleRow`].
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only: the row has the id itself.
struct RowId {
    /// Id.
    id: Uuid,
}

/// Where a stored schedule stands: the last part of [`ScheduleRow`].
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct ScheduleState {
    /// Paused schedules do not fire.
    pub paused: bool,
    /// Declared in ordinaut.toml: managed by the file; `POST` of its name answers 409.
    pub declared: bool,
    /// Next fire time.
    pub next_run_at: DateTime<Utc>,
    /// Last fire time.
    pub last_run_at: Option<DateTime<Utc>>,
    /// Recent fires, newest first (single-schedule reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[sqlx(skip)]
    pub recent_fires: Option<Vec<FireRow>>,
}

const LIST: &str = "\
SELECT id, name, cron, timezone, queue, kind, payload, priority, max_attempts, timeout_ms, unique_key,
       overlap, misfire_grace_ms, paused, declared, next_run_at, last_run_at
FROM schedules ORDER BY name";

const GET: &str = "\
SELECT id, name, cron, timezone, queue, kind, payload, priority, max_attempts, timeout_ms, unique_key,
       overlap, misfire_grace_ms, paused, declared, next_run_at, last_run_at
FROM schedules WHERE name = $1";

const LOCK_BY_NAME: &str = "\
SELECT id, name, cron, timezone, queue, kind, payload, priority, max_attempts, timeout_ms, unique_key,
       overlap, misfire_grace_ms, paused, declared, next_run_at, last_run_at
FROM schedules WHERE name = $1 FOR UPDATE";

const LOCK_DUE: &str = "\
SELECT id, name, cron, timezone, queue, kind, payload, priority, max_attempts, timeout_ms, unique_key,
       overlap, misfire_grace_ms, paused, declared, next_run_at, last_run_at
FROM schedules WHERE next_run_at <= now() AND NOT paused
ORDER BY next_run_at LIMIT $1
FOR UPDATE SKIP LOCKED";

const UPSERT: &str = "\
INSERT INTO schedules AS s (id, name, cron, timezone, queue, kind, payload, priority, max_attempts, timeout_ms,
                            unique_key, overlap, misfire_grace_ms, declared, next_run_at, declared_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (name) DO UPDATE SET
    cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, queue = EXCLUDED.queue, kind = EXCLUDED.kind,
    payload = EXCLUDED.payload, priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts,
    timeout_ms = EXCLUDED.timeout_ms, unique_key = EXCLUDED.unique_key, overlap = EXCLUDED.overlap,
    misfire_grace_ms = EXCLUDED.misfire_grace_ms, declared = EXCLUDED.declared,
    declared_by = EXCLUDED.declared_by,
    -- A changed cadence starts from its next fire; an unchanged one keeps its place.
    next_run_at = CASE WHEN s.cron IS DISTINCT FROM EXCLUDED.cron OR s.timezone IS DISTINCT FROM EXCLUDED.timezone
                       THEN EXCLUDED.next_run_at ELSE s.next_run_at END,
    updated_at = now()
-- A schedule declared in ordinaut.toml is changed only through the file: an API or CLI
-- save of the same name updates nothing (and returns no row), never silently taking
-- it out of file management.
WHERE EXCLUDED.declared OR NOT s.declared
RETURNING id";

/// Creates or updates (by name) a schedule; `next_run_at` applies when new or when
/// its cron or timezone changed. `declared_by` (who syncs ordinaut.toml) marks a
/// declared schedule, which is only updated by a declared spec: otherwise nothing
/// changes and the answer is `Err(Conflict)` naming who declared it. Locks the
/// schedule's row.
pub async fn upsert(
    pool: &PgPool,
    spec: &ScheduleSpec,
    next_run_at: DateTime<Utc>,
    declared_by: Option<&str>,
) -> Result<Uuid> {
    let id: Option<Uuid> = sqlx::query_scalar(UPSERT)
        .bind(Uuid::now_v7())
        .bind(&spec.name)
        .bind(&spec.cron)
        .bind(&spec.timezone)
        .bind(&spec.queue)
        .bind(&spec.kind)
        .bind(&spec.payload)
        .bind(spec.priority)
        .bind(spec.max_attempts)
        .bind(spec.timeout_ms)
        .bind(&spec.unique_key)
        .bind(&spec.overlap)
        .bind(spec.misfire_grace_ms)
        .bind(declared_by.is_some())
        .bind(next_run_at)
        .bind(declared_by)
        .fetch_optional(pool)
        .await
        .map_err(super::map_constraint)?;
    if let Some(id) = id {
        return Ok(id);
    }
    let owner: Option<Option<String>> =
        sqlx::query_scalar("SELECT declared_by FROM schedules WHERE name = $1")
            .bind(&spec.name)
            .fetch_optional(pool)
            .await?;
    let owner = owner.flatten().unwrap_or_else(|| "a scheduler".to_owned());
    Err(Error::Conflict(format!(
        "schedule {:?} is declared in ordinaut.toml and synced by {owner}; change it in that file, or delete it first to manage it here",
        spec.name
    )))
}

/// Every schedule, by name.
pub async fn list(pool: &PgPool) -> Result<Vec<ScheduleRow>> {
    Ok(sqlx::query_as(LIST).fetch_all(pool).await?)
}

/// One schedule by name.
pub async fn get(pool: &PgPool, name: &str) -> Result<Option<ScheduleRow>> {
    Ok(sqlx::query_as(GET).bind(name).fetch_optional(pool).await?)
}

/// Pauses or resumes; on resume the caller passes the next fire computed from now.
pub async fn set_paused(
    pool: &PgPool,
    name: &str,
    paused: bool,
    next_run_at: Option<DateTime<Utc>>,
) -> Result<()> {
    let n = sqlx::query(
        "UPDATE schedules SET paused = $2, next_run_at = coalesce($3, next_run_at), updated_at = now() WHERE name = $1",
    )
    .bind(name)
    .bind(paused)
    .bind(next_run_at)
    .execute(pool)
    .await?;
    found(n.rows_affected(), name)
}

/// `Ok` when a statement on schedule `name` changed a row, else `NotFound` naming it.
fn found(rows_affected: u64, name: &str) -> Result<()> {
    if rows_affected == 0 {
        return Err(Error::NotFound {
            what: "schedule",
            id: name.to_owned(),
        });
    }
    Ok(())
}

/// Deletes a schedule (its fire records go with it; its jobs stay).
pub async fn delete(pool: &PgPool, name: &str) -> Result<()> {
    let n = sqlx::query("DELETE FROM schedules WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await?;
    found(n.rows_affected(), name)
}

/// Deletes declared schedules no longer in the file (the caller refuses an empty
/// `keep`: a scheduler without its file must not wipe everyone's schedules).
pub async fn delete_undeclared(pool: &PgPool, keep: &[String]) -> Result<u64> {
    let n = sqlx::query("DELETE FROM schedules WHERE declared AND NOT (name = ANY($1::text[]))")
        .bind(keep)
        .execute(pool)
        .await?;
    Ok(n.rows_affected())
}

// Served as the API's `Fire`.
/// A recorded fire.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
#[schema(as = Fire)]
pub struct FireRow {
    /// Intended fire time.
    pub fire_time: DateTime<Utc>,
    /// enqueued, triggered, skipped_misfire, skipped_overlap or deduplicated.
    pub outcome: String,
    /// Job made.
    pub job_id: Option<Uuid>,
    /// Fire times skipped (misfire records).
    pub skipped: i32,
}

/// The latest fires of a schedule.
pub async fn recent_fires(pool: &PgPool, id: Uuid, limit: i64) -> Result<Vec<FireRow>> {
    Ok(sqlx::query_as(
        "SELECT fire_time, outcome, job_id, skipped FROM schedule_fires WHERE schedule_id = $1
         ORDER BY fire_time DESC LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Seconds the most overdue unpaused schedule is behind its next fire time: 0 while the
/// schedulers keep up (a tick is 0.2 s), growing while none fires.
pub async fn lag_seconds(pool: &PgPool) -> Result<f64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(next_run_at))::float8, 0) \
         FROM schedules WHERE NOT paused AND next_run_at <= now()",
    )
    .fetch_one(pool)
    .await?)
}

/// Locks up to `limit` due, unpaused schedules (FOR UPDATE SKIP LOCKED on
/// schedules_due_idx), so concurrent schedulers take different ones.
pub async fn lock_due(conn: &mut PgConnection, limit: i64) -> Result<Vec<ScheduleRow>> {
    Ok(sqlx::query_as(LOCK_DUE).bind(limit).fetch_all(conn).await?)
}

/// Locks one schedule by name (trigger now).
pub async fn lock_by_name(conn: &mut PgConnection, name: &str) -> Result<Option<ScheduleRow>> {
    Ok(sqlx::query_as(LOCK_BY_NAME)
        .bind(name)
        .fetch_optional(conn)
        .await?)
}

/// What became of one fire time, as stored in `schedule_fires.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireOutcome {
    /// The fire loop enqueued the schedule's job.
    Enqueued,
    /// An operator's trigger enqueued it, outside the cadence.
    Triggered,
    /// Fire times missed by more than the misfire grace (counted in `skipped`).
    SkippedMisfire,
    /// Skipped: the previous job of an `overlap = "skip"` schedule was still live.
    SkippedOverlap,
    /// The job's unique key matched a live job: nothing new was made.
    Deduplicated,
}

impl FireOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            FireOutcome::Enqueued => "enqueued",
            FireOutcome::Triggered => "triggered",
            FireOutcome::SkippedMisfire => "skipped_misfire",
            FireOutcome::SkippedOverlap => "skipped_overlap",
            FireOutcome::Deduplicated => "deduplicated",
        }
    }
}

/// One row of `schedule_fires` to record.
#[derive(Debug, Clone, Copy)]
pub struct Fire {
    /// The schedule.
    pub schedule_id: Uuid,
    /// The cron time fired (the first one, for a run of misfires).
    pub fire_time: DateTime<Utc>,
    /// What became of it.
    pub outcome: FireOutcome,
    /// The job made, if any.
    pub job_id: Option<Uuid>,
    /// Fire times this row stands for beyond the first (misfires).
    pub skipped: i32,
}

/// Records a fire; false if that fire time was already recorded (a double fire).
pub async fn record_fire(conn: &mut PgConnection, fire: Fire) -> Result<bool> {
    let n = sqlx::query(
        "INSERT INTO schedule_fires (schedule_id, fire_time, outcome, job_id, skipped) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (schedule_id, fire_time) DO NOTHING",
    )
    .bind(fire.schedule_id)
    .bind(fire.fire_time)
    .bind(fire.outcome.as_str())
    .bind(fire.job_id)
    .bind(fire.skipped)
    .execute(conn)
    .await?;
    Ok(n.rows_affected() == 1)
}

/// Marks a recorded fire as deduplicated (its job's unique key matched a live job, so
/// no job was made).
pub async fn mark_fire_deduplicated(
    conn: &mut PgConnection,
    schedule_id: Uuid,
    fire_time: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE schedule_fires SET outcome = 'deduplicated', job_id = NULL WHERE schedule_id = $1 AND fire_time = $2",
    )
    .bind(schedule_id)
    .bind(fire_time)
    .execute(conn)
    .await?;
    Ok(())
}

/// Pauses a schedule by id (one whose stored cron or timezone cannot be evaluated, so
/// the fire loop does not spin on it).
pub async fn pause_by_id(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("UPDATE schedules SET paused = true WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether a job made by this schedule is still live: a lookup of the partial index
/// `due_work_schedule_idx` (migration 0010), whatever the backlog.
pub async fn has_live_job(conn: &mut PgConnection, schedule_id: Uuid) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM due_work WHERE schedule_id = $1)")
            .bind(schedule_id)
            .fetch_one(conn)
            .await?,
    )
}

/// The database's clock (`now()`, the transaction's start): fire times are compared
/// with the same clock that selected the due schedules, never the host's.
pub async fn db_now(conn: &mut PgConnection) -> Result<DateTime<Utc>> {
    Ok(sqlx::query_scalar("SELECT now()").fetch_one(conn).await?)
}

/// Moves a schedule to its next fire time.
pub async fn advance(
    conn: &mut PgConnection,
    id: Uuid,
    next_run_at: DateTime<Utc>,
    last_run_at: Option<DateTime<Utc>>,
) -> Result<()> {
    sqlx::query("UPDATE schedules SET next_run_at = $2, last_run_at = coalesce($3, last_run_at) WHERE id = $1")
        .bind(id)
        .bind(next_run_at)
        .bind(last_run_at)
        .execute(conn)
        .await?;
    Ok(())
}

const PRUNE_FIRES: &str = "\
WITH cut AS (
    -- Per schedule, the newest fire beyond the ones kept (a backward walk of the
    -- primary key (schedule_id, fire_time)).
    SELECT s.id,
           (SELECT f.fire_time FROM schedule_fires f WHERE f.schedule_id = s.id
            ORDER BY f.fire_time DESC OFFSET $1 LIMIT 1) AS newest_dropped
    FROM schedules s
),
victims AS (
    SELECT f.schedule_id, f.fire_time
    FROM cut JOIN schedule_fires f ON f.schedule_id = cut.id AND f.fire_time <= cut.newest_dropped
    LIMIT $2
)
DELETE FROM schedule_fires f USING victims v
WHERE f.schedule_id = v.schedule_id AND f.fire_time = v.fire_time";

/// Deletes up to `batch` fire records beyond the newest `keep` of each schedule; returns
/// how many. Old fire times are never fired again (`next_run_at` only moves forward), so
/// their records are history only. Row locks on the deleted rows only.
pub async fn prune_fires(pool: &PgPool, keep: i64, batch: i64) -> Result<u64> {
    let n = sqlx::query(PRUNE_FIRES)
        .bind(keep)
        .bind(batch)
        .execute(pool)
        .await?;
    Ok(n.rows_affected())
}
