//! The worker: claims due jobs in batches, runs them, records outcomes in batches.
//!
//! Hot path only. One claimer loop per process fetches up to its free slots in one
//! statement; executors run the handlers; the completer writes outcomes in batches; a
//! heartbeat task holds the worker's advisory lock and extends all leases in one
//! statement; a listener task turns NOTIFY into wake-ups and cancels.

mod completer;
mod executor;
pub mod handlers;
mod heartbeat;
mod listen;

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rand::RngExt;
use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::db::{self, DbConfig, due_work, queues::QueueDefaults};
use crate::model::{Backoff, ClaimedJob};
pub use handlers::{Handler, Handlers, JobContext};

pub use crate::db::events::{CHANNEL_CANCEL, CHANNEL_ENQUEUED};

/// Whether this process's worker holds its lock on a live primary session: the worker
/// endpoint's `/ready`.
static READY: AtomicBool = AtomicBool::new(false);

/// True while this process's worker can claim (its advisory lock is confirmed).
pub fn is_ready() -> bool {
    READY.load(Ordering::Acquire)
}

/// How often queue defaults (timeouts, backoff) are re-read.
const QUEUE_DEFAULTS_TTL: Duration = Duration::from_secs(2);
/// Jobs faster than this on average are prefetched beyond the free slots.
const FAST_JOB_MICROS: u64 = 5_000;
/// How long unwritten outcomes are retried after shutdown before giving up.
const COMPLETER_DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Worker runtime options (from [`Config`], overridable per process).
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// This process's worker id.
    pub id: Uuid,
    /// Queues served.
    pub queues: Vec<String>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Lease length.
    pub lease: Duration,
    /// Fallback poll interval.
    pub poll_interval: Duration,
    /// Time running jobs get after SIGTERM.
    pub shutdown_grace: Duration,
    /// Default backoff (queues may override).
    pub backoff: Backoff,
    /// Bytes of output kept per attempt.
    pub output_limit: usize,
    /// Jobs claimed beyond the free slots while jobs are fast (under 5 ms on average).
    pub prefetch: usize,
    /// Shortest snooze: shorter requested delays (`Retry-After: 0`) are raised to it.
    pub snooze_min: Duration,
    /// Snoozes per job that give their attempt back; later ones count as attempts.
    pub max_snoozes: u32,
}

impl WorkerOptions {
    /// Options from the configuration with a fresh worker id.
    pub fn from_config(config: &Config) -> WorkerOptions {
        let w = &config.worker;
        WorkerOptions {
            id: Uuid::now_v7(),
            queues: w.queues.clone(),
            concurrency: w.concurrency,
            lease: config.lease(),
            poll_interval: Duration::from_secs_f64(w.poll_interval),
            shutdown_grace: Duration::from_secs_f64(w.shutdown_grace),
            backoff: Backoff {
                base: Duration::from_secs_f64(w.backoff_base),
                max: Duration::from_secs_f64(w.backoff_max_delay),
            },
            output_limit: w.output_limit_bytes,
            prefetch: w.prefetch,
            snooze_min: Duration::from_secs_f64(w.snooze_min),
            max_snoozes: w.max_snoozes,
        }
    }

    fn heartbeat_interval(&self) -> Duration {
        (self.lease / 3).min(Duration::from_secs(5))
    }
}

/// Errors that stop a worker from starting.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Registering with the database failed.
    #[error("cannot register worker: {0}")]
    Register(#[from] db::Error),
}

/// One job this worker holds a lease on: the attempt the lease is for (the fence every
/// outcome and extension carries) and the token that cancels that attempt's execution.
struct Lease {
    attempt: i32,
    token: CancellationToken,
    /// The attempt whose handler is running now, if any. After a re-claim this is the
    /// older attempt until its execution ends: the new one waits for it.
    running: Option<i32>,
    /// Which claim this lease came from, unique in the process: after a crash that
    /// lost a claim's commit, the same job can be claimed again here under the same
    /// attempt number, and only this tells the two executions apart.
    epoch: u64,
    /// The heartbeat found the lease gone: this execution's outcome is not to be
    /// written (it would be refused, or, after a lost commit, land on a new claim).
    lost: bool,
}

/// Whether a claimed attempt may start now.
pub(crate) enum Start {
    /// Run it with this cancel token.
    Now(CancellationToken),
    /// An older attempt of the job is still executing here: start it later.
    Wait,
    /// Its lease is no longer ours at this attempt (claimed again since): drop it.
    Stale,
}

