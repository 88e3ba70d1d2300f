//! `audit_log`: who ran which bulk action (or deleted which job), on what, and how many
//! jobs it matched and changed (migration 0013). Written by `db::bulk` callers; read by
//! `/v1/audit` and the dashboard.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};

use super::Result;

/// One recorded action.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct AuditRow {
    /// Sequence number.
    pub id: i64,
    /// When it was confirmed.
    pub at: DateTime<Utc>,
    /// Who (which token, by position).
    pub actor: String,
    /// `bulk_cancel`, `bulk_retry`, `bulk_delete` or `delete`.
    pub action: String,
    /// The filter or job id.
    pub target: serde_json::Value,
    /// Jobs matching when confirmed.
    pub matched: i64,
    /// Jobs changed so far.
    pub affected: i64,
    /// When it ended; None while it runs (or if the process died during it).
    pub finished_at: Option<DateTime<Utc>>,
}

const INSERT_ENTRY: &str = "\
INSERT INTO audit_log (actor, action, target, matched, affected)
VALUES ($1, $2, $3, $4, 0)
RETURNING id";

/// Records the start of an action; returns its id for [`finish_entry`]. Written before
/// the first batch, so an action cut short by a crash still shows who started it.
pub async fn insert_entry(
    pool: &PgPool,
    actor: &str,
    action: &str,
    target: &serde_json::Value,
    matched: i64,
) -> Result<i64> {
    Ok(sqlx::query_scalar(INSERT_ENTRY)
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(matched)
        .fetch_one(pool)
        .await?)
}

/// Records progress of an action (after each batch) and, with `done`, its end.
pub async fn update_entry(pool: &PgPool, id: i64, affected: i64, done: bool) -> Result<()> {
    sqlx::query(
        "UPDATE audit_log SET affected = $2, finished_at = CASE WHEN $3 THEN now() END WHERE id = $1",
    )
    .bind(id)
    .bind(affected)
    .bind(done)
    .execute(pool)
    .await?;
    Ok(())
}

const LIST_ENTRIES: &str = "\
SELECT id, at, actor, action, target, matched, affected, finished_at
FROM audit_log
WHERE $1::bigint IS NULL OR id < $1
ORDER BY id DESC
LIMIT $2";

/// Entries newest first, below `before` (keyset on the primary key).
pub async fn list_entries(pool: &PgPool, before: Option<i64>, limit: i64) -> Result<Vec<AuditRow>> {
    Ok(sqlx::query_as(LIST_ENTRIES)
        .bind(before)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}
