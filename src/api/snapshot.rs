//! Cached database state: what `/metrics` and `/ready` report, read from the database
//! by one background task every [`REFRESH_INTERVAL`] and never per request.
//!
//! A scrape or a readiness probe costs no connection and no query, however often it
//! comes: unauthenticated floods of either cannot load the database or take the
//! connections `/v1` needs. The task owns exactly one query of each kind at a time.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::AppState;
use crate::db;
use crate::metrics::QueueDepth;
use crate::worker::jittered;

/// Time between two refreshes of the cached state.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Longest one refresh query may take before it counts as a failure.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// The database as the last refresh saw it.
#[derive(Debug, Clone, Default)]
pub struct DbHealth {
    /// When the last check ended; None before the first one.
    pub checked_at: Option<Instant>,
    /// The database answered it.
    pub reachable: bool,
    /// Its schema is at this build's latest migration.
    pub schema_current: bool,
    /// Why it failed, when it did (for logs and the 503 message).
    pub error: Option<String>,
}

impl DbHealth {
    /// True when the last check found the database reachable and migrated.
    pub fn ready(&self) -> bool {
        self.reachable && self.schema_current
    }
}

/// Where the refresher publishes; cheap to read from any handler.
pub(crate) struct Snapshot {
    health: watch::Sender<DbHealth>,
}

impl Snapshot {
    pub(crate) fn new() -> Snapshot {
        Snapshot {
            health: watch::Sender::new(DbHealth::default()),
        }
    }
}

impl AppState {
    /// The database's health as the refresher last saw it (no database call).
    pub fn db_health(&self) -> DbHealth {
        self.inner.snapshot.health.borrow().clone()
    }

    /// Refreshes the cached state now and then every [`REFRESH_INTERVAL`] until the
    /// server stops. [`super::serve`] runs it; tests driving the router spawn it.
    pub async fn run_refresher(self) {
        loop {
            self.refresh_once().await;
            tokio::select! {
                _ = tokio::time::sleep(jittered(REFRESH_INTERVAL)) => {}
                _ = self.stopping().cancelled() => return,
            }
        }
    }

    /// One refresh: readiness, the queues known to the cluster (their label values),
    /// and the queue gauges. Failures are logged and published, never returned.
    pub async fn refresh_once(&self) {
        let pool = self.pool();
        let health = match tokio::time::timeout(QUERY_TIMEOUT, db::is_ready(pool)).await {
            Ok(Ok(current)) => DbHealth {
                checked_at: Some(Instant::now()),
                reachable: true,
                schema_current: current,
                error: (!current).then(|| {
                    format!(
                        "database schema is not at migration {}",
                        db::latest_known_migration()
                    )
                }),
            },
            Ok(Err(e)) => DbHealth {
                checked_at: Some(Instant::now()),
                error: Some(format!("database unreachable: {e}")),
                ..DbHealth::default()
            },
            Err(_) => DbHealth {
                checked_at: Some(Instant::now()),
                error: Some("database did not answer in time".to_owned()),
                ..DbHealth::default()
            },
        };
        let reachable = health.reachable;
        self.inner.snapshot.health.send_replace(health);
        if !reachable {
            return;
        }
        match tokio::time::timeout(
            QUERY_TIMEOUT,
            db::queues::known_queue_names(pool, crate::metrics::MAX_LABELS as i64),
        )
        .await
        {
            Ok(Ok(names)) => crate::metrics::allow_queues(names),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the known queues"),
            Err(_) => {
                tracing::warn!("cannot read the known queues: database did not answer in time")
            }
        }
        match tokio::time::timeout(QUERY_TIMEOUT, db::queues::queue_stats(pool, None)).await {
            Ok(Ok(queues)) => crate::metrics::queue_depths(queues.into_iter().map(|q| {
                (
                    q.name,
                    QueueDepth {
                        available: q.available,
                        scheduled: q.scheduled,
                        running: q.running,
                        failed_recently: q.failed_recently,
                        oldest_wait_seconds: q.oldest_wait_seconds,
                        paused: q.paused,
                    },
                )
            })),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot refresh queue gauges"),
            Err(_) => {
                tracing::warn!("cannot refresh queue gauges: database did not answer in time")
            }
        }
    }
}
