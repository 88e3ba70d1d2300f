//! `ordinaut worker`: the worker with its hot-path pool, the rescuer, and the optional
//! per-process metrics endpoint.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{db_config, start_waiting};
use crate::config::Config;
use crate::db::listen::Listener;
use crate::db::{self, DbConfig};
use crate::scheduler::{Rescuer, RescuerOptions};
use crate::worker::{Handlers, Worker, WorkerOptions};

/// Whether a worker process also runs the lease rescuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rescue {
    /// Run it (`ordinaut worker`: every worker rescues, so no extra process is needed).
    Run,
    /// Another part of the process runs it (`ordinaut dev`: the scheduler).
    Skip,
}

/// `ordinaut worker`: connect (waiting for a writable primary), then claim and run jobs
/// until a signal.
pub async fn worker(config: &Config) -> anyhow::Result<()> {
    let db = db_config(config)?;
    let shutdown = crate::shutdown::on_signal();
    let Some(pool) = start_waiting(&db, config, &shutdown).await? else {
        return Ok(());
    };
    let result = run(config, db, pool.clone(), shutdown, Rescue::Run, None).await;
    pool.close().await;
    result
}

/// Runs the worker (and the rescuer, per `rescue`) until `shutdown`; it follows
/// `shared_listener` when another part of the process runs one, else a LISTEN
/// connection of its own on the hot-path pool.
pub(super) async fn run(
    config: &Config,
    db: DbConfig,
    pool: db::Pool,
    shutdown: CancellationToken,
    rescue: Rescue,
    shared_listener: Option<Listener>,
) -> anyhow::Result<()> {
    let handlers = Handlers::from_config(config)?;
    crate::metrics::allow_from_config(config);
    let metrics_server = match &config.worker.metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("while binding the worker's metrics endpoint to {addr}")
            })?;
            crate::metrics::install();
            tracing::info!(address = %addr, "worker metrics listening");
            Some(tokio::spawn(crate::worker::endpoint::serve(
                listener,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    // The worker's finish/lease writes commit asynchronously (claims do not); see DbConfig.
    let hot = DbConfig {
        hot_path: true,
        max_connections: 4,
        ..db.clone()
    };
    let hot_pool = hot
        .connect()
        .await
        .with_context(|| format!("while connecting to {}", hot.redacted()))?;
    let mut worker = Worker::new(
        WorkerOptions::from_config(config),
        hot,
        hot_pool.clone(),
        handlers,
    );
    if let Some(listener) = shared_listener {
        worker = worker.sharing_listener(listener);
    }
    let rescuer_task = (rescue == Rescue::Run).then(|| {
        let rescuer = Rescuer::new(pool.clone(), RescuerOptions::from_config(config));
        tokio::spawn(rescuer.run(shutdown.clone()))
    });
    let result = worker.run(shutdown.clone()).await;
    shutdown.cancel();
    if let Some(task) = rescuer_task {
        let _ = task.await;
    }
    if let Some(task) = metrics_server
        && let Ok(Err(e)) = task.await
    {
        tracing::warn!(error = %e, "worker metrics endpoint failed");
    }
    hot_pool.close().await;
    result.context("while running the worker")
}
