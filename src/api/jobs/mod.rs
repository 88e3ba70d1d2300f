//! `/v1/jobs`: the job as the API shows it and the rules every job route shares.
//!
//! Files by concern: this one holds the wire types of a job and the field checks the
//! routes share; `enqueue` (one or a batch), `list` (filters, search, cursor),
//! `detail` (one job, optionally waiting for its end, and its attempts), `actions`
//! (cancel, retry, run now, delete) and `bulk` (actions on every job matching a
//! filter) hold their routes with their wire types.

mod actions;
mod bulk;
mod detail;
mod enqueue;
mod list;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
pub use crate::db::attempts::AttemptView as Attempt;
pub use crate::db::history::JobView as Job;
use crate::db::workflows::StepOfJob;
use crate::model::{self, JobState};

pub use self::{actions::*, bulk::*, detail::*, enqueue::*, list::*};

/// Pattern of queue and kind names (see `model::validate_name`).
pub use crate::model::NAME_PATTERN;
/// Longest `?wait=`; longer waits are cut to it.
pub const MAX_WAIT: Duration = Duration::from_secs(120);

/// A job's state, as the API names it: [`JobState`] (the OpenAPI component keeps the
/// name `StateName`).
pub type StateName = JobState;

/// The errors of a route on one job that its `{id}` decides: not a UUID (400,
/// [`JobPath`](crate::api::keys::JobPath)) or no such job (404).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Documentation only: the answers are `ApiError`s.
enum JobLookupErrors {
    #[response(status = 400, description = "Invalid id")]
    InvalidId(ErrorBody),
    #[response(status = 404, description = "No such job")]
    NotFound(ErrorBody),
}

/// A job with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDetail {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// Its finished attempts, oldest first.
    pub attempts: Vec<Attempt>,
    /// For a workflow step: its workflow, its name there and its dependencies with
    /// their states (what a waiting step waits on).
    pub workflow_step: Option<StepOfJob>,
}

/// The 404 of a route on one job whose `{id}` names no job.
pub(crate) fn job_not_found(id: uuid::Uuid) -> ApiError {
    ApiError::NotFound(format!("job {id} not found"))
}

/// True when a string or key anywhere in `value` holds U+0000, which Postgres text and
/// jsonb cannot store.
pub(crate) fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// 400 when a string or key anywhere in `value` holds U+0000 (see [`has_nul`]).
pub(crate) fn check_no_nul(field: &str, value: &serde_json::Value) -> ApiResult<()> {
    if has_nul(value) {
        return Err(ApiError::invalid(field, "strings must not contain U+0000"));
    }
    Ok(())
}

/// 413 when `value` as JSON text is longer than `limit` bytes (payloads, outputs).
pub(crate) fn check_size(field: &str, value: &serde_json::Value, limit: usize) -> ApiResult<()> {
    let size = serde_json::to_string(value)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "{field}: {size} bytes exceeds the limit of {limit} bytes"
        )));
    }
    Ok(())
}

/// Parses an RFC 3339 timestamp field.
pub(crate) fn parse_time(field: &str, text: &str) -> ApiResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::invalid(
                field,
                format!("{text:?} is not an RFC 3339 timestamp ({e})"),
            )
        })
}

/// A filter's creation-time bounds: at or after, before.
pub(crate) type CreatedBetween = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Checks the filter fields the job list and bulk actions share (queue and kind names,
/// the creation-time bounds, in this order); returns the bounds.
pub(crate) fn check_filter(
    queue: &Option<String>,
    kind: &Option<String>,
    created_after: &Option<String>,
    created_before: &Option<String>,
) -> ApiResult<CreatedBetween> {
    if let Some(queue) = queue {
        check_name("queue", queue)?;
    }
    if let Some(kind) = kind {
        check_name("kind", kind)?;
    }
    let time =
        |field: &str, t: &Option<String>| t.as_deref().map(|t| parse_time(field, t)).transpose();
    Ok((
        time("created_after", created_after)?,
        time("created_before", created_before)?,
    ))
}

/// Validates a queue or kind name field.
pub(crate) fn check_name(field: &str, name: &str) -> ApiResult<()> {
    Ok(model::check_name(field, name)?)
}
