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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// State shared between the claimer, executors, completer and heartbeat.
pub(crate) struct Shared {
    /// Jobs this worker holds a lease on (running or awaiting their outcome write),
    /// with the token that cancels their execution.
    owned: Mutex<HashMap<Uuid, CancellationToken>>,
    /// Handlers running now.
    executing: AtomicUsize,
    /// Signalled when an executor finishes.
    slot_freed: Notify,
    /// Moving average of recent execution times, in microseconds.
    avg_exec_micros: AtomicU64,
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
            gauges: crate::metrics::WorkerGauges::new(concurrency),
            lock_confirmed: AtomicBool::new(false),
        }
    }

    fn owned(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, CancellationToken>> {
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

    pub(crate) fn forget(&self, ids: &[Uuid]) {
        let mut owned = self.owned();
        for id in ids {
            owned.remove(id);
        }
    }

    /// Records whether the worker's lock is confirmed (claiming allowed, `/ready`).
    pub(crate) fn set_lock_confirmed(&self, confirmed: bool) {
        self.lock_confirmed.store(confirmed, Ordering::Release);
        READY.store(confirmed, Ordering::Release);
    }

    pub(crate) fn owned_ids(&self) -> Vec<Uuid> {
        self.owned().keys().copied().collect()
    }

    pub(crate) fn cancel(&self, id: &Uuid) -> bool {
        match self.owned().get(id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
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
        let mut claiming: Option<(usize, tokio::task::JoinHandle<db::Result<Vec<ClaimedJob>>>)> =
            None;
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
            // Without a confirmed lock the rescuer may be handing these jobs back.
            let confirmed = shared.lock_confirmed.load(Ordering::Acquire);
            while confirmed
                && shared.executing.load(Ordering::Acquire) < o.concurrency
                && let Some(job) = buffer.pop_front()
            {
                self.spawn_execution(job, shared, hard_stop, tx, executors, &defaults);
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
                let held = shared.executing.load(Ordering::Acquire) + buffer.len();
                let capacity = o.concurrency + prefetch;
                let room = capacity.saturating_sub(held);
                // Refill once a quarter of the capacity is free while there is a backlog,
                // so a busy worker claims in batches instead of one job per finished job.
                let worth_it = room >= (capacity / 4).max(1) || (held == 0 && room > 0);
                if worth_it && shared.owned().len() < max_owned {
                    defaults.refresh(&self.pool, &o.queues).await;
                    let (pool, queues, id, lease) =
                        (self.pool.clone(), o.queues.clone(), o.id, o.lease);
                    let limited = defaults.limited();
                    // Limited queues never prefetch: a buffered job would hold one of
                    // the queue's cluster-wide slots without running.
                    let free = o.concurrency.saturating_sub(held);
                    claiming = Some((
                        room,
                        tokio::spawn(async move {
                            let mut jobs =
                                due_work::claim_due(&pool, &queues, room, id, lease).await?;
                            for queue in limited {
                                let left = free.saturating_sub(jobs.len());
                                if left == 0 {
                                    break;
                                }
                                jobs.extend(
                                    due_work::claim_limited(&pool, &queue, left, id, lease).await?,
                                );
                            }
                            Ok(jobs)
                        }),
                    ));
                }
                want_claim = false;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                joined = async { (&mut claiming.as_mut().expect("guarded by the if").1).await }, if claiming.is_some() => {
                    let (asked, _) = claiming.take().expect("guarded by the if");
                    match joined {
                        Ok(Ok(jobs)) => {
                            error_delay = Duration::from_millis(100);
                            backlog = jobs.len() == asked;
                            // A wake-up that arrived while this claim was in flight may
                            // be for a job the claim did not see yet: keep it.
                            want_claim = want_claim || backlog;
                            next_poll = Instant::now() + jittered(o.poll_interval);
                            for job in &jobs {
                                shared.owned().insert(job.id, CancellationToken::new());
                            }
                            if !jobs.is_empty() {
                                crate::metrics::worker_claimed(&jobs);
                            }
                            buffer.extend(jobs);
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "claiming jobs failed; backing off");
                            retry_at = Instant::now() + error_delay;
                            error_delay = (error_delay * 2).min(Duration::from_secs(5));
                            want_claim = true;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "claim task panicked");
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
        if let Some((_, task)) = claiming
            && let Ok(Ok(jobs)) = task.await
        {
            for job in &jobs {
                shared.owned().insert(job.id, CancellationToken::new());
            }
            buffer.extend(jobs);
        }
        for job in buffer {
            let finish = executor::to_finish(&job, crate::model::Outcome::Interrupted, o.backoff);
            let _ = tx.send(completer::Done {
                finish,
                queue: job.queue,
                kind: job.kind,
                ran: Duration::ZERO,
            });
        }
        shared.gauges.prefetched.set(0.0);
    }

    fn spawn_execution(
        &self,
        job: ClaimedJob,
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
        let cancel = shared.owned().entry(job.id).or_default().clone();
        let busy = shared.executing.fetch_add(1, Ordering::AcqRel) + 1;
        shared.gauges.busy.set(busy as f64);
        let exec = executor::Execution {
            job,
            handler,
            worker_id: o.id,
            timeout,
            backoff,
            output_limit: o.output_limit,
            cancel,
            hard_stop: hard_stop.clone(),
        };
        let tx = tx.clone();
        let shared = shared.clone();
        executors.spawn(async move {
            let started = Instant::now();
            let finish = executor::execute(&exec).await;
            let ran = started.elapsed();
            shared.record_duration(ran);
            // The completer only stops after every executor has been joined.
            let _ = tx.send(completer::Done {
                finish,
                queue: exec.job.queue,
                kind: exec.job.kind,
                ran,
            });
            let busy = shared.executing.fetch_sub(1, Ordering::AcqRel) - 1;
            shared.gauges.busy.set(busy as f64);
            shared.slot_freed.notify_one();
        });
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
