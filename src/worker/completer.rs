//! Batched completion: outcomes from executors are written with one finish statement
//! per batch. While one batch is being written the next accumulates, so batches grow
//! exactly when the database is the bottleneck.
//!
//! A failed write is retried with backoff, never dropped: the jobs stay leased (the
//! heartbeat keeps extending them) until their outcome is stored.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Shared;
use crate::db::due_work::{self, Finish};

/// Most outcomes written by one statement.
pub(crate) const MAX_BATCH: usize = 2000;
/// Batches written at once: while one waits on the database the next is being
/// collected and sent, keeping both of a small server's cores busy.
const IN_FLIGHT: usize = 2;

pub(crate) struct Completer {
    pub pool: PgPool,
    pub worker_id: Uuid,
    pub shared: Arc<Shared>,
    /// Fired when the worker gives up on unwritten outcomes (database gone at exit).
    pub abandon: CancellationToken,
}

impl Completer {
    /// Writes batches until the channel is closed and drained, with up to
    /// [`IN_FLIGHT`] batches being written at once.
    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<Finish>) {
        let this = Arc::new(self);
        let mut writing = JoinSet::new();
        loop {
            if writing.len() >= IN_FLIGHT {
                let _ = writing.join_next().await;
                continue;
            }
            let first = tokio::select! {
                f = rx.recv() => f,
                Some(_) = writing.join_next(), if !writing.is_empty() => continue,
            };
            let Some(first) = first else { break };
            let mut batch = Vec::with_capacity(MAX_BATCH);
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            let this = this.clone();
            writing.spawn(async move {
                if !this.write(&batch).await {
                    tracing::error!(
                        jobs = batch.len(),
                        "gave up recording job outcomes; their leases will expire and be rescued"
                    );
                }
                let ids: Vec<Uuid> = batch.iter().map(|f| f.id).collect();
                this.shared.forget(&ids);
            });
        }
        while writing.join_next().await.is_some() {}
    }

    /// Writes one batch, retrying with backoff; false if abandoned.
    async fn write(&self, batch: &[Finish]) -> bool {
        let mut delay = Duration::from_millis(50);
        loop {
            match due_work::finish_many(&self.pool, self.worker_id, batch).await {
                Ok(applied) => {
                    if applied.len() < batch.len() {
                        let lost = batch.len() - applied.len();
                        tracing::warn!(
                            lost,
                            "outcomes not recorded: lease lost (job rescued or cancelled meanwhile)"
                        );
                    }
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, jobs = batch.len(), "recording job outcomes failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.abandon.cancelled() => return false,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
