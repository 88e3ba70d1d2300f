//! Runs one attempt: the `job` span, the timeout, operator cancel and shutdown, and the
//! mapping of the handler's [`Outcome`] to the row transition the completer writes.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::handlers::{Handler, JobContext, ProgressSink};
use crate::db::due_work::{Finish, FinishKind};
use crate::model::{Backoff, ClaimedJob, Outcome};
use crate::otel::Carrier;

/// How long a stopped handler gets to return its partial output before it is dropped
/// (beyond the handler's own [`Handler::stop_grace`]).
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A `job` span for `exec`'s attempt: `$head` (the name, and a parent and fields of
/// its own before it), then the log context every attempt's span carries, exported or
/// not (job_id, queue, kind, attempt, worker_id, schedule_id recorded later).
macro_rules! job_span {
    ($exec:expr, $($head:tt)*) => {
        tracing::info_span!(
            $($head)*
            job_id = %$exec.job.id,
            queue = %$exec.job.queue,
            kind = %$exec.job.kind,
            attempt = $exec.job.attempt,
            worker_id = %$exec.worker_id,
            schedule_id = tracing::field::Empty,
        )
    };
}

/// Why an attempt was stopped from outside.
enum Stop {
    Timeout(Duration),
    Cancelled,
    Shutdown,
}

/// What the executor needs besides the job.
pub(crate) struct Execution {
    pub job: ClaimedJob,
    pub handler: Option<Arc<dyn Handler>>,
    pub worker_id: Uuid,
    pub timeout: Option<Duration>,
    pub backoff: Backoff,
    pub output_limit: usize,
    /// Shortest snooze delay.
    pub snooze_min: Duration,
    /// Cancelled by an operator's cancel of this job (or when this attempt's lease is lost).
    pub cancel: CancellationToken,
    /// Cancelled when the shutdown grace period is over.
    pub hard_stop: CancellationToken,
    /// The attempt span's context once it exists (only while spans are exported), for
    /// the finish write's span.
    pub span_context: std::sync::OnceLock<opentelemetry::trace::SpanContext>,
    /// Where the handler reports progress.
    pub progress: ProgressSink,
}

/// Runs the attempt to completion and returns the transition to record.
pub(crate) async fn execute(exec: &Execution) -> Finish {
    let job = &exec.job;
    let stored = Carrier::from_metadata(&job.metadata);
    let span = if crate::otel::exporting() {
        let span = attempt_span(exec);
        crate::otel::place_attempt(&span, job.attempt, stored.as_ref());
        if let Some(sc) = crate::otel::span_context(&span) {
            let _ = exec.span_context.set(sc);
        }
        span
    } else {
        // Without an exporter the span stays as small as it was: log context only.
        job_span!(exec, "job",)
    };
    if let Some(schedule) = job.schedule_id {
        span.record("schedule_id", tracing::field::display(schedule));
    }
    // Downstream gets the attempt's span, or the enqueuer's context passed through.
    let trace = Carrier::of_span(&span).or(stored);
    let outcome = run_attempt(exec, trace).instrument(span.clone()).await;
    let finish = to_finish(job, outcome, exec.backoff, exec.snooze_min);
    span.record("ordinaut.outcome", finish.outcome.as_str());
    if matches!(finish.outcome, FinishKind::Retry | FinishKind::Failed) {
        span.record("otel.status_code", "error");
        if let Some(error) = &finish.error {
            span.record("otel.status_description", error.as_str());
        }
    }
    let _enter = span.enter();
    match finish.outcome {
        FinishKind::Completed => tracing::debug!("job completed"),
        FinishKind::Retry => tracing::info!(
            error = finish.error.as_deref().unwrap_or(""),
            "job attempt failed; will retry"
        ),
        FinishKind::Failed => tracing::warn!(
            error = finish.error.as_deref().unwrap_or(""),
            "job failed permanently"
        ),
        FinishKind::Cancelled => tracing::info!("job cancelled"),
        FinishKind::Snoozed => tracing::info!(
            reason = finish.error.as_deref().unwrap_or(""),
            "job snoozed"
        ),
        FinishKind::Interrupted => tracing::info!("job interrupted by shutdown; handed back"),
    }
    finish
}

/// The `process {queue}` consumer span of an attempt, with the messaging attributes and
/// the time the job waited in the queue (due to started) as `ordinaut.queue_wait_ms`.
fn attempt_span(exec: &Execution) -> tracing::Span {
    let job = &exec.job;
    let wait_ms = (job.attempted_at - job.run_at).num_milliseconds().max(0);
    job_span!(
        exec,
        parent: None,
        "job",
        otel.name = %format_args!("process {}", job.queue),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        messaging.system = crate::otel::SYSTEM,
        messaging.operation.name = "process",
        messaging.operation.type = "process",
        messaging.destination.name = %job.queue,
        messaging.message.id = %job.id,
        messaging.client.id = %exec.worker_id,
        ordinaut.kind = %job.kind,
        ordinaut.attempt = job.attempt,
        ordinaut.max_attempts = job.max_attempts,
        ordinaut.queue_wait_ms = wait_ms,
        ordinaut.outcome = tracing::field::Empty,
    )
}

