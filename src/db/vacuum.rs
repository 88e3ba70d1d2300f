//! Vacuuming `due_work` on demand (scheduler::vacuum decides when): what its dead rows
//! and the oldest open snapshot are, and the vacuum itself.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

use crate::db::Result;

/// What `due_work` holds now, as the statistics collector last heard (up to about a
/// second behind).
#[derive(Debug, Clone, Copy, FromRow)]
pub struct DueWorkDead {
    /// Dead row versions not yet removed.
    pub dead: i64,
    /// Live rows.
    pub live: i64,
    /// When the last vacuum of it (manual or autovacuum) ended.
    pub last_vacuum: Option<DateTime<Utc>>,
    /// Start of the oldest transaction of another session that holds a snapshot (null
    /// when there is none, or when this role may not see the others' sessions).
    pub oldest_snapshot: Option<DateTime<Utc>>,
    /// Whether this role may vacuum `due_work` (only its owner, or a superuser, can).
    pub may_vacuum: bool,
}

const DEAD: &str = "\
SELECT s.n_dead_tup AS dead, s.n_live_tup AS live,
       greatest(s.last_vacuum, s.last_autovacuum) AS last_vacuum,
       (SELECT min(a.xact_start) FROM pg_stat_activity a
        WHERE a.backend_xmin IS NOT NULL AND a.pid <> pg_backend_pid()
          AND a.backend_type = 'client backend') AS oldest_snapshot,
       (SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = s.relid)
       AS may_vacuum
FROM pg_stat_user_tables s
WHERE s.relid = 'due_work'::regclass";

/// Dead rows of `due_work`, its last vacuum and the oldest snapshot held elsewhere.
pub async fn due_work_dead(pool: &PgPool) -> Result<DueWorkDead> {
    Ok(sqlx::query_as(DEAD).fetch_one(pool).await?)
}

/// Vacuums `due_work`, or does nothing when another vacuum of it (autovacuum's) is
/// running: SKIP_LOCKED, so this never queues behind one.
pub async fn vacuum_due_work(pool: &PgPool) -> Result<()> {
    sqlx::query("VACUUM (SKIP_LOCKED) due_work")
        .execute(pool)
        .await?;
    Ok(())
}
