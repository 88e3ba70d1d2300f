//! The worker's life line: one dedicated connection holding the worker's session
//! advisory lock, used to refresh the worker row and extend all of its leases in one
//! statement per tick.
//!
//! The claim loop claims only while this lock is confirmed (`Shared::lock`):
//! the flag drops the moment a beat fails or does not answer within [`Heartbeat::
//! timeout`] (shorter than a third of the lease), and comes back once a beat succeeds
//! again. A connection that fails or hangs is dropped and the lock re-taken on a fresh
//! one (the first listed server satisfying `target_session_attrs`), with backoff and
//! jitter, while running jobs keep going: their leases are extended again as soon as
//! the new connection is up, well within the lease.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgConnection;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Shared, jittered};
use crate::db::{DbConfig, due_work, workers};

/// First and longest pause between attempts to re-take the lock. The longest stays well
/// under the rescuer's restart grace (10 s by default), so a live worker is back before
/// its jobs could be handed back.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// Between beats the lock session is pinged this often, so a dropped or terminated
/// session is noticed (and the lock re-taken) within about a second, inside the
/// rescuer's [`crate::scheduler::rescuer::LOCK_LOSS_GRACE`]; a ping writes nothing.
const PING_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct Heartbeat {
    pub db: DbConfig,
    pub registration: workers::Registration,
    pub shared: Arc<Shared>,
    pub lease: Duration,
    pub interval: Duration,
}

/// Why one step of the life line failed, for bounded logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Beat,
    Hung,
    Connect,
    Register,
}

impl Heartbeat {
    /// How long one call on the lock connection may take before the connection is
    /// given up: under a third of the lease, so a hung connection stops claiming and is
    /// replaced long before any lease could expire.
    pub(crate) fn timeout(lease: Duration) -> Duration {
        (lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// Beats until `stop`; returns the lock connection (if up) for deregistration.
    pub async fn run(self, conn: PgConnection, stop: CancellationToken) -> Option<PgConnection> {
        let mut conn = Some(conn);
        self.shared.lock.set_confirmed(true);
        let mut delay = RECONNECT_MIN;
        // One log line per kind of failure per backoff step, with a count.
        let mut failures: u64 = 0;
        let mut last_ok = Instant::now();
        let mut next_beat = Instant::now() + jittered(self.interval);
        loop {
            let wait = if conn.is_some() {
                jittered(PING_INTERVAL).min(next_beat.saturating_duration_since(Instant::now()))
            } else {
                jittered(delay)
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return conn,
            }
            let beat_due = Instant::now() >= next_beat;
            if beat_due {
                next_beat = Instant::now() + jittered(self.interval);
            }
            let outcome = match conn.as_mut() {
                Some(c) => match self.bounded(self.beat_or_ping(c, beat_due), &stop).await {
                    Some(Ok(())) => Ok(()),
                    Some(Err(e)) => {
                        // A plain statement error on a live session keeps the session
                        // (and its lock); a fault means it is on the wrong server or gone.
                        if e.is_unavailable() {
                            conn = None;
                        }
                        Err((Failure::Beat, e.to_string()))
                    }
                    // Stopped mid-statement: the session's state is unknown.
                    None if stop.is_cancelled() => return None,
                    None => {
                        // No answer: the session cannot be trusted with the lock any more.
                        conn = None;
                        Err((
                            Failure::Hung,
                            "no answer within the heartbeat timeout".to_owned(),
                        ))
                    }
                },
                None => match self.reconnect(&stop).await {
                    Ok(c) => {
                        conn = Some(c);
                        next_beat = Instant::now() + jittered(self.interval);
                        Ok(())
                    }
                    Err(f) => Err(f),
                },
            };
            match outcome {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(
                            worker_id = %self.registration.id,
                            failures,
                            down_ms = last_ok.elapsed().as_millis() as u64,
                            "worker lock confirmed again; claiming resumes"
                        );
                    }
                    self.shared.lock.set_confirmed(true);
                    failures = 0;
                    delay = RECONNECT_MIN;
                    last_ok = Instant::now();
                }
                Err((kind, error)) => {
                    self.shared.lock.set_confirmed(false);
                    failures += 1;
                    let message = match kind {
                        Failure::Beat => "worker heartbeat failed; not claiming",
                        Failure::Hung => "worker heartbeat hung; dropping the lock connection",
                        Failure::Connect => "worker lock connection still down; not claiming",
                        Failure::Register => "worker re-registration failed; not claiming",
                    };
                    tracing::warn!(
                        worker_id = %self.registration.id,
                        error = %error,
                        failures,
                        retry_in_ms = delay.as_millis() as u64,
                        "{message}"
                    );
                    if conn.is_none() {
                        delay = (delay * 2).min(RECONNECT_MAX);
                    }
                }
            }
        }
    }

