//! `/v1/pull`: the pull model, so workers in any language can run jobs over HTTP.
//!
//! A pull client claims jobs with a lease, extends the lease while it works, and
//! completes or fails each job; the same store functions and guards as the built-in
//! worker apply (claim with SKIP LOCKED, finish fenced by lease_owner AND the claimed
//! attempt), so a job is finished exactly once and a lost lease, or an outcome for an
//! older attempt than the job's current one, is reported as 409.
//!
//! A pull client is identified only by its lease-owner UUID (chosen by the client or
//! issued by the first claim). It is deliberately NOT registered in `workers`: the
//! rescuer treats a worker row whose session advisory lock nobody holds as dead and
//! would hand its jobs back at once. A pull client's jobs are rescued by lease expiry
//! instead; heartbeats extend the lease.
//!
//! Files by concern: this one holds the limits and the parts every call shares;
//! `claim`, `heartbeat` and `finish` (complete and fail) hold one call each with its
//! wire types.

pub mod claim;
pub mod finish;
pub mod heartbeat;

use std::time::Duration;

use utoipa::{IntoResponses, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{check_range, int};
use crate::db::due_work::{Finish, FinishKind};

/// A queue name (`model::validate_name`), for the OpenAPI document.
#[derive(ToSchema)]
#[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
pub struct QueueName(#[allow(dead_code)] String);

/// The 400 of every pull call: its JSON body is malformed or a field is invalid.
#[derive(IntoResponses)]
#[allow(dead_code)] // Documentation only: the answer is an `ApiError`.
enum InvalidRequest {
    #[response(status = 400, description = "Malformed JSON or an invalid field")]
    Invalid(ErrorBody),
}

/// Longest claim wait.
pub const MAX_CLAIM_WAIT: Duration = Duration::from_secs(60);
/// A waiting claim stops claiming this long (at most half its wait) before its
/// deadline and then answers (see [`claim_window`]).
pub const CLAIM_MARGIN: Duration = Duration::from_millis(1500);
/// Most jobs per claim or heartbeat.
pub(super) const MAX_JOBS: usize = 1000;
/// Most queues per claim.
pub(super) const MAX_QUEUES: usize = 100;
/// Lease bounds in seconds.
const LEASE_RANGE: std::ops::RangeInclusive<u32> = 2..=3600;
/// Pull clients never snooze (a fail with retry_after is a retry), so no budget applies.
pub(super) const NO_SNOOZE_BUDGET: u32 = u32::MAX;

/// Outcome `outcome` of attempt `attempt` of job `id`, with no time, error, output or log
/// yet.
pub(super) fn finish(id: Uuid, attempt: i32, outcome: FinishKind) -> Finish {
    Finish {
        id,
        attempt,
        outcome,
        next_run_at: None,
        error: None,
        output: None,
        log: None,
    }
}

/// A required attempt number, 1 or more (accepts `2.0` like the other integers).
pub(super) fn attempt_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    use serde::de::Error;
    match int::opt_i32(d)? {
        Some(n) if n >= 1 => Ok(n),
        Some(n) => Err(D::Error::custom(format!("attempt {n} must be at least 1"))),
        None => Err(D::Error::custom(
            "attempt is required: the attempt number from the claim",
        )),
    }
}

/// 400 unless the list `field` holds 1 to `max` items ("queues: must name 1 to 100
/// queues").
pub(super) fn check_count(field: &str, verb: &str, len: usize, max: usize) -> ApiResult<()> {
    if (1..=max).contains(&len) {
        return Ok(());
    }
    Err(ApiError::invalid(
        field,
        format!("must {verb} 1 to {max} {field}"),
    ))
}

/// The lease a call asks for, else the configured one; 400 outside [`LEASE_RANGE`].
pub(super) fn lease_from(state: &AppState, lease_seconds: Option<u32>) -> ApiResult<Duration> {
    match lease_seconds {
        None => Ok(state.settings().lease),
        Some(s) => {
            check_range("lease_seconds", s, LEASE_RANGE).map(|s| Duration::from_secs(u64::from(s)))
        }
    }
}
