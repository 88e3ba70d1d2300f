//! History retention: creates daily partitions ahead of time and drops whole ones past
//! the retention, so finished jobs age out without a mass DELETE.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db;
use crate::worker::jittered;

/// How often partitions are rotated.
const INTERVAL: Duration = Duration::from_secs(3600);

/// The retention service.
pub struct Retention {
    pool: PgPool,
    keep_days: u32,
}

impl Retention {
    /// Keeps `keep_days` days of history.
    pub fn new(pool: PgPool, keep_days: u32) -> Retention {
        Retention { pool, keep_days }
    }

    /// Rotates at start and then hourly until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.run_once().await {
                Ok((created, dropped)) if created > 0 || dropped > 0 => {
                    tracing::info!(created, dropped, "history partitions rotated")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "rotating history partitions failed; will retry")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(jittered(INTERVAL)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One rotation: (partitions created, partitions dropped).
    pub async fn run_once(&self) -> db::Result<(i32, i32)> {
        db::schedules::rotate_partitions(&self.pool, self.keep_days.min(i32::MAX as u32) as i32)
            .await
    }
}
