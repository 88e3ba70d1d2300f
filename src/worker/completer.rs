//! Batched completion: outcomes from executors are written with one finish statement
//! per batch. While one batch is being written the next accumulates, so batches grow
//! exactly when the database is the bottleneck.
//!
//! Every outcome is sanitized first (no NUL, numbers within `numeric`, sizes within the
//! output limit), and finish_many isolates any outcome Postgres still refuses, so no
//! job's output can wedge the others. A failed write (connection, timeout) is retried
//! with backoff, never dropped: the jobs stay leased (the heartbeat keeps extending
//! them) until their outcome is stored. Each outcome carries its attempt: a retry that
//! reaches a newer attempt of the job is refused by the fence, never applied to it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Shared;
use crate::db::due_work::{self, Applied, Finish, FinishKind};

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
    /// Bytes of output and log kept per attempt (everything is sanitized to fit).
    pub output_limit: usize,
    /// Snoozes per job that give their attempt back.
    pub max_snoozes: u32,
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
                let (mut finishes, labels): (Vec<Finish>, Vec<_>) = batch
                    .into_iter()
                    .map(|d| (d.finish, (d.queue, d.kind, d.ran)))
                    .unzip();
                // Whatever a handler produced, store what Postgres can hold: one NUL
                // byte would otherwise fail the whole batch.
                for f in &mut finishes {
                    f.sanitize(this.output_limit);
                }
                match this.write(&finishes).await {
                    Some(applied) => {
                        this.report_refused(&finishes, &applied).await;
                        record(&finishes, &labels, &applied);
                    }
                    None => tracing::error!(
                        jobs = finishes.len(),
                        "gave up recording job outcomes; their leases will expire and be rescued"
                    ),
                }
                let attempts: Vec<(Uuid, i32)> =
                    finishes.iter().map(|f| (f.id, f.attempt)).collect();
                this.shared.leases.forget(&attempts);
            });
        }
        while writing.join_next().await.is_some() {}
    }

    /// Writes one batch, retrying with backoff; what was applied, or None if abandoned.
    /// Data errors never come back here: finish_many isolates the offending outcome.
    async fn write(&self, batch: &[Finish]) -> Option<Vec<Applied>> {
        let mut delay = Duration::from_millis(50);
        loop {
            match due_work::finish_many(&self.pool, self.worker_id, self.max_snoozes, batch).await {
                Ok(applied) => return Some(applied),
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

    /// Logs each outcome the fence refused, with its attempt and the job's current one.
    async fn report_refused(&self, batch: &[Finish], applied: &[Applied]) {
        if applied.len() >= batch.len() {
            return;
        }
        let stored: HashSet<(Uuid, i32)> = applied.iter().map(|a| (a.id, a.attempt)).collect();
        let refused: Vec<&Finish> = batch
            .iter()
            .filter(|f| !stored.contains(&(f.id, f.attempt)))
            .collect();
        let ids: Vec<Uuid> = refused.iter().map(|f| f.id).collect();
        let current: HashMap<Uuid, due_work::LiveAttempt> =
            match due_work::live_attempts(&self.pool, &ids).await {
                Ok(rows) => rows.into_iter().map(|r| (r.id, r)).collect(),
                Err(_) => HashMap::new(),
            };
        for f in refused {
            let now = current.get(&f.id);
            tracing::warn!(
                job_id = %f.id,
                attempt = f.attempt,
                current_attempt = now.map(|c| c.attempt),
                current_owner = now.and_then(|c| c.lease_owner).map(tracing::field::display),
                outcome = f.outcome.as_str(),
                "outcome refused: this attempt no longer holds the lease (rescued, cancelled or claimed again)"
            );
        }
    }
}

/// Counts the outcomes that were stored, as stored; a lost lease's outcome did not happen.
fn record(finishes: &[Finish], labels: &[(String, String, Duration)], applied: &[Applied]) {
    let stored: HashMap<(Uuid, i32), FinishKind> = applied
        .iter()
        .map(|a| ((a.id, a.attempt), a.outcome))
        .collect();
    crate::metrics::worker_finished(finishes.iter().zip(labels).filter_map(
        |(f, (queue, kind, ran))| {
            stored
                .get(&(f.id, f.attempt))
                .map(|outcome| crate::metrics::Finished {
                    queue,
                    kind,
                    outcome: outcome.as_str(),
                    ran: *ran,
                })
        },
    ));
}
