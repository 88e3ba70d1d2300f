//! Prometheus metrics: every metric name Ordinaut exports, one function per event.
//!
//! Callers (API, worker, scheduler) record through these functions and never name a
//! metric themselves, so names, labels and units stay in one place. Recording goes
//! through the `metrics` facade, which is a no-op until [`install`] has set the
//! process-wide recorder; rendering is done by `metrics-exporter-prometheus`.
//!
//! Queue and kind labels are bounded: once a process has declared the names it knows
//! ([`allow_from_config`], [`allow_queues`], [`allow_kinds`]), every other name is
//! counted under [`OTHER`]. Callers choose queue and kind names freely, and Prometheus
//! series are never freed, so unbounded names would grow memory and `/metrics` output
//! without limit.

use std::collections::{BTreeMap, HashSet};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics::{Gauge, Histogram};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::ClaimedJob;

/// Jobs enqueued (new rows, not idempotent duplicates), by queue and kind.
pub const JOBS_ENQUEUED: &str = "ordinaut_jobs_enqueued_total";
/// Attempts finished, by queue, kind and outcome.
pub const JOBS_FINISHED: &str = "ordinaut_jobs_finished_total";
/// Attempt run time in seconds, by queue, kind and outcome.
pub const JOB_DURATION: &str = "ordinaut_job_duration_seconds";
/// Jobs claimed, by queue and claimer (`worker` or `pull`).
pub const JOBS_CLAIMED: &str = "ordinaut_jobs_claimed_total";
/// HTTP requests served, by method, route template and status.
pub const HTTP_REQUESTS: &str = "ordinaut_http_requests_total";
/// HTTP request latency in seconds, by method, route template and status.
pub const HTTP_DURATION: &str = "ordinaut_http_request_duration_seconds";
/// Due jobs waiting for a worker, per queue.
pub const QUEUE_AVAILABLE: &str = "ordinaut_queue_available";
/// Jobs waiting for a future run_at, per queue.
pub const QUEUE_SCHEDULED: &str = "ordinaut_queue_scheduled";
/// Jobs leased by a worker, per queue.
pub const QUEUE_RUNNING: &str = "ordinaut_queue_running";
/// Jobs failed in the last 24 hours, per queue.
pub const QUEUE_FAILED_RECENTLY: &str = "ordinaut_queue_failed_recently";
/// Age in seconds of the oldest due job, per queue (0 when none waits).
pub const QUEUE_OLDEST_WAIT: &str = "ordinaut_queue_oldest_wait_seconds";
/// 1 when a queue is paused.
pub const QUEUE_PAUSED: &str = "ordinaut_queue_paused";
/// Seconds the most overdue schedule is behind its fire time (0 while schedulers keep up).
pub const SCHEDULE_LAG: &str = "ordinaut_schedule_lag_seconds";
/// Events dropped for a slow event-stream client.
pub const EVENTS_DROPPED: &str = "ordinaut_events_dropped_total";
/// Seconds from a job being due to an attempt starting, by queue.
pub const JOB_QUEUE_WAIT: &str = "ordinaut_job_queue_wait_seconds";
/// Jobs returned by one claim statement, by claimer (`worker` or `pull`).
pub const CLAIM_BATCH: &str = "ordinaut_claim_batch_size";
/// Handlers running now in this worker process.
pub const WORKER_SLOTS_BUSY: &str = "ordinaut_worker_slots_busy";
/// Handlers this worker process runs at most at once (its concurrency).
pub const WORKER_SLOTS_TOTAL: &str = "ordinaut_worker_slots_total";
/// Jobs this worker process holds leased but has not started (prefetched).
pub const WORKER_PREFETCHED: &str = "ordinaut_worker_prefetched_jobs";

/// Jobs the rescuer took back from dead workers or expired leases, by what became of
/// them (`retried`, `failed`, `cancelled`).
pub const JOBS_RESCUED: &str = "ordinaut_jobs_rescued_total";
/// Spans dropped instead of exported: the export queue was full or the collector did
/// not take a batch (tracing never waits for a collector).
pub const OTEL_SPANS_DROPPED: &str = "ordinaut_otel_spans_dropped_total";