/// State shared between the claimer, executors, completer and heartbeat.
pub(crate) struct Shared {
    /// Jobs this worker holds a lease on (running or awaiting their outcome write), by
    /// job id, each with its current attempt.
    owned: Mutex<HashMap<Uuid, Lease>>,
    /// Handlers running now.
    executing: AtomicUsize,
    /// Signalled when an executor finishes.
    slot_freed: Notify,
    /// Moving average of recent execution times, in microseconds.
    avg_exec_micros: AtomicU64,
    /// Source of [`Lease::epoch`].
    next_epoch: AtomicU64,
    /// Slot gauges exported on /metrics.
    gauges: crate::metrics::WorkerGauges,
    /// Set by the heartbeat while the worker's advisory lock is confirmed on a live
    /// session; nothing is claimed or started without it (see heartbeat.rs).
    lock_confirmed: AtomicBool,
}

impl Shared {
    fn new(concurrency: usize) -> Shared {
        Shared {
            owned: Mutex::default(),
            executing: AtomicUsize::new(0),
            slot_freed: Notify::new(),
            avg_exec_micros: AtomicU64::new(0),
            next_epoch: AtomicU64::new(0),
            gauges: crate::metrics::WorkerGauges::new(concurrency),
            lock_confirmed: AtomicBool::new(false),
        }
    }

