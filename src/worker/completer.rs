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

/// An attempt's outcome with what its metrics are labelled by.
pub(crate) struct Done {
    pub finish: Finish,
    pub queue: String,
    pub kind: String,
    /// Time the handler ran.
    pub ran: Duration,
}

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
    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<Done>) {
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
                let (finishes, labels): (Vec<Finish>, Vec<_>) = batch
                    .into_iter()
                    .map(|d| (d.finish, (d.queue, d.kind, d.ran)))
                    .unzip();
                match this.write(&finishes).await {
                    Some(applied) => record(&finishes, &labels, &applied),
                    None => tracing::error!(
                        jobs = finishes.len(),
                        "gave up recording job outcomes; their leases will expire and be rescued"
                    ),
                }
                let ids: Vec<Uuid> = finishes.iter().map(|f| f.id).collect();
                this.shared.forget(&ids);
            });
        }
        while writing.join_next().await.is_some() {}
    }

    /// Writes one batch, retrying with backoff; the ids applied, or None if abandoned.
    async fn write(&self, batch: &[Finish]) -> Option<Vec<Uuid>> {
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
                    return Some(applied);
                }
                Err(e) => {
                    tracing::warn!(error = %e, jobs = batch.len(), "recording job outcomes failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.abandon.cancelled() => return None,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Counts the outcomes that were stored; a lost lease's outcome did not happen.
fn record(finishes: &[Finish], labels: &[(String, String, Duration)], applied: &[Uuid]) {
    let stored: Option<std::collections::HashSet<&Uuid>> =
        (applied.len() < finishes.len()).then(|| applied.iter().collect());
    crate::metrics::worker_finished(
        finishes
            .iter()
            .zip(labels)
            .filter(|(f, _)| stored.as_ref().is_none_or(|s| s.contains(&f.id)))
            .map(|(f, (queue, kind, ran))| crate::metrics::Finished {
                queue,
                kind,
                outcome: f.outcome.as_str(),
                ran: *ran,
            }),
    );
}