/// Histogram buckets in seconds: 1 ms to 10 minutes, roughly x2.5 apart.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    150.0, 600.0,
];

/// Claim batch size buckets: powers of two up to the largest prefetch.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

/// Installs the process-wide recorder once and returns the handle that renders it.
///
/// The `metrics` facade has exactly one recorder per process; a `OnceLock` makes a
/// second call (tests build many routers) return the same handle instead of failing.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(CLAIM_BATCH.into()), BATCH_BUCKETS)
                })
                .map(PrometheusBuilder::build_recorder)
                // Only fails for an empty bucket list, and both lists are non-empty.
                .expect("bucket lists are non-empty constants");
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                // An embedding program installed its own recorder first; ours then
                // renders nothing, which is its choice.
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// The label value of every queue or kind not declared to this process.
pub const OTHER: &str = "other";
/// Most distinct queue (and kind) label values a process keeps; names declared past
/// it are counted under [`OTHER`] too.
pub const MAX_LABELS: usize = 1000;

/// Queue and kind names that get their own label value.
#[derive(Default)]
struct Allowed {
    /// False until something was declared: until then names pass through, so a
    /// program embedding the library keeps its labels unless it declares them.
    declared: bool,
    queues: HashSet<String>,
    kinds: HashSet<String>,
}

/// Process-wide like the recorder itself: every recording site, in any task, must
/// fold names the same way, and the `metrics` facade gives them nothing to carry it in.
fn allowed() -> &'static RwLock<Allowed> {
    static ALLOWED: OnceLock<RwLock<Allowed>> = OnceLock::new();
    ALLOWED.get_or_init(Default::default)
}

fn allow(names: impl IntoIterator<Item = String>, queues: bool) {
    let mut a = allowed()
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    a.declared = true;
    let set = if queues { &mut a.queues } else { &mut a.kinds };
    for name in names {
        if set.len() >= MAX_LABELS {
            break;
        }
        set.insert(name);
    }
}

/// Gives these queues their own label value (others are counted as [`OTHER`]).
pub fn allow_queues(names: impl IntoIterator<Item = String>) {
    allow(names, true);
}

/// Gives these kinds their own label value (others are counted as [`OTHER`]).
pub fn allow_kinds(names: impl IntoIterator<Item = String>) {
    allow(names, false);
}

/// Declares the queues and kinds of the configuration: those in `[queues.*]`, the
/// worker's `WORKER_QUEUES` (default `default`) and those in `[kinds.*]`.
pub fn allow_from_config(config: &crate::config::Config) {
    allow_queues(
        config
            .queues
            .keys()
            .chain(&config.worker.queues)
            .chain(config.schedules.values().map(|s| &s.queue))
            .cloned(),
    );
    allow_kinds(
        config
            .kinds
            .keys()
            .chain(config.schedules.values().map(|s| &s.kind))
            .cloned(),
    );
}

/// The label value for `queue`: itself when declared (or nothing is), else [`OTHER`].
pub fn queue_label(queue: &str) -> String {
    label(queue, true)
}

/// The label value for `kind`: itself when declared (or nothing is), else [`OTHER`].
pub fn kind_label(kind: &str) -> String {
    label(kind, false)
}

fn label(name: &str, queue: bool) -> String {
    let a = allowed()
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let set = if queue { &a.queues } else { &a.kinds };
    if !a.declared || set.contains(name) {
        name.to_owned()
    } else {
        OTHER.to_owned()
    }
}

/// A job was enqueued (not a duplicate).
pub fn job_enqueued(queue: &str, kind: &str) {
    counter!(JOBS_ENQUEUED, "queue" => queue_label(queue), "kind" => kind_label(kind)).increment(1);
}

/// Jobs were claimed from `queue`; `claimer` is `worker` or `pull`.
pub fn jobs_claimed(queue: &str, claimer: &'static str, count: u64) {
    counter!(JOBS_CLAIMED, "queue" => queue_label(queue), "claimer" => claimer).increment(count);
}

