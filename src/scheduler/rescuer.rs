//! Hands back the jobs of dead workers and expired leases. The only place that does.
//!
//! Dead workers are found through their session advisory locks (a crashed process
//! loses its lock at once), so their jobs come back within about a second; lease
//! expiry remains the fallback for what a lock cannot see (a hung process, a network
//! partition). Works in batches; several rescuers may run at once (SKIP LOCKED).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::{self, due_work::Rescued};
use crate::model::Backoff;
use crate::worker::jittered;

/// Rescuer settings.
#[derive(Debug, Clone)]
pub struct RescuerOptions {
    /// Time between passes.
    pub interval: Duration,
    /// After a Postgres restart, how long workers get to re-take their locks.
    pub restart_grace: Duration,
    /// Default retry backoff (queues may override).
    pub backoff: Backoff,
    /// Rows per statement.
    pub batch: i64,
}

impl RescuerOptions {
    /// Defaults from configuration.
    pub const DEFAULT_BATCH: i64 = 1000;

    /// Options from the configuration.
    pub fn from_config(config: &Config) -> RescuerOptions {
        RescuerOptions {
            interval: Duration::from_secs_f64(config.maintenance.rescue_interval),
            restart_grace: Duration::from_secs_f64(config.maintenance.restart_grace),
            backoff: Backoff {
                base: Duration::from_secs_f64(config.worker.backoff_base),
                max: Duration::from_secs_f64(config.worker.backoff_max_delay),
            },
            batch: Self::DEFAULT_BATCH,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RescueReport {
    /// Dead workers found.
    pub dead_workers: usize,
    /// Jobs handed back.
    pub jobs: Rescued,
    /// Dead worker rows removed.
    pub workers_removed: u64,
}

/// The rescuer service.
pub struct Rescuer {
    pool: PgPool,
    options: RescuerOptions,
}

impl Rescuer {
    /// A rescuer over `pool`.
    pub fn new(pool: PgPool, options: RescuerOptions) -> Rescuer {
        Rescuer { pool, options }
    }

    /// Runs passes until `shutdown`. Errors are logged and retried; they never end the loop.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(jittered(self.options.interval)) => {}
                _ = shutdown.cancelled() => return,
            }
            match self.run_once().await {
                Ok(report) if report.jobs.total() > 0 || report.workers_removed > 0 => {
                    tracing::info!(
                        dead_workers = report.dead_workers,
                        retried = report.jobs.retried,
                        failed = report.jobs.failed,
                        cancelled = report.jobs.cancelled,
                        workers_removed = report.workers_removed,
                        "rescued jobs"
                    )
                }
                Ok(_) => tracing::trace!("rescue pass found nothing"),
                Err(e) => tracing::warn!(error = %e, "rescue pass failed; will retry"),
            }
        }
    }

    /// One pass: find dead workers, hand back their jobs and expired leases in
    /// batches, then drop the dead workers' rows.
    pub async fn run_once(&self) -> db::Result<RescueReport> {
        let dead = db::workers::find_dead(&self.pool, self.options.restart_grace).await?;
        let mut report = RescueReport {
            dead_workers: dead.len(),
            ..Default::default()
        };
        loop {
            let r = db::due_work::rescue_many(
                &self.pool,
                &dead,
                self.options.backoff,
                self.options.batch,
            )
            .await?;
            report.jobs.retried += r.retried;
            report.jobs.failed += r.failed;
            report.jobs.cancelled += r.cancelled;
            if r.total() < self.options.batch {
                break;
            }
        }
        if !dead.is_empty() {
            report.workers_removed = db::workers::delete_dead(&self.pool, &dead).await?;
        }
        Ok(report)
    }
}
