//! Follows the process listener's work notices (`db::listen`): an enqueue on one of our
//! queues wakes the claimer, a cancel stops the job if this worker runs it. The
//! connection, its reconnects and their backoff belong to the listener.
//!
//! Notices missed while the connection is down are covered by the poll; the listener's
//! resync after any gap, and a lag of this subscriber, wake the claimer at once. A
//! missed cancel is found by the next heartbeat, which reads `cancel_requested`.

use std::sync::Arc;

use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::db::listen::Work;

/// Acts on `notices` until `stop` (or until the listener is gone).
pub(super) async fn follow(
    mut notices: broadcast::Receiver<Work>,
    queues: Vec<String>,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        let notice = tokio::select! {
            n = notices.recv() => n,
            _ = stop.cancelled() => return,
        };
        match notice {
            Ok(Work::Enqueued(queue)) => {
                if queues.contains(&queue) {
                    wake.notify_one();
                }
            }
            Ok(Work::Cancel(id)) => {
                if shared.leases.cancel(&id) {
                    tracing::info!(job_id = %id, "cancel requested; stopping job");
                }
            }
            Ok(Work::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => wake.notify_one(),
            // Every sender is gone: nothing more will come; the poll carries on.
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
