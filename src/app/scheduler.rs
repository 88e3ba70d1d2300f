//! `ordinaut scheduler`: the schedule fire loop and the maintenance services (rescue,
//! retention).

use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{db_config, start_waiting};
use crate::config::Config;
use crate::db;
use crate::scheduler::{Firer, Rescuer, RescuerOptions, Retention};

/// `ordinaut scheduler`: connect (waiting for a writable primary), sync the declared
/// schedules, then fire and maintain until a signal.
pub async fn scheduler(config: &Config) -> anyhow::Result<()> {
    let db = db_config(config)?;
    let shutdown = crate::shutdown::on_signal();
    let Some(pool) = start_waiting(&db, config, &shutdown).await? else {
        return Ok(());
    };
    let heartbeat = crate::scheduler::heartbeat::path(config);
    tracing::info!(heartbeat = %heartbeat.display(), "scheduler started");
    run(config, pool.clone(), shutdown, Some(heartbeat)).await?;
    pool.close().await;
    tracing::info!("scheduler stopped");
    Ok(())
}

/// Fires schedules and runs maintenance (rescue, retention, vacuum of due_work) until `shutdown`; the fire
/// loop rewrites `heartbeat` after every tick when given.
pub(super) async fn run(
    config: &Config,
    pool: db::Pool,
    shutdown: CancellationToken,
    heartbeat: Option<PathBuf>,
) -> anyhow::Result<()> {
    crate::scheduler::sync_declared(&pool, config)
        .await
        .context("while syncing the schedules declared in ordinaut.toml")?;
    let mut services = tokio::task::JoinSet::new();
    let mut fire = crate::scheduler::fire_options(config);
    fire.heartbeat = heartbeat.map(|p| std::sync::Arc::new(crate::scheduler::Heartbeat::new(p)));
    services.spawn(Firer::new(pool.clone(), fire).run(shutdown.clone()));
    services.spawn(
        Rescuer::new(pool.clone(), RescuerOptions::from_config(config)).run(shutdown.clone()),
    );
    services.spawn(
        Retention::new(pool.clone(), config.maintenance.history_retention_days)
            .run(shutdown.clone()),
    );
    services.spawn(crate::scheduler::Vacuumer::new(pool.clone()).run(shutdown.clone()));
    while services.join_next().await.is_some() {}
    Ok(())
}
