//! LISTEN for enqueues (wake the claimer) and cancels (stop the job) on the install's
//! channels. Notifications missed while the connection is down are covered by the
//! poll; every failure waits a backoff step with jitter (a standby answers LISTEN with
//! "cannot execute LISTEN during recovery" at once, and retrying without a pause was a
//! tight loop) and is logged once per step with a count.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Shared, jittered};
use crate::db::events::{CHANNEL_CANCEL, CHANNEL_ENQUEUED, install_channels};

const MIN_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// A connection up this long resets the backoff when it is lost.
const STABLE: Duration = Duration::from_secs(30);

/// Listens until `stop`, reconnecting with backoff.
pub(super) async fn listen(
    pool: PgPool,
    queues: Vec<String>,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut delay = MIN_DELAY;
    let mut failures: u64 = 0;
    loop {
        let session = tokio::select! {
            s = subscribe(&pool) => s,
            _ = stop.cancelled() => return,
        };
        match session {
            Ok((mut listener, enqueued)) => {
                if failures > 0 {
                    tracing::info!(failures, "LISTEN connection back");
                }
                wake.notify_one();
                let since = std::time::Instant::now();
                let lost = receive(&mut listener, &enqueued, &queues, &shared, &wake, &stop).await;
                let Some(e) = lost else { return };
                // A connection that stayed up a while is a fresh start for the backoff.
                if since.elapsed() > STABLE {
                    failures = 0;
                    delay = MIN_DELAY;
                }
                failures += 1;
                tracing::warn!(error = %e, failures, retry_in_ms = delay.as_millis() as u64, "LISTEN connection lost; polling until it is back");
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, retry_in_ms = delay.as_millis() as u64, "LISTEN failed; polling until it works");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(delay)) => {}
            _ = stop.cancelled() => return,
        }
        delay = (delay * 2).min(MAX_DELAY);
    }
}

/// A listener on the install's enqueue and cancel channels, and the enqueue channel's name.
async fn subscribe(pool: &PgPool) -> crate::db::Result<(PgListener, String)> {
    let names = install_channels(pool, &[CHANNEL_ENQUEUED, CHANNEL_CANCEL]).await?;
    let mut listener = PgListener::connect_with(pool)
        .await
        .map_err(crate::db::Error::from)?;
    listener
        .listen_all(names.iter().map(String::as_str))
        .await
        .map_err(crate::db::Error::from)?;
    Ok((listener, names[0].clone()))
}

/// Delivers notifications until the connection fails (Some(error)) or `stop` (None).
async fn receive(
    listener: &mut PgListener,
    enqueued: &str,
    queues: &[String],
    shared: &Shared,
    wake: &Notify,
    stop: &CancellationToken,
) -> Option<crate::db::Error> {
    loop {
        let received = tokio::select! {
            // try_recv reports a lost connection (None) instead of silently
            // reconnecting, so every gap goes through the backoff above.
            r = listener.try_recv() => r,
            _ = stop.cancelled() => return None,
        };
        match received {
            Ok(Some(n)) if n.channel() == enqueued => {
                if queues.iter().any(|q| q == n.payload()) {
                    wake.notify_one();
                }
            }
            Ok(Some(n)) => {
                if let Ok(id) = n.payload().parse::<Uuid>()
                    && shared.leases.cancel(&id)
                {
                    tracing::info!(job_id = %id, "cancel requested; stopping job");
                }
            }
            Ok(None) => {
                return Some(crate::db::Error::Unavailable(
                    "connection closed".to_owned(),
                ));
            }
            Err(e) => return Some(crate::db::Error::from(e)),
        }
    }
}