    /// Runs `work` within [`Heartbeat::timeout`]; None on timeout or stop.
    async fn bounded<T>(
        &self,
        work: impl Future<Output = T>,
        stop: &CancellationToken,
    ) -> Option<T> {
        tokio::select! {
            r = tokio::time::timeout(Self::timeout(self.lease), work) => r.ok(),
            _ = stop.cancelled() => None,
        }
    }

    /// A fresh lock connection with the worker registered on it and its leases extended.
    async fn reconnect(&self, stop: &CancellationToken) -> Result<PgConnection, (Failure, String)> {
        let connect = async {
            // Connecting tries every listed server; it has its own per-server timeout.
            self.db.connect_one().await
        };
        let mut conn = tokio::select! {
            r = connect => r.map_err(|e| (Failure::Connect, e.to_string()))?,
            _ = stop.cancelled() => return Err((Failure::Connect, "stopping".to_owned())),
        };
        let registered = self
            .bounded(
                async {
                    workers::register(&mut conn, &self.registration).await?;
                    self.beat(&mut conn).await
                },
                stop,
            )
            .await;
        match registered {
            Some(Ok(())) => {
                tracing::info!(worker_id = %self.registration.id, "worker re-registered after reconnecting");
                Ok(conn)
            }
            Some(Err(e)) => Err((Failure::Register, e.to_string())),
            None => Err((
                Failure::Register,
                "no answer within the heartbeat timeout".to_owned(),
            )),
        }
    }

    async fn beat_or_ping(&self, conn: &mut PgConnection, beat: bool) -> crate::db::Result<()> {
        if beat {
            self.beat(conn).await
        } else {
            crate::db::ping(conn).await
        }
    }

    async fn beat(&self, conn: &mut PgConnection) -> crate::db::Result<()> {
        let id = self.registration.id;
        let slots = workers::Slots {
            busy: self.shared.gauges.busy.get(),
            prefetched: self.shared.gauges.prefetched.get(),
        };
        if !workers::heartbeat(conn, id, slots).await? {
            tracing::warn!(worker_id = %id, "worker row was removed (judged dead); re-registering");
            workers::register(conn, &self.registration).await?;
        }
        let owned = self.shared.leases.attempts();
        if owned.is_empty() {
            return Ok(());
        }
        let extended = due_work::extend_leases(conn, id, &owned, self.lease).await?;
        let kept: HashSet<Uuid> = extended.iter().map(|e| e.id).collect();
        for e in extended.iter().filter(|e| e.cancel_requested) {
            if self.shared.leases.cancel(&e.id) {
                tracing::info!(job_id = %e.id, "cancel requested; stopping job");
            }
        }
        // A lease we no longer hold was rescued or finished elsewhere: stop the work.
        for (lost, attempt) in owned.iter().filter(|(i, _)| !kept.contains(i)) {
            if self.shared.leases.cancel_attempt(lost, *attempt) {
                tracing::warn!(job_id = %lost, attempt, "lease lost; stopping job");
            }
        }
        Ok(())
    }
}