/// A worker's claim statement returned `jobs`: counts them by queue, records the
/// batch size, and each job's wait from due to started.
///
/// Handles are looked up once per queue, not per job: at tens of thousands of jobs a
/// second the per-call label lookup of the `metrics!` macros would show in the profile.
pub fn worker_claimed(jobs: &[ClaimedJob]) {
    histogram!(CLAIM_BATCH, "claimer" => "worker").record(jobs.len() as f64);
    let mut by_queue: Vec<(&str, Histogram, u64)> = Vec::new();
    for job in jobs {
        let i = match by_queue.iter().position(|(q, ..)| *q == job.queue) {
            Some(i) => i,
            None => {
                let wait = histogram!(JOB_QUEUE_WAIT, "queue" => queue_label(&job.queue));
                by_queue.push((&job.queue, wait, 0));
                by_queue.len() - 1
            }
        };
        let waited = (job.attempted_at - job.run_at)
            .num_microseconds()
            .unwrap_or(0);
        by_queue[i].1.record(waited.max(0) as f64 / 1e6);
        by_queue[i].2 += 1;
    }
    for (queue, _, n) in by_queue {
        jobs_claimed(queue, "worker", n);
    }
}

/// One finished attempt, as the worker's completer reports it.
pub struct Finished<'a> {
    /// Queue name.
    pub queue: &'a str,
    /// Kind name.
    pub kind: &'a str,
    /// `completed`, `retry`, `failed`, `snoozed`, `cancelled` or `interrupted`.
    pub outcome: &'static str,
    /// Time the handler ran.
    pub ran: Duration,
}

