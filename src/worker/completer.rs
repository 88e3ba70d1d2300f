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
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Shared;
use crate::db::due_work::{self, Finish};

/// Most outcomes written by one statement.
pub(crate) const MAX_BATCH: usize = 2000;

pub(crate) struct Completer {
    pub pool: PgPool,
    pub worker_id: Uuid,
    pub shared: Arc<Shared>,
    /// Fired when the worker gives up on unwritten outcomes (database gone at exit).
    pub abandon: CancellationToken,
}

impl Completer {
    /// Writes batches until the channel is closed and drained.
    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<Finish>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            if !self.write(&batch).await {
                tracing::error!(
                    jobs = batch.len(),
                    "gave up recording job outcomes; their leases will expire and be rescued"
                );
            }
            let ids: Vec<Uuid> = batch.drain(..).map(|f| f.id).collect();
            self.shared.forget(&ids);
        }
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
