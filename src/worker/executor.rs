//! Runs one attempt: the `job` span, the timeout, operator cancel and shutdown, and the
//! mapping of the handler's [`Outcome`] to the row transition the completer writes.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::handlers::{Handler, JobContext};
use crate::db::due_work::{Finish, FinishKind};
use crate::model::{Backoff, ClaimedJob, Outcome};

/// How long a stopped handler gets to return its partial output before it is dropped.
const STOP_GRACE: Duration = Duration::from_secs(2);

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
    /// Cancelled by an operator's cancel of this job.
    pub cancel: CancellationToken,
    /// Cancelled when the shutdown grace period is over.
    pub hard_stop: CancellationToken,
}

/// Runs the attempt to completion and returns the transition to record.
pub(crate) async fn execute(exec: &Execution) -> Finish {
    let job = &exec.job;
    let span = tracing::info_span!(
        "job",
        job_id = %job.id,
        queue = %job.queue,
        kind = %job.kind,
        attempt = job.attempt,
        worker_id = %exec.worker_id,
        schedule_id = tracing::field::Empty,
    );
    if let Some(schedule) = job.schedule_id {
        span.record("schedule_id", tracing::field::display(schedule));
    }
    let outcome = run_attempt(exec).instrument(span.clone()).await;
    let finish = to_finish(job, outcome, exec.backoff);
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

async fn run_attempt(exec: &Execution) -> Outcome {
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
    };
    let mut fut = handler.run(ctx);
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
        outcome = &mut fut => return outcome,
        t = expiry => Stop::Timeout(t),
        _ = exec.cancel.cancelled() => Stop::Cancelled,
        _ = exec.hard_stop.cancelled() => Stop::Shutdown,
    };
    stop.cancel();
    let log = match tokio::time::timeout(STOP_GRACE, fut).await {
        Ok(
            Outcome::Succeeded { log, .. }
            | Outcome::Retry { log, .. }
            | Outcome::Failed { log, .. },
        )
        | Ok(Outcome::Snoozed { log, .. } | Outcome::Cancelled { log }) => log,
        Ok(Outcome::Interrupted) | Err(_) => None,
    };
    match why {
        Stop::Timeout(t) => Outcome::Retry {
            error: format!("timed out after {}", humantime::format_duration(t)),
            log,
        },
        Stop::Cancelled => Outcome::Cancelled { log },
        Stop::Shutdown => Outcome::Interrupted,
    }
}

/// Maps an outcome to the stored transition: retries become failures once attempts
/// are spent, and get their backoff here.
pub(crate) fn to_finish(job: &ClaimedJob, outcome: Outcome, backoff: Backoff) -> Finish {
    let now = Utc::now();
    let mut finish = Finish {
        id: job.id,
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
        Outcome::Retry { error, log } if job.attempt < job.max_attempts => {
            finish.outcome = FinishKind::Retry;
            finish.next_run_at = Some(now + backoff.delay(job.attempt));
            finish.error = Some(error);
            finish.log = log;
        }
        Outcome::Retry { error, log } | Outcome::Failed { error, log } => {
            finish.outcome = FinishKind::Failed;
            finish.error = Some(error);
            finish.log = log;
        }
        Outcome::Snoozed { after, reason, log } => {
            finish.outcome = FinishKind::Snoozed;
            finish.next_run_at = Some(now + after);
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