async fn run_attempt(exec: &Execution, trace: Option<Carrier>) -> Outcome {
    let Some(handler) = exec.handler.clone() else {
        return Outcome::Failed {
            error: format!(
                "no handler configured for kind {:?} on this worker",
                exec.job.kind
            ),
            log: None,
        };
    };
    if exec.cancel.is_cancelled() {
        // Cancelled (or its lease lost) while waiting in the prefetch buffer.
        return Outcome::Cancelled { log: None };
    }
    tracing::debug!("job started");
    let stop = CancellationToken::new();
    let ctx = JobContext {
        job: exec.job.clone(),
        worker_id: exec.worker_id,
        stop: stop.clone(),
        output_limit: exec.output_limit,
        trace,
        progress: exec.progress.clone(),
    };
    // A panicking handler is a failed attempt carrying the panic message, whether it
    // panics while building its future or while it runs.
    // (No extra box: the handler's future is boxed already, so this stays Unpin.)
    let mut fut = match std::panic::catch_unwind(AssertUnwindSafe(|| handler.run(ctx))) {
        Ok(fut) => AssertUnwindSafe(fut).catch_unwind(),
        Err(p) => return panicked(p.as_ref()),
    };
    // No timer at all for jobs without a timeout: registering one per job shows up in
    // the no-op benchmark.
    let expiry = async {
        match exec.timeout {
            Some(t) => {
                tokio::time::sleep(t).await;
                t
            }
            None => std::future::pending().await,
        }
    };
    let why = tokio::select! {
        biased;
        outcome = &mut fut => return outcome.unwrap_or_else(|p| panicked(p.as_ref())),
        t = expiry => Stop::Timeout(t),
        _ = exec.cancel.cancelled() => Stop::Cancelled,
        _ = exec.hard_stop.cancelled() => Stop::Shutdown,
    };
    stop.cancel();
    // How the handler ended its work (a command: "terminated by SIGTERM", "killed
    // with SIGKILL after ..."), kept in the attempt's error.
    let mut how = None;
    let log = match tokio::time::timeout(STOP_GRACE + handler.stop_grace(), fut)
        .await
        .map(|r| r.unwrap_or_else(|p| panicked(p.as_ref())))
    {
        Ok(Outcome::Retry { log, error } | Outcome::Failed { log, error }) => {
            how = Some(error).filter(|e| e != "stopped");
            log
        }
        Ok(Outcome::Succeeded { log, .. })
        | Ok(Outcome::Snoozed { log, .. } | Outcome::Cancelled { log }) => log,
        Ok(Outcome::Interrupted) | Err(_) => None,
    };
    match why {
        Stop::Timeout(t) => Outcome::Retry {
            error: match how {
                Some(how) => format!("timed out after {}; {how}", humantime::format_duration(t)),
                None => format!("timed out after {}", humantime::format_duration(t)),
            },
            log,
        },
        Stop::Cancelled => Outcome::Cancelled { log },
        Stop::Shutdown => Outcome::Interrupted,
    }
}

/// The outcome of a handler that panicked: a failed attempt (retried while attempts
/// remain) carrying the panic message.
fn panicked(payload: &(dyn Any + Send)) -> Outcome {
    let message = panic_message(payload);
    tracing::error!(error = %message, "job handler panicked");
    Outcome::Retry {
        error: format!("handler panicked: {message}"),
        log: None,
    }
}

/// The text of a panic payload (`panic!` with a literal or a format string).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

use crate::model::{Settled, delayed as after, settle};

/// Maps an outcome to the stored transition: retries become failures once attempts
/// are spent, and get their backoff here; snoozes are raised to `snooze_min`; every
/// delay is clamped to [`crate::model::MAX_DELAY`].
pub(crate) fn to_finish(
    job: &ClaimedJob,
    outcome: Outcome,
    backoff: Backoff,
    snooze_min: Duration,
) -> Finish {
    let now = Utc::now();
    let mut finish = Finish {
        id: job.id,
        attempt: job.attempt,
        outcome: FinishKind::Completed,
        next_run_at: None,
        error: None,
        output: None,
        log: None,
    };
    match outcome {
        Outcome::Succeeded { output, log } => {
            finish.output = output;
            finish.log = log;
        }
        Outcome::Retry { error, log }
            if settle(true, job.attempt, job.max_attempts) == Settled::Retry =>
        {
            finish.outcome = FinishKind::Retry;
            finish.next_run_at = Some(after(now, backoff.delay(job.attempt)));
            finish.error = Some(error);
            finish.log = log;
        }
        Outcome::Retry { error, log } | Outcome::Failed { error, log } => {
            finish.outcome = FinishKind::Failed;
            finish.error = Some(error);
            finish.log = log;
        }
        Outcome::Snoozed {
            after: delay,
            reason,
            log,
        } => {
            finish.outcome = FinishKind::Snoozed;
            finish.next_run_at = Some(after(now, delay.max(snooze_min)));
            finish.error = Some(reason);
            finish.log = log;
        }
        Outcome::Cancelled { log } => {
            finish.outcome = FinishKind::Cancelled;
            finish.error = Some("cancelled by operator".to_owned());
            finish.log = log;
        }
        Outcome::Interrupted => finish.outcome = FinishKind::Interrupted,
    }
    finish
}
