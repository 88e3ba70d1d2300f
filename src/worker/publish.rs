//! Publishes the worker's kinds in the registry at start and every
//! [`PUBLISH_INTERVAL`], so the API and the CLI know which kinds are served.
//!
//! Best effort: a failed publish is logged and tried again at the next interval; it
//! never holds up claiming.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::kinds::{self, Published};
use crate::kinds::registry::PUBLISH_INTERVAL;

/// Longest the first publish may hold up the worker's start.
const FIRST_PUBLISH_LIMIT: Duration = Duration::from_secs(5);

/// The first publish, before the worker claims: once the worker is up, its kinds are
/// known. False when it failed (the loop tries again).
pub(crate) async fn first(pool: &PgPool, rows: &[Published]) -> bool {
    let Some(worker_id) = rows.first().map(|r| r.worker_id) else {
        return true;
    };
    match tokio::time::timeout(FIRST_PUBLISH_LIMIT, kinds::publish(pool, worker_id, rows)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not publish this worker's kinds; retrying every minute");
            false
        }
        Err(_) => {
            tracing::warn!("publishing this worker's kinds timed out; retrying every minute");
            false
        }
    }
}

/// Re-publishes every [`PUBLISH_INTERVAL`] until `stop`.
pub(crate) async fn refresh(pool: PgPool, rows: Vec<Published>, stop: CancellationToken) {
    let Some(worker_id) = rows.first().map(|r| r.worker_id) else {
        return;
    };
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PUBLISH_INTERVAL) => {}
            _ = stop.cancelled() => return,
        }
        match kinds::publish(&pool, worker_id, &rows).await {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "could not publish this worker's kinds; retrying every minute");
            }
            Err(_) => {}
        }
    }
}
