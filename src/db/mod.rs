//! The store: every SQL statement Ordinaut runs lives under this module, one file per
//! table. Nothing outside `db` names a table.
//!
//! Connections get `search_path` set to the configured schema, so SQL text stays static
//! and one database can hold several installs.

pub mod attempts;
pub mod audit;
pub mod bulk;
pub mod due_work;
pub mod events;
pub mod history;
pub mod queues;
pub mod schedules;
pub mod sessions;
pub mod stats;
pub mod workers;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

pub use sqlx::PgPool as Pool;

/// Store errors, by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such job (or queue, worker).
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The row is not in a state that allows this transition.
    #[error("{0}")]
    Conflict(String),
    /// The caller's input was refused by a constraint.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The database was migrated by a newer Ordinaut.
    #[error(
        "database schema is at migration {found}, newer than this ordinaut knows (up to {known}); upgrade ordinaut"
    )]
    SchemaTooNew { found: i64, known: i64 },
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Anything else from the database or the network.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

/// Result alias for the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Embedded migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Postgres URL.
    pub url: String,
    /// Schema holding Ordinaut's tables (already validated as a plain identifier).
    pub schema: String,
    /// Pool size.
    pub max_connections: u32,
    /// The worker's claim/finish/lease pool. Its commits return before their WAL is
    /// flushed: a write lost in a server crash makes a job run once more (at-least-once
    /// holds); enqueues always commit synchronously. And its planner is told that every
    /// statement it runs is an ordered index scan or key lookup over cached data: right
    /// after a burst, before autovacuum has analyzed due_work, the claim was planned as
    /// a bitmap scan plus an external sort of the whole backlog (41 ms instead of 3 ms
    /// to pick 4,096 of 100,000 jobs; W1 37-52k instead of 59k jobs/s).
    pub hot_path: bool,
}

impl DbConfig {
    /// Connect options with search_path and application_name set.
    pub fn connect_options(&self) -> Result<PgConnectOptions> {
        let mut options =
            PgConnectOptions::from_str(&self.url)?.options([("search_path", self.schema.as_str())]);
        if self.hot_path {
            options = options.options([
                ("synchronous_commit", "off"),
                ("random_page_cost", "1.1"),
                ("enable_bitmapscan", "off"),
            ]);
        }
        let options = options
            .application_name("ordinaut")
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Debug, Duration::from_secs(1));
        Ok(options)
    }

    /// Opens a pool; the first connection is made eagerly so a bad URL fails here.
    pub async fn connect(&self) -> Result<PgPool> {
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(self.connect_options()?)
            .await?;
        Ok(pool)
    }

    /// Opens one connection outside any pool (advisory-lock holder, LISTEN).
    pub async fn connect_one(&self) -> Result<PgConnection> {
        Ok(PgConnection::connect_with(&self.connect_options()?).await?)
    }
}

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
    let mut conn = pool.acquire().await?;
    Ok(applied_version(&mut conn).await? == Some(latest_known_migration()))
}

/// Maps a unique/check violation to a caller-facing error by constraint name.
pub(crate) fn map_constraint(error: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &error
        && let Some(constraint) = db.constraint()
    {
        let (field, reason) = match constraint {
            "due_work_priority_range" => ("priority", "out of range -100..=100"),
            "due_work_max_attempts_range" | "queues_max_attempts_range" => {
                ("max_attempts", "out of range 1..=1000")
            }
            "due_work_timeout_positive" | "queues_timeout_positive" => {
                ("timeout", "must be positive")
            }
            "queues_backoff_base_positive" | "queues_backoff_max_positive" => {
                ("backoff", "must be positive")
            }
            _ => return Error::Sqlx(error),
        };
        return Error::Invalid {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
    }
    Error::Sqlx(error)
}