/// A batch of attempts was recorded: counts and durations by queue, kind and outcome,
/// with one handle lookup per distinct triple (see [`worker_claimed`]).
pub fn worker_finished<'a>(finished: impl IntoIterator<Item = Finished<'a>>) {
    let mut groups: Vec<(Finished<'a>, Histogram, u64)> = Vec::new();
    for f in finished {
        let i = match groups
            .iter()
            .position(|(g, ..)| g.outcome == f.outcome && g.queue == f.queue && g.kind == f.kind)
        {
            Some(i) => i,
            None => {
                let h = histogram!(JOB_DURATION, &finished_labels(f.queue, f.kind, f.outcome));
                groups.push((
                    Finished {
                        ran: Duration::ZERO,
                        ..f
                    },
                    h,
                    0,
                ));
                groups.len() - 1
            }
        };
        groups[i].1.record(f.ran.as_secs_f64());
        groups[i].2 += 1;
    }
    for (g, _, n) in groups {
        counter!(JOBS_FINISHED, &finished_labels(g.queue, g.kind, g.outcome)).increment(n);
    }
}

fn finished_labels(queue: &str, kind: &str, outcome: &str) -> [(&'static str, String); 3] {
    [
        ("queue", queue_label(queue)),
        ("kind", kind_label(kind)),
        ("outcome", outcome.to_owned()),
    ]
}

/// Gauges of one worker process's slots, held so the hot path only stores a number.
#[derive(Clone)]
pub struct WorkerGauges {
    /// Handlers running.
    pub busy: ReadableGauge,
    /// Leased jobs not yet started.
    pub prefetched: ReadableGauge,
}

/// A gauge whose last value this process can read back (the heartbeat reports it);
/// clones share it.
#[derive(Clone)]
pub struct ReadableGauge {
    gauge: Gauge,
    last: std::sync::Arc<std::sync::atomic::AtomicI32>,
}

impl ReadableGauge {
    fn new(gauge: Gauge) -> ReadableGauge {
        ReadableGauge {
            gauge,
            last: Default::default(),
        }
    }

    /// Sets the gauge.
    pub fn set(&self, value: f64) {
        self.gauge.set(value);
        self.last
            .store(value as i32, std::sync::atomic::Ordering::Relaxed);
    }

    /// The last value set.
    pub fn get(&self) -> i32 {
        self.last.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl WorkerGauges {
    /// Registers the gauges and records the process's concurrency.
    pub fn new(concurrency: usize) -> WorkerGauges {
        gauge!(WORKER_SLOTS_TOTAL).set(concurrency as f64);
        WorkerGauges {
            busy: ReadableGauge::new(gauge!(WORKER_SLOTS_BUSY)),
            prefetched: ReadableGauge::new(gauge!(WORKER_PREFETCHED)),
        }
    }
}

/// An attempt finished with `outcome` (completed, retry, failed, snoozed, cancelled,
/// interrupted) after running for `duration`.
pub fn job_finished(queue: &str, kind: &str, outcome: &str, duration: Duration) {
    let labels = finished_labels(queue, kind, outcome);
    counter!(JOBS_FINISHED, &labels).increment(1);
    histogram!(JOB_DURATION, &labels).record(duration.as_secs_f64());
}

/// An HTTP request was answered. `route` is the matched route template
/// (`/v1/jobs/{id}`), never the raw path, to keep label cardinality bounded.
pub fn http_request(method: &str, route: &str, status: u16, duration: Duration) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    counter!(HTTP_REQUESTS, &labels).increment(1);
    histogram!(HTTP_DURATION, &labels).record(duration.as_secs_f64());
}

/// Live counts of one queue, as read from `queue_stats`.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueDepth {
    /// Due jobs waiting.
    pub available: i64,
    /// Jobs waiting for run_at.
    pub scheduled: i64,
    /// Leased jobs.
    pub running: i64,
    /// Failed in the last day.
    pub failed_recently: i64,
    /// Oldest due job's wait.
    pub oldest_wait_seconds: Option<f64>,
    /// Paused.
    pub paused: bool,
}

impl QueueDepth {
    /// Adds `other` into this one (counts summed, the oldest wait kept, paused if any).
    fn absorb(&mut self, other: QueueDepth) {
        self.available += other.available;
        self.scheduled += other.scheduled;
        self.running += other.running;
        self.failed_recently += other.failed_recently;
        self.oldest_wait_seconds = match (self.oldest_wait_seconds, other.oldest_wait_seconds) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.paused |= other.paused;
    }
}

/// Sets the depth gauges of every queue in `depths`; queues without their own label
/// value are summed into one [`OTHER`] series.
pub fn queue_depths(depths: impl IntoIterator<Item = (String, QueueDepth)>) {
    // Series set by an earlier refresh whose queue has no row now (its jobs all
    // finished) are set to zero rather than left at their last value.
    static SHOWN: OnceLock<std::sync::Mutex<HashSet<String>>> = OnceLock::new();
    let mut folded: BTreeMap<String, QueueDepth> = BTreeMap::new();
    for (queue, depth) in depths {
        folded.entry(queue_label(&queue)).or_default().absorb(depth);
    }
    let mut shown = SHOWN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for gone in shown.iter() {
        folded.entry(gone.clone()).or_default();
    }
    for (queue, depth) in folded {
        shown.insert(queue.clone());
        set_queue_depth(queue, depth);
    }
}

fn set_queue_depth(queue: String, depth: QueueDepth) {
    let q = || [("queue", queue.clone())];
    gauge!(QUEUE_AVAILABLE, &q()).set(depth.available as f64);
    gauge!(QUEUE_SCHEDULED, &q()).set(depth.scheduled as f64);
    gauge!(QUEUE_RUNNING, &q()).set(depth.running as f64);
    gauge!(QUEUE_FAILED_RECENTLY, &q()).set(depth.failed_recently as f64);
    gauge!(QUEUE_OLDEST_WAIT, &q()).set(depth.oldest_wait_seconds.unwrap_or(0.0));
    gauge!(QUEUE_PAUSED, &q()).set(if depth.paused { 1.0 } else { 0.0 });
}

/// Jobs rescued in one pass, by what became of them.
pub fn jobs_rescued(retried: u64, failed: u64, cancelled: u64) {
    for (outcome, n) in [
        ("retried", retried),
        ("failed", failed),
        ("cancelled", cancelled),
    ] {
        if n > 0 {
            counter!(JOBS_RESCUED, "outcome" => outcome).increment(n);
        }
    }
}

/// Spans dropped by the trace pipeline.
pub fn otel_spans_dropped(count: u64) {
    counter!(OTEL_SPANS_DROPPED).increment(count);
}

/// A slow event-stream client missed `count` event batches.
pub fn events_dropped(count: u64) {
    counter!(EVENTS_DROPPED).increment(count);
}

/// Sets the scheduling lag: how far the most overdue schedule is behind its fire time.
pub fn schedule_lag(seconds: f64) {
    gauge!(SCHEDULE_LAG).set(seconds.max(0.0));
}
