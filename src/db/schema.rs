//! The schema: embedded migrations, the daily partitions, and whether this build can
//! work on the database (schema version, writable primary).

use sqlx::{Connection, PgConnection, PgPool};

use super::connect::{DbConfig, describe, server_state};
use super::{Error, Result, fault};

/// Embedded migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Latest migration version this build knows.
pub fn latest_known_migration() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Creates the schema if needed and applies pending migrations.
///
/// Safe with many processes starting at once: sqlx's migrator holds a database-wide
/// advisory lock for the whole run. A database migrated by a newer build is refused.
#[tracing::instrument(skip_all, fields(schema = %config.schema))]
pub async fn migrate(config: &DbConfig) -> Result<()> {
    let mut conn = config.connect_one().await?;
    check_not_newer(&mut conn).await?;
    let mut migrator = sqlx::migrate::Migrator {
        migrations: MIGRATOR.migrations.clone(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    // The schema name was validated as a plain lowercase identifier in Config::validate.
    migrator.create_schema(config.schema.clone());
    migrator.run_direct(None, &mut conn, false).await?;
    ensure_partitions(&mut conn).await?;
    let _ = conn.close().await;
    Ok(())
}

/// Creates the daily history/attempt partitions from yesterday to a week ahead (the
/// default partition catches anything else). Idempotent.
pub async fn ensure_partitions(conn: &mut PgConnection) -> Result<i32> {
    Ok(
        sqlx::query_scalar("SELECT ordinaut_ensure_partitions(current_date - 1, current_date + 7)")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// The highest applied migration version, or None before the first migration.
pub async fn applied_version(conn: &mut PgConnection) -> Result<Option<i64>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(None);
    }
    let version: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *conn)
            .await?;
    Ok(version)
}

async fn check_not_newer(conn: &mut PgConnection) -> Result<()> {
    let known = latest_known_migration();
    match applied_version(conn).await? {
        Some(found) if found > known => Err(Error::SchemaTooNew { found, known }),
        _ => Ok(()),
    }
}

/// True when the database answers and its schema is at this build's latest migration.
pub async fn is_ready(pool: &PgPool) -> Result<bool> {
    Ok(readiness(pool).await? == Readiness::Ready)
}

/// Whether this process can do its work on the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// A writable primary with the schema at this build's migration.
    Ready,
    /// The schema is not at this build's migration.
    SchemaNotCurrent,
    /// The server is a standby or read-only (no primary reachable through this pool).
    NotWritable(&'static str),
}

/// Readiness of `pool`'s server: reachable, a writable primary, schema current.
pub async fn readiness(pool: &PgPool) -> Result<Readiness> {
    let mut conn = pool.acquire().await?;
    let (in_recovery, read_only) = server_state(&mut conn).await?;
    if in_recovery || read_only {
        // The pool must not keep talking to it; it looks for the primary again.
        fault::retire_connections();
        return Ok(Readiness::NotWritable(describe(in_recovery, read_only)));
    }
    Ok(
        if applied_version(&mut conn).await? == Some(latest_known_migration()) {
            Readiness::Ready
        } else {
            Readiness::SchemaNotCurrent
        },
    )
}
