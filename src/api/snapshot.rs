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
use crate::model::jittered;

/// Time between two refreshes of the cached state.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// `/ready` answers from a check at most this old; older, the request that finds it so
/// runs the one check (others wait for its result), so probes cost at most one query and
/// one connection per second however many arrive.
pub const READY_MAX_AGE: Duration = Duration::from_secs(1);
/// Default of [`super::ApiSettings::cached_counts_after`].
pub const CACHED_COUNTS_AFTER: Duration = Duration::from_millis(50);
/// Longest one refresh query may take before it counts as a failure.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest one roll-up pass may take (a catch-up continues on the next pass).
const ROLL_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// The database as the last refresh saw it.
#[derive(Debug, Clone, Default)]
pub struct DbHealth {
    /// When the last check ended; None before the first one.
    pub checked_at: Option<Instant>,
    /// The database answered it.
    pub reachable: bool,
    /// Its schema is at this build's latest migration.
    pub schema_current: bool,
    /// It is a writable primary (not a standby, not read-only).
    pub writable: bool,
    /// Why it failed, when it did (for logs and the 503 message).
    pub error: Option<String>,
}

impl DbHealth {
    /// True when the last check found a reachable, writable, migrated database.
    pub fn ready(&self) -> bool {
        self.reachable && self.writable && self.schema_current
    }

    fn fresh(&self) -> bool {
        self.checked_at.is_some_and(|t| t.elapsed() < READY_MAX_AGE)
    }
}

/// Where the refresher publishes; cheap to read from any handler.
pub(crate) struct Snapshot {
    health: watch::Sender<DbHealth>,
    /// Held by the one request re-checking readiness.
    checking: tokio::sync::Mutex<()>,
    /// The last refresh's queue counts, when they were read and how long that took.
    queues: watch::Sender<Option<CachedQueues>>,
}

#[derive(Debug, Clone)]
struct CachedQueues {
    at: Instant,
    took: Duration,
    rows: std::sync::Arc<Vec<db::queues::QueueStats>>,
}

impl Snapshot {
    pub(crate) fn new() -> Snapshot {
        Snapshot {
            health: watch::Sender::new(DbHealth::default()),
            checking: tokio::sync::Mutex::new(()),
            queues: watch::Sender::new(None),
        }
    }
}

impl AppState {
    /// The database's health as the refresher last saw it (no database call).
    pub fn db_health(&self) -> DbHealth {
        self.inner.snapshot.health.borrow().clone()
    }

    /// Every queue with its counts from the last refresh, when that is at most two
    /// refresh intervals old and counting took at least
    /// [`super::ApiSettings::cached_counts_after`] (else the caller counts itself).
    pub(crate) fn cached_queue_stats(&self) -> Option<std::sync::Arc<Vec<db::queues::QueueStats>>> {
        let cached = self.inner.snapshot.queues.borrow();
        let c = cached.as_ref()?;
        (c.at.elapsed() < 2 * REFRESH_INTERVAL && c.took >= self.settings().cached_counts_after)
            .then(|| c.rows.clone())
    }

    /// The database's health no older than [`READY_MAX_AGE`], for `/ready`.
    pub async fn fresh_health(&self) -> DbHealth {
        let cached = self.db_health();
        if cached.fresh() {
            return cached;
        }
        let _only_one = self.inner.snapshot.checking.lock().await;
        // Whoever held the lock before us has just refreshed it.
        let cached = self.db_health();
        if cached.fresh() {
            return cached;
        }
        let health = self.check_health().await;
        self.inner.snapshot.health.send_replace(health.clone());
        health
    }

