//! History retention: creates daily partitions ahead of time, drops whole ones past the
//! retention, ages out the default partitions' rows, prunes old schedule fire records
//! and deletes workflows that ended before the retention, so finished jobs age out
//! without a mass DELETE.
//!
//! It must never stall the fleet: every partition change waits for its locks at most
//! [`LOCK_WAIT`] and is retried [`RETRY_INTERVAL`] later instead (a `pg_dump` or a long
//! read of job_history holds locks that DDL would otherwise queue every finish behind).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::{self, history::PartitionChange};
use crate::model::jittered;

/// How often partitions are rotated.
const INTERVAL: Duration = Duration::from_secs(3600);
/// How soon a rotation that could not take a lock tries again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// Longest a partition change waits for a lock. While a drop waits for the parent,
/// inserts into it queue behind, so this bounds that stall (once a day per table).
pub const LOCK_WAIT: Duration = Duration::from_millis(200);
/// Days before today and after it that have partitions.
const DAYS_BEHIND: i32 = 1;
const DAYS_AHEAD: i32 = 7;
/// Rows deleted per statement from a default partition, and fire records per schedule
/// kept (the API shows the latest 20).
const PRUNE_BATCH: i32 = 5000;
const FIRES_KEPT: i64 = 1000;
/// Most batches per run of either pruning: the rest waits for the next run.
const MAX_BATCHES: usize = 200;

/// What one rotation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Partitions created.
    pub created: u32,
    /// Partitions dropped.
    pub dropped: u32,
    /// Partition changes that could not take their locks in time: retried later.
    pub deferred: u32,
    /// Old rows deleted from the default partitions.
    pub default_rows_deleted: i64,
    /// Schedule fire records pruned.
    pub fires_pruned: u64,
    /// Finished workflows deleted (with their steps and edges).
    pub workflows_pruned: u64,
}

impl RotationReport {
    fn changed(&self) -> bool {
        self.created > 0
            || self.dropped > 0
            || self.default_rows_deleted > 0
            || self.fires_pruned > 0
            || self.workflows_pruned > 0
    }

    fn count(&mut self, change: PartitionChange, done: impl FnOnce(&mut RotationReport)) {
        match change {
            PartitionChange::Done => done(self),
            PartitionChange::Deferred => self.deferred += 1,
            PartitionChange::Nothing | PartitionChange::Occupied => {}
        }
    }
}

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

    /// Rotates at start and then hourly until `shutdown`; a rotation that had to defer a
    /// change runs again after [`RETRY_INTERVAL`].
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let pause = match self.run_once().await {
                Ok(r) => {
                    if r.changed() {
                        tracing::info!(
                            created = r.created,
                            dropped = r.dropped,
                            default_rows_deleted = r.default_rows_deleted,
                            fires_pruned = r.fires_pruned,
                            workflows_pruned = r.workflows_pruned,
                            "history retention ran"
                        );
                    }
                    if r.deferred > 0 {
                        tracing::warn!(
                            deferred = r.deferred,
                            retry_in_secs = RETRY_INTERVAL.as_secs(),
                            "history partition changes deferred: their locks are held (a dump or a long read?); will retry"
                        );
                        RETRY_INTERVAL
                    } else {
                        INTERVAL
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "history retention failed; will retry");
                    RETRY_INTERVAL
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(jittered(pause)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One rotation: partitions from yesterday to a week ahead, drops of partitions past
    /// the retention, then the prunings. Each partition change is its own transaction.
    pub async fn run_once(&self) -> db::Result<RotationReport> {
        let keep_days = self.keep_days.min(i32::MAX as u32) as i32;
        let mut report = RotationReport::default();
        for parent in ["job_history", "job_attempts"] {
            for day in -DAYS_BEHIND..=DAYS_AHEAD {
                let change =
                    db::history::create_partition(&self.pool, parent, day, LOCK_WAIT).await?;
                report.count(change, |r| r.created += 1);
            }
        }
        for part in db::history::partitions_older_than(&self.pool, keep_days).await? {
            let change = db::history::drop_partition(&self.pool, &part, LOCK_WAIT).await?;
            report.count(change, |r| r.dropped += 1);
        }
        for _ in 0..MAX_BATCHES {
            let n =
                db::history::prune_default_partitions(&self.pool, keep_days, PRUNE_BATCH).await?;
            report.default_rows_deleted += n;
            if n < i64::from(PRUNE_BATCH) {
                break;
            }
            tokio::time::sleep(jittered(Duration::from_millis(20))).await;
        }
        for _ in 0..MAX_BATCHES {
            let n =
                db::schedules::prune_fires(&self.pool, FIRES_KEPT, i64::from(PRUNE_BATCH)).await?;
            report.fires_pruned += n;
            if n < PRUNE_BATCH as u64 {
                break;
            }
            tokio::time::sleep(jittered(Duration::from_millis(20))).await;
        }
        for _ in 0..MAX_BATCHES {
            let n = db::workflows::prune_finished(&self.pool, keep_days, i64::from(PRUNE_BATCH))
                .await?;
            report.workflows_pruned += n;
            if n < PRUNE_BATCH as u64 {
                break;
            }
            tokio::time::sleep(jittered(Duration::from_millis(20))).await;
        }
        Ok(report)
    }
}
