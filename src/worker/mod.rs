//! The worker: claims due jobs in batches, runs them, records outcomes in batches.
//!
//! Hot path only. One claimer loop per process fetches up to its free slots in one
//! statement; executors run the handlers; the completer writes outcomes in batches; a
//! heartbeat task holds the worker's advisory lock and extends all leases in one
//! statement; a task follows the process listener (`db::listen`, run here unless the
//! process shares one) and turns its notices into wake-ups and cancels.

pub mod claim;
mod claimer;
mod completer;
mod defaults;
pub mod endpoint;
mod executor;
pub mod handlers;
mod heartbeat;
mod leases;
mod listen;
pub mod progress;
mod publish;
mod slots;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::db::listen::{Listener, Topics};
use crate::db::{self, DbConfig};
use crate::model::Backoff;
pub use handlers::{Handler, Handlers, JobContext};

pub use crate::db::events::{CHANNEL_CANCEL, CHANNEL_ENQUEUED};

/// Whether this process's worker holds its lock on a live primary session: the worker
/// endpoint's `/ready`.
static READY: AtomicBool = AtomicBool::new(false);

/// True while this process's worker can claim (its advisory lock is confirmed).
pub fn is_ready() -> bool {
    READY.load(Ordering::Acquire)
}

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

/// State shared between the claimer, executors, completer, heartbeat and listen task, in
/// parts: each task touches only the parts it needs.
pub(crate) struct Shared {
    /// Jobs this worker holds a lease on, each with its current attempt.
    pub leases: leases::Leases,
    /// Executor slots in use, and the wake-up when one frees.
    pub slots: slots::Slots,
    /// Recent execution times (steer prefetch).
    pub timing: slots::Timing,
    /// Slot gauges exported on /metrics.
    pub gauges: crate::metrics::WorkerGauges,
    /// Whether the worker's advisory lock is confirmed on a live session.
    pub lock: Lock,
}

impl Shared {
    fn new(concurrency: usize) -> Shared {
        Shared {
            leases: leases::Leases::default(),
            slots: slots::Slots::default(),
            timing: slots::Timing::default(),
            gauges: crate::metrics::WorkerGauges::new(concurrency),
            lock: Lock::default(),
        }
    }
}

/// Set by the heartbeat while the worker's advisory lock is confirmed on a live
/// session; nothing is claimed or started without it (see heartbeat.rs).
#[derive(Default)]
pub(crate) struct Lock(AtomicBool);

impl Lock {
    /// Records whether the lock is confirmed (claiming allowed, `/ready`).
    pub(crate) fn set_confirmed(&self, confirmed: bool) {
        self.0.store(confirmed, Ordering::Release);
        READY.store(confirmed, Ordering::Release);
    }

    /// Whether claiming is allowed now.
    pub(crate) fn confirmed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A worker process's engine. Build with [`Worker::new`], then [`Worker::run`].
pub struct Worker {
    options: WorkerOptions,
    db: DbConfig,
    pool: PgPool,
    handlers: Arc<Handlers>,
    progress: progress::ProgressSink,
    progress_rx: Mutex<Option<progress::ProgressReceiver>>,
    /// The process's listener when another part of the process runs it; `None`: the
    /// worker runs one of its own on `pool`.
    shared_listener: Option<Listener>,
}

impl Worker {
    /// A worker over `pool` (connections from `db` for its lock session), with a
    /// listener of its own on `pool`.
    pub fn new(options: WorkerOptions, db: DbConfig, pool: PgPool, handlers: Handlers) -> Worker {
        let (progress, progress_rx) = progress::ProgressSink::channel();
        Worker {
            options,
            db,
            pool,
            handlers: Arc::new(handlers),
            progress,
            progress_rx: Mutex::new(Some(progress_rx)),
            shared_listener: None,
        }
    }

    /// The same worker following `listener`, the process's listener, which another part
    /// of the process runs (`ordinaut dev`: one LISTEN connection for the API and the
    /// worker). It must include [`Topics::WORK`]'s channels.
    pub fn sharing_listener(self, listener: Listener) -> Worker {
        Worker {
            shared_listener: Some(listener),
            ..self
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
        shared.lock.set_confirmed(true);
        let wake = Arc::new(Notify::new());
        let stop_background = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        let abandon = CancellationToken::new();

        let mut background = JoinSet::new();
        if let Some(rx) = self.progress_rx.lock().ok().and_then(|mut r| r.take()) {
            background.spawn(progress::write(
                self.pool.clone(),
                o.id,
                rx,
                stop_background.clone(),
            ));
        }
        let kinds = self.handlers.published(o.id, &registration.hostname);
        publish::first(&self.pool, &kinds).await;
        background.spawn(publish::refresh(
            self.pool.clone(),
            kinds,
            stop_background.clone(),
        ));
        let notices = match &self.shared_listener {
            Some(listener) => listener.subscribe_work(),
            None => {
                let listener = Listener::new(self.pool.clone(), Topics::WORK);
                let notices = listener.subscribe_work();
                background.spawn(listener.run(stop_background.clone()));
                notices
            }
        };
        background.spawn(listen::follow(
            notices,
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
        let drain_limit = if shared.lock.confirmed() {
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
}

/// `base` scaled by a random factor in [0.8, 1.2] (lives in `model`: every service uses it).
pub(crate) use crate::model::jittered;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
