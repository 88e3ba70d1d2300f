//! The claim loop: starts claimed jobs as slots free up, claims more when a round is
//! worth it, and hands back what was claimed but never started at shutdown.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::claim::{Claim, ClaimPlan, Holding, claim_size};
use super::defaults::QueueDefaultsCache;
use super::leases::Start;
use super::slots::Slot;
use super::{Shared, Worker, completer, executor, jittered};
use crate::db::queues::QueueDefaults;
use crate::model::ClaimedJob;

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn claim_loop(
        &self,
        shutdown: &CancellationToken,
        shared: &Arc<Shared>,
        wake: &Notify,
        hard_stop: &CancellationToken,
        tx: &mpsc::UnboundedSender<completer::Done>,
        executors: &mut JoinSet<()>,
    ) {
        let o = &self.options;
        // Outcomes waiting for the completer beyond this stop further claims.
        let max_owned = o.concurrency + o.prefetch + completer::MAX_BATCH;
        let mut buffer: VecDeque<ClaimedJob> = VecDeque::new();
        // Claimed attempts of jobs whose older attempt is still executing here.
        let mut waiting: Vec<ClaimedJob> = Vec::new();
        let mut claiming: Option<Claim> = None;
        let mut backlog = true;
        let mut want_claim = true;
        let mut next_poll = Instant::now();
        let mut retry_at = Instant::now();
        let mut error_delay = Duration::from_millis(100);
        let mut defaults = QueueDefaultsCache::default();
        loop {
            while let Some(joined) = executors.try_join_next() {
                if let Err(e) = joined {
                    tracing::error!(error = %e, "job executor panicked");
                }
            }
            for job in waiting.drain(..).rev() {
                buffer.push_front(job);
            }
            // Without a confirmed lock the rescuer may be handing these jobs back.
            let confirmed = shared.lock.confirmed();
            while confirmed
                && shared.slots.busy() < o.concurrency
                && let Some(job) = buffer.pop_front()
            {
                match shared.leases.start(&job) {
                    Start::Now(cancel) => self
                        .spawn_execution(job, cancel, shared, hard_stop, tx, executors, &defaults),
                    Start::Wait => waiting.push(job),
                    Start::Stale => tracing::debug!(job_id = %job.id, attempt = job.attempt,
                        "claimed attempt superseded before it started; dropped"),
                }
            }
            shared.gauges.prefetched.set(buffer.len() as f64);
            if claiming.is_none() && want_claim && confirmed && Instant::now() >= retry_at {
                let size = claim_size(Holding {
                    executing: shared.slots.busy(),
                    buffered: buffer.len() + waiting.len(),
                    concurrency: o.concurrency,
                    prefetch: o.prefetch,
                    jobs_fast: shared.timing.jobs_are_fast(),
                });
                // Outcomes pending beyond `max_owned` stop further claims.
                if let Some(size) = size
                    && shared.leases.len() < max_owned
                {
                    defaults.refresh(&self.pool, &o.queues).await;
                    claiming = Some(Claim::spawn(ClaimPlan {
                        pool: self.pool.clone(),
                        queues: o.queues.clone(),
                        limited: defaults.limited(),
                        size,
                        worker: o.id,
                        lease: o.lease,
                    }));
                }
                want_claim = false;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                joined = async { (&mut claiming.as_mut().expect("guarded by the if").task).await }, if claiming.is_some() => {
                    let claim = claiming.take().expect("guarded by the if");
                    // Whatever the claim statements committed is ours now, even if a
                    // later statement failed or the task panicked: run it.
                    let jobs = claim.take_jobs();
                    for job in &jobs {
                        shared.leases.adopt(job);
                    }
                    if !jobs.is_empty() {
                        crate::metrics::worker_claimed(&jobs);
                    }
                    buffer.extend(jobs);
                    let failed = match joined {
                        Ok(report) => {
                            backlog = report.full;
                            report.error.map(|e| e.to_string())
                        }
                        Err(e) => Some(format!("claim task panicked: {e}")),
                    };
                    match failed {
                        None => {
                            error_delay = Duration::from_millis(100);
                            // A wake-up that arrived while this claim was in flight may
                            // be for a job the claim did not see yet: keep it.
                            want_claim = want_claim || backlog;
                            next_poll = Instant::now() + jittered(o.poll_interval);
                        }
                        Some(error) => {
                            tracing::warn!(error = %error, "claiming jobs failed; backing off");
                            retry_at = Instant::now() + error_delay;
                            error_delay = (error_delay * 2).min(Duration::from_secs(5));
                            want_claim = true;
                        }
                    }
                }
                _ = wake.notified() => want_claim = true,
                _ = shared.slots.freed.notified() => want_claim = want_claim || backlog,
                _ = tokio::time::sleep_until(next_poll.max(retry_at).into()) => {
                    next_poll = Instant::now() + jittered(o.poll_interval);
                    want_claim = true;
                }
            }
        }
        // Jobs claimed but never started go back at once, their attempt given back.
        if let Some(mut claim) = claiming {
            // Its outcome does not matter any more; the jobs it claimed do.
            let _ = (&mut claim.task).await;
            let jobs = claim.take_jobs();
            for job in &jobs {
                shared.leases.adopt(job);
            }
            buffer.extend(jobs);
        }
        buffer.extend(waiting);
        // A superseded attempt has nothing to hand back: its newer attempt is here too.
        for job in buffer
            .into_iter()
            .filter(|j| shared.leases.holds(j.id, j.attempt))
        {
            let finish = executor::to_finish(
                &job,
                crate::model::Outcome::Interrupted,
                o.backoff,
                o.snooze_min,
            );
            let _ = tx.send(completer::Done {
                finish,
                queue: job.queue,
                kind: job.kind,
                ran: Duration::ZERO,
                trace: None,
            });
        }
        shared.gauges.prefetched.set(0.0);
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_execution(
        &self,
        job: ClaimedJob,
        cancel: CancellationToken,
        shared: &Arc<Shared>,
        hard_stop: &CancellationToken,
        tx: &mpsc::UnboundedSender<completer::Done>,
        executors: &mut JoinSet<()>,
        defaults: &QueueDefaultsCache,
    ) {
        let o = &self.options;
        let handler = self.handlers.get(&job.kind).cloned();
        let queue = defaults.get(&job.queue);
        let timeout = job
            .timeout
            .or_else(|| {
                queue
                    .and_then(|q| q.timeout_ms)
                    .map(|ms| Duration::from_millis(ms as u64))
            })
            .or_else(|| handler.as_ref().and_then(|h| h.timeout()));
        let backoff = QueueDefaults::backoff(queue, o.backoff);
        let slot = Slot::take(shared, job.id, job.attempt);
        let epoch = shared.leases.epoch(job.id);
        let exec = executor::Execution {
            job,
            handler,
            worker_id: o.id,
            timeout,
            backoff,
            output_limit: o.output_limit,
            snooze_min: o.snooze_min,
            cancel,
            hard_stop: hard_stop.clone(),
            span_context: Default::default(),
            progress: self.progress.clone(),
        };
        let tx = tx.clone();
        let shared = shared.clone();
        executors.spawn(async move {
            let started = Instant::now();
            // The executor catches handler panics itself; this catches any other, so
            // the attempt still gets an outcome and its slot is freed (by `slot`).
            let finish = match AssertUnwindSafe(executor::execute(&exec))
                .catch_unwind()
                .await
            {
                Ok(finish) => finish,
                Err(panic) => {
                    let error = format!(
                        "job executor panicked: {}",
                        executor::panic_message(panic.as_ref())
                    );
                    tracing::error!(job_id = %exec.job.id, error = %error, "job executor panicked");
                    executor::to_finish(
                        &exec.job,
                        crate::model::Outcome::Retry { error, log: None },
                        exec.backoff,
                        exec.snooze_min,
                    )
                }
            };
            let ran = started.elapsed();
            shared.timing.record(ran);
            if !shared.leases.settle(exec.job.id, epoch) {
                tracing::warn!(job_id = %exec.job.id, attempt = exec.job.attempt,
                    "outcome of an attempt whose lease was lost or claimed again dropped");
                drop(slot);
                return;
            }
            // The completer only stops after every executor has been joined.
            let _ = tx.send(completer::Done {
                finish,
                queue: exec.job.queue,
                kind: exec.job.kind,
                ran,
                trace: exec.span_context.into_inner(),
            });
            drop(slot);
        });
    }
}