    fn owned(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Lease>> {
        // A poisoned lock only means another task panicked mid-insert; the map is
        // still a valid map.
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_duration(&self, took: Duration) {
        // Racy read-modify-write is fine: it only steers how much to prefetch.
        let sample = took.as_micros().min(u128::from(u32::MAX)) as u64;
        let avg = self.avg_exec_micros.load(Ordering::Relaxed);
        self.avg_exec_micros.store(
            if avg == 0 {
                sample
            } else {
                (avg * 15 + sample) / 16
            },
            Ordering::Relaxed,
        );
    }

    fn jobs_are_fast(&self) -> bool {
        let avg = self.avg_exec_micros.load(Ordering::Relaxed);
        avg > 0 && avg < FAST_JOB_MICROS
    }

    /// Whether the claimer may claim more now: few enough outcomes are pending.
    fn may_claim(&self, max_owned: usize) -> bool {
        self.owned().len() < max_owned
    }

    /// Takes a freshly claimed attempt into `owned`. A job id still held for an older
    /// attempt (rescued, then claimed again by us) supersedes it: the old execution is
    /// cancelled (its outcome will be refused) and the new attempt starts once it ends.
    fn adopt(&self, job: &ClaimedJob) {
        let mut owned = self.owned();
        let running = match owned.get(&job.id) {
            Some(old) => {
                tracing::warn!(job_id = %job.id, attempt = job.attempt, stale_attempt = old.attempt,
                    "job claimed again while an older attempt is held here; stopping the older one");
                old.token.cancel();
                old.running
            }
            None => None,
        };
        owned.insert(
            job.id,
            Lease {
                attempt: job.attempt,
                token: CancellationToken::new(),
                running,
                epoch: self.next_epoch.fetch_add(1, Ordering::Relaxed),
                lost: false,
            },
        );
    }

    /// The claim `id`'s current lease came from.
    fn epoch(&self, id: Uuid) -> Option<u64> {
        self.owned().get(&id).map(|l| l.epoch)
    }

    /// Whether the outcome of the execution started under `epoch` is to be written: not
    /// when its lease was lost (the lease is dropped here) or superseded by a new claim.
    fn settle(&self, id: Uuid, epoch: Option<u64>) -> bool {
        let mut owned = self.owned();
        match owned.get(&id) {
            Some(l) if Some(l.epoch) == epoch && l.lost => {
                owned.remove(&id);
                false
            }
            Some(l) => Some(l.epoch) == epoch,
            // Nothing held: the outcome goes to the database, whose fence decides.
            None => true,
        }
    }

    /// Marks `job`'s attempt as executing, if it may start.
    fn start(&self, job: &ClaimedJob) -> Start {
        match self.owned().get_mut(&job.id) {
            Some(lease) if lease.attempt == job.attempt => {
                if lease.running.is_some() {
                    Start::Wait
                } else {
                    lease.running = Some(job.attempt);
                    Start::Now(lease.token.clone())
                }
            }
            _ => Start::Stale,
        }
    }

    /// Records whether the worker's lock is confirmed (claiming allowed, `/ready`).
    pub(crate) fn set_lock_confirmed(&self, confirmed: bool) {
        self.lock_confirmed.store(confirmed, Ordering::Release);
        READY.store(confirmed, Ordering::Release);
    }

    /// Whether `id`'s lease is held at `attempt`.
    fn holds(&self, id: Uuid, attempt: i32) -> bool {
        self.owned().get(&id).is_some_and(|l| l.attempt == attempt)
    }

    /// The execution of `id`'s `attempt` has ended (its outcome is on its way).
    fn stopped(&self, id: Uuid, attempt: i32) {
        if let Some(lease) = self.owned().get_mut(&id)
            && lease.running == Some(attempt)
        {
            lease.running = None;
        }
    }

    /// Drops the leases of these (job id, attempt) pairs, once their outcomes are
    /// written; a newer attempt of the same job is kept.
    pub(crate) fn forget(&self, attempts: &[(Uuid, i32)]) {
        let mut owned = self.owned();
        for (id, attempt) in attempts {
            if owned.get(id).is_some_and(|l| l.attempt == *attempt) {
                owned.remove(id);
            }
        }
    }

    /// Every held lease as (job id, attempt), for the heartbeat's extension.
    pub(crate) fn owned_attempts(&self) -> Vec<(Uuid, i32)> {
        self.owned()
            .iter()
            .map(|(id, l)| (*id, l.attempt))
            .collect()
    }

    /// Stops the current attempt of `id`, if held (operator cancel).
    pub(crate) fn cancel(&self, id: &Uuid) -> bool {
        match self.owned().get(id) {
            Some(lease) => {
                lease.token.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops `id` only if its held attempt is still `attempt` (lease lost at that
    /// attempt): a newer attempt claimed meanwhile is left running.
    pub(crate) fn cancel_attempt(&self, id: &Uuid, attempt: i32) -> bool {
        match self.owned().get_mut(id) {
            Some(lease) if lease.attempt == attempt => {
                lease.lost = true;
                lease.token.cancel();
                true
            }
            _ => false,
        }
    }
}

/// A worker process's engine. Build with [`Worker::new`], then [`Worker::run`].
pub struct Worker {
    options: WorkerOptions,
    db: DbConfig,
    pool: PgPool,
    handlers: Arc<Handlers>,
}

impl Worker {
    /// A worker over `pool` (connections from `db` for its lock and LISTEN sessions).
    pub fn new(options: WorkerOptions, db: DbConfig, pool: PgPool, handlers: Handlers) -> Worker {
        Worker {
            options,
            db,
            pool,
            handlers: Arc::new(handlers),
        }
    }

    /// Runs until `shutdown` fires, then stops claiming, lets running jobs finish
    /// within the grace period, hands the rest back, and deregisters.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let o = &self.options;
        let registration = db::workers::Registration {
            id: o.id,
            hostname: hostname(),
            pid: std::process::id() as i32,
            queues: o.queues.clone(),
            concurrency: o.concurrency as i32,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let mut lock_conn = self.db.connect_one().await?;
        db::workers::register(&mut lock_conn, &registration).await?;
        tracing::info!(worker_id = %o.id, queues = ?o.queues, concurrency = o.concurrency, "worker started");

        let shared = Arc::new(Shared::new(o.concurrency));
        shared.set_lock_confirmed(true);
        let wake = Arc::new(Notify::new());
        let stop_background = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        let abandon = CancellationToken::new();

        let mut background = JoinSet::new();
        background.spawn(listen::listen(
            self.pool.clone(),
            o.queues.clone(),
            shared.clone(),
            wake.clone(),
            stop_background.clone(),
        ));
        let heartbeat = tokio::spawn(
            heartbeat::Heartbeat {
                db: self.db.clone(),
                registration,
                shared: shared.clone(),
                lease: o.lease,
                interval: o.heartbeat_interval(),
            }
            .run(lock_conn, stop_background.clone()),
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let completer = tokio::spawn(
            completer::Completer {
                pool: self.pool.clone(),
                worker_id: o.id,
                shared: shared.clone(),
                abandon: abandon.clone(),
                output_limit: o.output_limit,
                max_snoozes: o.max_snoozes,
            }
            .run(rx),
        );

        let mut executors = JoinSet::new();
        self.claim_loop(&shutdown, &shared, &wake, &hard_stop, &tx, &mut executors)
            .await;

        let running = executors.len();
        tracing::info!(
            running,
            grace_seconds = o.shutdown_grace.as_secs_f64(),
            "worker stopping; waiting for running jobs"
        );
        let grace = tokio::time::sleep(o.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                joined = executors.join_next() => if joined.is_none() { break },
                _ = &mut grace => {
                    tracing::info!(running = executors.len(), "grace period over; handing back unfinished jobs");
                    hard_stop.cancel();
                    break;
                }
            }
        }
        while executors.join_next().await.is_some() {}
        drop(tx);
        // With no primary there is nothing to drain into: leave the outcomes to the
        // rescuer's rules instead of holding the shutdown for the drain limit.
        let drain_limit = if shared.lock_confirmed.load(Ordering::Acquire) {
            COMPLETER_DRAIN_LIMIT
        } else {
            Duration::ZERO
        };
        let mut completer = completer;
        tokio::select! {
            _ = &mut completer => {}
            _ = tokio::time::sleep(drain_limit) => {
                abandon.cancel();
                let _ = completer.await;
            }
        }
        stop_background.cancel();
        while background.join_next().await.is_some() {}
        if let Ok(Some(mut conn)) = heartbeat.await {
            // Bounded: with no primary the rescuer removes the row later instead.
            let limit = heartbeat::Heartbeat::timeout(o.lease);
            match tokio::time::timeout(limit, db::workers::deregister(&mut conn, o.id)).await {
                Ok(Ok(())) => {
                    let _ = tokio::time::timeout(limit, sqlx::Connection::close(conn)).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not remove worker row; the rescuer will")
                }
                Err(_) => tracing::warn!("could not remove worker row in time; the rescuer will"),
            }
        }
        READY.store(false, Ordering::Release);
        tracing::info!(worker_id = %o.id, "worker stopped");
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn claim_loop(
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
            let confirmed = shared.lock_confirmed.load(Ordering::Acquire);
            while confirmed
                && shared.executing.load(Ordering::Acquire) < o.concurrency
                && let Some(job) = buffer.pop_front()
            {
                match shared.start(&job) {
                    Start::Now(cancel) => self
                        .spawn_execution(job, cancel, shared, hard_stop, tx, executors, &defaults),
                    Start::Wait => waiting.push(job),
                    Start::Stale => tracing::debug!(job_id = %job.id, attempt = job.attempt,
                        "claimed attempt superseded before it started; dropped"),
                }
            }
            shared.gauges.prefetched.set(buffer.len() as f64);
            if claiming.is_none() && want_claim && confirmed && Instant::now() >= retry_at {
                // Prefetch beyond the free slots only while jobs are fast: a buffered
                // slow job would wait here while other workers sit idle.
                let prefetch = if shared.jobs_are_fast() {
                    o.prefetch
                } else {
                    0
                };
                let held = shared.executing.load(Ordering::Acquire) + buffer.len() + waiting.len();
                let capacity = o.concurrency + prefetch;
                let room = capacity.saturating_sub(held);
                // Refill once a quarter of the capacity is free while there is a backlog,
                // so a busy worker claims in batches instead of one job per finished job.
                let worth_it = room >= (capacity / 4).max(1) || (held == 0 && room > 0);
                if worth_it && shared.may_claim(max_owned) {
                    defaults.refresh(&self.pool, &o.queues).await;
                    claiming = Some(Claim::spawn(ClaimPlan {
                        pool: self.pool.clone(),
                        queues: o.queues.clone(),
                        limited: defaults.limited(),
                        room,
                        // Limited queues never prefetch: a buffered job would hold one
                        // of the queue's cluster-wide slots without running.
                        free: o.concurrency.saturating_sub(held),
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
                        shared.adopt(job);
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
                _ = shared.slot_freed.notified() => want_claim = want_claim || backlog,
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
                shared.adopt(job);
            }
            buffer.extend(jobs);
        }
        buffer.extend(waiting);
        // A superseded attempt has nothing to hand back: its newer attempt is here too.
        for job in buffer.into_iter().filter(|j| shared.holds(j.id, j.attempt)) {
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
        let busy = shared.executing.fetch_add(1, Ordering::AcqRel) + 1;
        shared.gauges.busy.set(busy as f64);
        let slot = Slot {
            shared: shared.clone(),
            id: job.id,
            attempt: job.attempt,
        };
        let epoch = shared.epoch(job.id);
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
            shared.record_duration(ran);
            if !shared.settle(exec.job.id, epoch) {
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

/// One executor slot, freed when dropped (also when its task unwinds): the attempt is
/// marked stopped, the busy count drops and the claimer is woken.
struct Slot {
    shared: Arc<Shared>,
    id: Uuid,
    attempt: i32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.stopped(self.id, self.attempt);
        let busy = self.shared.executing.fetch_sub(1, Ordering::AcqRel) - 1;
        self.shared.gauges.busy.set(busy as f64);
        self.shared.slot_freed.notify_one();
    }
}

/// What one claim round asks for.
struct ClaimPlan {
    pool: PgPool,
    queues: Vec<String>,
    /// Served queues with flow-control limits (claimed one by one).
    limited: Vec<String>,
    /// Jobs wanted in all, prefetch included.
    room: usize,
    /// Free executor slots (limited queues claim only within these).
    free: usize,
    worker: Uuid,
    lease: Duration,
}

/// How a claim round went. Its jobs are in [`Claim::sink`], whatever happened.
#[derive(Default)]
struct ClaimReport {
    /// Some queue returned all it was asked for: there may be more.
    full: bool,
    /// The first statement that failed (the others still ran).
    error: Option<db::Error>,
}

/// A claim round in flight.
struct Claim {
    task: tokio::task::JoinHandle<ClaimReport>,
    /// Jobs claimed so far, pushed right after each statement commits, so neither an
    /// error in a later statement nor a panic loses leased jobs.
    sink: Arc<Mutex<Vec<ClaimedJob>>>,
}

impl Claim {
    fn spawn(plan: ClaimPlan) -> Claim {
        let sink: Arc<Mutex<Vec<ClaimedJob>>> = Arc::default();
        let out = sink.clone();
        let task = tokio::spawn(async move {
            let push = |jobs: Vec<ClaimedJob>| {
                out.lock().unwrap_or_else(|p| p.into_inner()).extend(jobs);
            };
            let mut report = ClaimReport::default();
            let mut claimed = 0usize;
            let serves_unlimited = plan.queues.len() > plan.limited.len();
            // Limited queues first, each with an even share of the free slots: claimed
            // after the unlimited ones, a backlog there left them nothing, ever.
            let groups = plan.limited.len() + usize::from(serves_unlimited);
            let share = plan.free.div_ceil(groups.max(1));
            for queue in &plan.limited {
                let ask = share.min(plan.free.saturating_sub(claimed));
                if ask == 0 {
                    break;
                }
                match due_work::claim_limited(&plan.pool, queue, ask, plan.worker, plan.lease).await
                {
                    Ok(jobs) => {
                        report.full |= jobs.len() == ask;
                        claimed += jobs.len();
                        push(jobs);
                    }
                    // One failing queue must not stop the others: keep going.
                    Err(e) => {
                        report.error.get_or_insert(e);
                    }
                }
            }
            let ask = plan.room.saturating_sub(claimed);
            if serves_unlimited && ask > 0 {
                match due_work::claim_due(&plan.pool, &plan.queues, ask, plan.worker, plan.lease)
                    .await
                {
                    Ok(jobs) => {
                        report.full |= jobs.len() == ask;
                        push(jobs);
                    }
                    Err(e) => {
                        report.error.get_or_insert(e);
                    }
                }
            }
            report
        });
        Claim { task, sink }
    }

    fn take_jobs(&self) -> Vec<ClaimedJob> {
        std::mem::take(&mut *self.sink.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Queue defaults, re-read every [`QUEUE_DEFAULTS_TTL`].
#[derive(Default)]
struct QueueDefaultsCache {
    by_name: HashMap<String, QueueDefaults>,
    fetched: Option<Instant>,
}

impl QueueDefaultsCache {
    async fn refresh(&mut self, pool: &PgPool, queues: &[String]) {
        if self
            .fetched
            .is_some_and(|t| t.elapsed() < QUEUE_DEFAULTS_TTL)
        {
            return;
        }
        match db::queues::queue_defaults(pool, queues).await {
            Ok(rows) => {
                self.by_name = rows.into_iter().map(|q| (q.name.clone(), q)).collect();
                self.fetched = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading queue settings failed; using the previous ones")
            }
        }
    }

    fn get(&self, queue: &str) -> Option<&QueueDefaults> {
        self.by_name.get(queue)
    }

    /// Queues with flow-control limits, claimed one by one through claim_limited.
    fn limited(&self) -> Vec<String> {
        self.by_name
            .values()
            .filter(|q| q.limited)
            .map(|q| q.name.clone())
            .collect()
    }
}

/// `base` scaled by a random factor in [0.8, 1.2], so replicas do not poll in lockstep.
pub(crate) fn jittered(base: Duration) -> Duration {
    base.mul_f64(rand::rng().random_range(0.8..1.2))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