    /// One readiness check against the database.
    async fn check_health(&self) -> DbHealth {
        let checked_at = Some(Instant::now());
        match tokio::time::timeout(QUERY_TIMEOUT, db::readiness(self.pool())).await {
            Ok(Ok(db::Readiness::Ready)) => DbHealth {
                checked_at,
                reachable: true,
                schema_current: true,
                writable: true,
                error: None,
            },
            Ok(Ok(db::Readiness::SchemaNotCurrent)) => DbHealth {
                checked_at,
                reachable: true,
                writable: true,
                schema_current: false,
                error: Some(format!(
                    "database schema is not at migration {}",
                    db::latest_known_migration()
                )),
            },
            Ok(Ok(db::Readiness::NotWritable(state))) => DbHealth {
                checked_at,
                reachable: true,
                error: Some(format!("database server is {state}; waiting for a primary")),
                ..DbHealth::default()
            },
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "readiness check failed");
                DbHealth {
                    checked_at,
                    error: Some("database unreachable".to_owned()),
                    ..DbHealth::default()
                }
            }
            Err(_) => DbHealth {
                checked_at,
                error: Some("database did not answer in time".to_owned()),
                ..DbHealth::default()
            },
        }
    }

    /// Refreshes the cached state now and then every [`REFRESH_INTERVAL`] until the
    /// server stops, and beside it rolls up the closed minutes of job_history for the
    /// statistics ([`db::stats::roll_up`]) as often. [`super::serve`] runs it; tests
    /// driving the router spawn it.
    pub async fn run_refresher(self) {
        // The roll-up has its own loop: a catch-up after downtime (up to a day of
        // history, ten minutes per statement) must not hold back readiness and gauges.
        tokio::join!(
            self.every_interval(|| self.refresh_once()),
            self.every_interval(|| self.roll_up_once())
        );
    }

    /// Runs `step` now and then every [`REFRESH_INTERVAL`] until the server stops.
    async fn every_interval<F, Fut>(&self, step: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        loop {
            step().await;
            tokio::select! {
                _ = tokio::time::sleep(jittered(REFRESH_INTERVAL)) => {}
                _ = self.stopping().cancelled() => return,
            }
        }
    }

    /// One [`db::stats::roll_up`]; failures are logged (the statistics then read more
    /// minutes from job_history, still correct).
    pub async fn roll_up_once(&self) {
        match tokio::time::timeout(ROLL_UP_TIMEOUT, db::stats::roll_up(self.pool())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot roll up the statistics"),
            Err(_) => tracing::warn!("rolling up the statistics took over {ROLL_UP_TIMEOUT:?}"),
        }
    }

    /// One refresh: readiness, the queues known to the cluster (their label values),
    /// and the queue gauges. Failures are logged and published, never returned.
    pub async fn refresh_once(&self) {
        let pool = self.pool();
        let health = self.check_health().await;
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
        match tokio::time::timeout(QUERY_TIMEOUT, db::schedules::lag_seconds(pool)).await {
            Ok(Ok(lag)) => crate::metrics::schedule_lag(lag),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot refresh the schedule lag gauge"),
            Err(_) => {
                tracing::warn!(
                    "cannot refresh the schedule lag gauge: database did not answer in time"
                )
            }
        }
        let started = Instant::now();
        match tokio::time::timeout(QUERY_TIMEOUT, db::queues::queue_stats(pool, None)).await {
            Ok(Ok(queues)) => {
                let rows = std::sync::Arc::new(queues);
                self.inner.snapshot.queues.send_replace(Some(CachedQueues {
                    at: started,
                    took: started.elapsed(),
                    rows: rows.clone(),
                }));
                crate::metrics::queue_depths(rows.iter().map(|q| {
                    (
                        q.name.clone(),
                        QueueDepth {
                            available: q.available,
                            scheduled: q.scheduled,
                            running: q.running,
                            failed_recently: q.failed_recently,
                            oldest_wait_seconds: q.oldest_wait_seconds,
                            paused: q.paused,
                        },
                    )
                }));
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot refresh queue gauges"),
            Err(_) => {
                tracing::warn!("cannot refresh queue gauges: database did not answer in time")
            }
        }
    }
}
