//! Hands back the jobs of dead workers and expired leases. The only place that does.
//!
//! Dead workers are found through their session advisory locks (a crashed process
//! loses its lock at once), so their jobs come back within about a second; lease
//! expiry remains the fallback for what a lock cannot see (a hung process, a network
//! partition). Works in batches; several rescuers may run at once (SKIP LOCKED).
//!
//! A restart, a crash reset (one backend killed makes the postmaster reset every
//! session without changing `pg_postmaster_start_time()`) or a failover drops every
//! worker's lock at once. So the rescuer judges liveness on a session of its own: when
//! that session breaks and a new one gets through, the restart grace starts from that
//! moment (and from the server's own restart, whichever is later), however long the
//! server took to come back. While the grace runs nothing is handed back, leases
//! included: live workers re-take their locks and extend their leases first.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::{self, due_work::Rescued};
use crate::model::Backoff;
use crate::model::jittered;

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

/// How long a worker's lock must stay missing before the worker is judged dead: a live
/// worker whose lock session was terminated or dropped notices within about a second
/// (it pings its lock session every second) and re-takes the lock on a new session.
pub const LOCK_LOSS_GRACE: Duration = Duration::from_secs(3);

/// How long the rescuer's own session may take to connect or answer.
const SESSION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the hand-back statements of one pass may take.
const RESCUE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest pause between failing passes.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// The rescuer's own session and what it has seen.
#[derive(Default)]
struct Session {
    conn: Option<PgConnection>,
    /// A session was up before (so a new one means it was lost).
    had_one: bool,
    /// Server time when the rescuer last got through again after losing its session.
    back_since: Option<DateTime<Utc>>,
    /// When each worker was first seen without its lock (see [`LOCK_LOSS_GRACE`]).
    lockless_since: std::collections::HashMap<uuid::Uuid, std::time::Instant>,
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
        let mut session = Session::default();
        // One log line per failure per backoff step, with a count.
        let mut failures: u64 = 0;
        let mut delay = self.options.interval;
        loop {
            let wait = if failures == 0 {
                self.options.interval
            } else {
                delay
            };
            tokio::select! {
                _ = tokio::time::sleep(jittered(wait)) => {}
                _ = shutdown.cancelled() => return,
            }
            let pass = tokio::select! {
                r = self.run_watched(&mut session) => r,
                _ = shutdown.cancelled() => return,
            };
            match pass {
                Ok(report) => {
                    if failures > 0 {
                        tracing::info!(failures, "rescue passes work again");
                    }
                    failures = 0;
                    delay = self.options.interval;
                    if report.jobs.total() > 0 || report.workers_removed > 0 {
                        tracing::info!(
                            dead_workers = report.dead_workers,
                            retried = report.jobs.retried,
                            failed = report.jobs.failed,
                            cancelled = report.jobs.cancelled,
                            workers_removed = report.workers_removed,
                            "rescued jobs"
                        )
                    } else {
                        tracing::trace!("rescue pass found nothing");
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, retry_in_ms = delay.as_millis() as u64, "rescue pass failed; will retry");
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        }
    }

    /// A pass judged on the rescuer's own session (see the module docs).
    async fn run_watched(&self, session: &mut Session) -> db::Result<RescueReport> {
        if session.conn.is_none() {
            let mut conn = tokio::time::timeout(SESSION_TIMEOUT, db::connect_like(&self.pool))
                .await
                .map_err(|_| db::Error::Unavailable("rescuer session: no answer".to_owned()))??;
            if session.had_one {
                // The old session broke: whatever happened meanwhile (restart, crash
                // reset, failover) dropped live workers' locks too.
                let now = db::workers::server_now(&mut conn).await?;
                tracing::info!(
                    "rescuer reconnected; giving workers the restart grace to re-take their locks"
                );
                session.back_since = Some(now);
            }
            session.had_one = true;
            session.conn = Some(conn);
        }
        let Some(conn) = session.conn.as_mut() else {
            return Err(db::Error::Unavailable("rescuer session missing".to_owned()));
        };
        let liveness = match tokio::time::timeout(
            SESSION_TIMEOUT,
            db::workers::liveness(conn, self.options.restart_grace, session.back_since),
        )
        .await
        {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                if e.is_unavailable() {
                    session.conn = None;
                }
                return Err(e);
            }
            Err(_) => {
                session.conn = None;
                return Err(db::Error::Unavailable(
                    "rescuer session: no answer".to_owned(),
                ));
            }
        };
        let now = std::time::Instant::now();
        session
            .lockless_since
            .retain(|id, _| liveness.dead.contains(id));
        let dead: Vec<uuid::Uuid> = liveness
            .dead
            .into_iter()
            .filter(|id| {
                let since = *session.lockless_since.entry(*id).or_insert(now);
                now.duration_since(since) >= LOCK_LOSS_GRACE
            })
            .collect();
        if liveness.in_grace && dead.is_empty() {
            // Leases too: a worker that was cut off longer than its lease is about to
            // extend it again.
            return Ok(RescueReport::default());
        }
        // Bounded like every other call here: a server that stops answering must not
        // hang the rescuer (or its process's shutdown) for a TCP timeout.
        tokio::time::timeout(RESCUE_TIMEOUT, self.rescue(dead))
            .await
            .map_err(|_| db::Error::Unavailable("rescue pass: no answer".to_owned()))?
    }

    /// One pass: find dead workers, hand back their jobs and expired leases in
    /// batches, then drop the dead workers' rows.
    pub async fn run_once(&self) -> db::Result<RescueReport> {
        let dead = db::workers::find_dead(&self.pool, self.options.restart_grace).await?;
        self.rescue(dead).await
    }

    async fn rescue(&self, dead: Vec<uuid::Uuid>) -> db::Result<RescueReport> {
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
