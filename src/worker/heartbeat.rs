//! The worker's life line: one dedicated connection holding the worker's session
//! advisory lock, used to refresh the worker row and extend all of its leases in one
//! statement per tick. If the connection drops (Postgres restarted) it reconnects,
//! takes a new lock and re-registers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Shared, jittered};
use crate::db::{DbConfig, due_work, workers};

/// Retry interval while the lock connection is down.
const RECONNECT_INTERVAL: Duration = Duration::from_millis(500);

pub(crate) struct Heartbeat {
    pub db: DbConfig,
    pub registration: workers::Registration,
    pub shared: Arc<Shared>,
    pub lease: Duration,
    pub interval: Duration,
}

impl Heartbeat {
    /// Beats until `stop`; returns the lock connection (if up) for deregistration.
    pub async fn run(self, conn: PgConnection, stop: CancellationToken) -> Option<PgConnection> {
        let mut conn = Some(conn);
        loop {
            let wait = if conn.is_some() {
                jittered(self.interval)
            } else {
                RECONNECT_INTERVAL
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return conn,
            }
            let Some(c) = conn.as_mut() else {
                conn = self.reconnect().await;
                continue;
            };
            if let Err(e) = self.beat(c).await {
                tracing::warn!(error = %e, "worker heartbeat failed");
                // A live session still holds our lock: keep it. A dead one is replaced.
                if c.ping().await.is_err() {
                    conn = None;
                }
            }
        }
    }

    async fn reconnect(&self) -> Option<PgConnection> {
        let mut conn = match self.db.connect_one().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "worker lock connection still down");
                return None;
            }
        };
        match workers::register(&mut conn, &self.registration).await {
            Ok(_) => {
                tracing::info!(worker_id = %self.registration.id, "worker re-registered after reconnecting");
                if let Err(e) = self.beat(&mut conn).await {
                    tracing::warn!(error = %e, "worker heartbeat failed");
                }
                Some(conn)
            }
            Err(e) => {
                tracing::warn!(error = %e, "worker re-registration failed");
                None
            }
        }
    }

    async fn beat(&self, conn: &mut PgConnection) -> crate::db::Result<()> {
        let id = self.registration.id;
        if !workers::heartbeat(conn, id).await? {
            tracing::warn!(worker_id = %id, "worker row was removed (judged dead); re-registering");
            workers::register(conn, &self.registration).await?;
        }
        let owned = self.shared.owned_attempts();
        if owned.is_empty() {
            return Ok(());
        }
        let extended = due_work::extend_leases(conn, id, &owned, self.lease).await?;
        let kept: HashSet<Uuid> = extended.iter().map(|e| e.id).collect();
        for e in extended.iter().filter(|e| e.cancel_requested) {
            if self.shared.cancel(&e.id) {
                tracing::info!(job_id = %e.id, "cancel requested; stopping job");
            }
        }
        // A lease we no longer hold was rescued or finished elsewhere: stop the work.
        for (lost, attempt) in owned.iter().filter(|(i, _)| !kept.contains(i)) {
            if self.shared.cancel_attempt(lost, *attempt) {
                tracing::warn!(job_id = %lost, attempt, "lease lost; stopping job");
            }
        }
        Ok(())
    }
}
