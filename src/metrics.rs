//! Prometheus metrics: every metric name Ordinaut exports, one function per event.
//!
//! Callers (API, worker, scheduler) record through these functions and never name a
//! metric themselves, so names, labels and units stay in one place. Recording goes
//! through the `metrics` facade, which is a no-op until [`install`] has set the
//! process-wide recorder; rendering is done by `metrics-exporter-prometheus`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

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
/// Events dropped for a slow event-stream client.
pub const EVENTS_DROPPED: &str = "ordinaut_events_dropped_total";

/// Histogram buckets in seconds: 1 ms to 10 minutes, roughly x2.5 apart.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    150.0, 600.0,
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
                .map(PrometheusBuilder::build_recorder)
                // Only fails for an empty bucket list, and BUCKETS is not empty.
                .expect("BUCKETS is a non-empty constant");
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

/// A job was enqueued (not a duplicate).
pub fn job_enqueued(queue: &str, kind: &str) {
    counter!(JOBS_ENQUEUED, "queue" => queue.to_owned(), "kind" => kind.to_owned()).increment(1);
}

/// Jobs were claimed from `queue`; `claimer` is `worker` or `pull`.
pub fn jobs_claimed(queue: &str, claimer: &'static str, count: u64) {
    counter!(JOBS_CLAIMED, "queue" => queue.to_owned(), "claimer" => claimer).increment(count);
}

/// An attempt finished with `outcome` (completed, retry, failed, snoozed, cancelled,
/// interrupted) after running for `duration`.
pub fn job_finished(queue: &str, kind: &str, outcome: &str, duration: Duration) {
    let labels = [
        ("queue", queue.to_owned()),
        ("kind", kind.to_owned()),
        ("outcome", outcome.to_owned()),
    ];
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

/// Sets the depth gauges of `queue`.
pub fn queue_depth(queue: &str, depth: QueueDepth) {
    let q = || [("queue", queue.to_owned())];
    gauge!(QUEUE_AVAILABLE, &q()).set(depth.available as f64);
    gauge!(QUEUE_SCHEDULED, &q()).set(depth.scheduled as f64);
    gauge!(QUEUE_RUNNING, &q()).set(depth.running as f64);
    gauge!(QUEUE_FAILED_RECENTLY, &q()).set(depth.failed_recently as f64);
    gauge!(QUEUE_OLDEST_WAIT, &q()).set(depth.oldest_wait_seconds.unwrap_or(0.0));
    gauge!(QUEUE_PAUSED, &q()).set(if depth.paused { 1.0 } else { 0.0 });
}

/// A slow event-stream client missed `count` event batches.
pub fn events_dropped(count: u64) {
    counter!(EVENTS_DROPPED).increment(count);
}
