//! Process wiring: which pools, loops and servers each long-running subcommand starts
//! (`api`, `worker`, `scheduler`, `dev`), and how they stop. The composition root: it
//! parses nothing (that is `crate::cli`) and decides no job's fate (that is the worker,
//! scheduler and db modules); it connects, migrates and starts services.

mod api;
mod dev;
mod scheduler;
mod worker;

use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::{self, DbConfig, queues};

pub use api::api;
pub use dev::dev;
pub use scheduler::scheduler;
pub use worker::worker;

/// `ordinaut migrate`: apply the migrations and exit.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let db = db_config(config)?;
    db::migrate(&db)
        .await
        .with_context(|| format!("while migrating {}", db.redacted()))?;
    tracing::info!(schema = %db.schema, version = db::latest_known_migration(), "database migrated");
    Ok(())
}

/// The database settings of `config`, with the standard pool size; fails when
/// DATABASE_URL is unset.
pub fn db_config(config: &Config) -> anyhow::Result<DbConfig> {
    let Some(url) = config.database_url.clone() else {
        bail!("DATABASE_URL is not set (or use `ordinaut dev`, which starts a local Postgres)");
    };
    Ok(DbConfig {
        url,
        schema: config.schema.clone(),
        max_connections: 10,
        hot_path: false,
    })
}

/// Connects without migrating, for operator commands: refuses a schema that is not
/// migrated, or migrated by a newer build.
pub async fn connect_migrated(config: &Config) -> anyhow::Result<db::Pool> {
    let db = db_config(config)?;
    let pool = db
        .connect()
        .await
        .with_context(|| format!("while connecting to {}", db.redacted()))?;
    let mut conn = pool.acquire().await.context("while checking the schema")?;
    match db::applied_version(&mut conn)
        .await
        .context("while checking the schema")?
    {
        None => bail!(
            "database schema {} is not migrated; run `ordinaut migrate`",
            db.schema
        ),
        Some(v) if v > db::latest_known_migration() => bail!(
            "database schema is at migration {v}, newer than this ordinaut knows (up to {}); upgrade ordinaut",
            db::latest_known_migration()
        ),
        Some(_) => Ok(pool.clone()),
    }
}

/// Runs an operator command's `work` on a pool from [`connect_migrated`], then closes
/// the pool whatever `work` returned, so the command leaves no connection behind.
pub async fn with_migrated_pool<T>(
    config: &Config,
    work: impl AsyncFnOnce(&db::Pool) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let pool = connect_migrated(config).await?;
    let result = work(&pool).await;
    pool.close().await;
    result
}

/// Connects, checks the schema version and migrates. The error names the target.
async fn start(db: &DbConfig) -> anyhow::Result<db::Pool> {
    db::migrate(db)
        .await
        .with_context(|| format!("while connecting to and migrating {}", db.redacted()))?;
    db.connect()
        .await
        .with_context(|| format!("while connecting to {}", db.redacted()))
}

/// [`start_with`], waiting with backoff while servers answer but none is a writable
/// primary (a failover, a standby listed first); None when `shutdown` fires first.
async fn start_waiting(
    db: &DbConfig,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<db::Pool>> {
    wait_for_primary(db, shutdown, || start_with(db, config)).await
}

/// Runs `attempt` until it succeeds, fails for another reason than a missing primary,
/// or `shutdown` fires (None). One log line per backoff step, with a count.
async fn wait_for_primary<F, Fut>(
    db: &DbConfig,
    shutdown: &CancellationToken,
    mut attempt: F,
) -> anyhow::Result<Option<db::Pool>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<db::Pool>>,
{
    let mut delay = Duration::from_millis(250);
    let mut failures: u64 = 0;
    loop {
        let result = tokio::select! {
            r = attempt() => r,
            _ = shutdown.cancelled() => return Ok(None),
        };
        match result {
            Ok(pool) => {
                if failures > 0 {
                    tracing::info!(failures, "writable primary found");
                }
                return Ok(Some(pool));
            }
            Err(e)
                if e.chain().any(|c| {
                    c.downcast_ref::<db::Error>()
                        .is_some_and(db::Error::waits_for_primary)
                }) =>
            {
                failures += 1;
                tracing::warn!(
                    target_db = %db.redacted(),
                    error = %format!("{e:#}"),
                    failures,
                    retry_in_ms = delay.as_millis() as u64,
                    "no writable primary yet; waiting"
                );
                tokio::select! {
                    _ = tokio::time::sleep(crate::model::jittered(delay)) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects, migrates, and applies the queues declared in ordinaut.toml.
async fn start_with(db: &DbConfig, config: &Config) -> anyhow::Result<db::Pool> {
    let pool = start(db).await?;
    queues::apply_declared(&pool, &config.queues)
        .await
        .context("while applying the queues declared in ordinaut.toml")?;
    Ok(pool)
}
