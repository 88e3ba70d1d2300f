//! `/v1/schedules`: durable cron schedules, with the same validation as the CLI and
//! ordinaut.toml (scheduler::validate) and the same store (db::schedules).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoResponses, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Json, int, parse_duration};
use super::keys::SchedulePath;
use crate::db::schedules::{self, ScheduleRow as Schedule};
use crate::scheduler::{self, Firer, Origin, SaveError, ScheduleInput};

/// Every schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    /// Schedules by name.
    pub schedules: Vec<Schedule>,
}

/// Create or replace a schedule (by name).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// Unique name.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    pub name: String,
    /// 5-field crontab, 6 fields with seconds first, or @hourly/@daily/@weekly/@monthly/@yearly.
    #[schema(example = "30 2 * * *")]
    pub cron: String,
    /// IANA timezone (default: TZ).
    #[schema(example = "Europe/Berlin")]
    pub timezone: Option<String>,
    /// Job queue.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    pub queue: String,
    /// Job kind.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    pub kind: String,
    /// Job payload.
    pub payload: Option<serde_json::Value>,
    /// Job priority, -100..=100 (lower runs first).
    #[serde(default, deserialize_with = "int::opt_i32")]
    #[schema(minimum = -100, maximum = 100)]
    pub priority: Option<i32>,
    /// Job max attempts, 1..=1000.
    #[serde(default, deserialize_with = "int::opt_i32")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_attempts: Option<i32>,
    /// Job timeout ("60s"), greater than zero.
    #[schema(pattern = r"^(?![0.]*(ms|s|m|h)?$)[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)?$")]
    pub timeout: Option<String>,
    /// Job unique key.
    #[schema(min_length = 1, max_length = 512)]
    pub unique_key: Option<String>,
    /// allow (default) or skip while the previous job of this schedule is live.
    #[schema(pattern = "^(allow|skip)$")]
    pub overlap: Option<String>,
    /// Misfire grace ("30s"; default SCHEDULER_MISFIRE_GRACE_TIME).
    #[schema(pattern = r"^[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)?$")]
    pub misfire_grace: Option<String>,
}

/// The errors of a route on one schedule that its `{name}` decides: not a name (400,
/// [`SchedulePath`]) or no such schedule (404, [`one`]).
#[derive(IntoResponses)]
#[allow(dead_code)] // Documentation only: the answers are `ApiError`s.
enum ScheduleLookupErrors {
    #[response(status = 400, description = "Invalid name")]
    InvalidName(ErrorBody),
    #[response(status = 404, description = "Unknown schedule")]
    NotFound(ErrorBody),
}

async fn one(state: &AppState, name: &str, fires: bool) -> ApiResult<Schedule> {
    let row = schedules::get(state.pool(), name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("schedule {name:?} not found")))?;
    let id = row.id;
    let mut s = row;
    if fires {
        s.state.recent_fires = Some(schedules::recent_fires(state.pool(), id, 20).await?);
    }
    Ok(s)
}

/// List schedules.
#[utoipa::path(
    get, path = "/v1/schedules", tag = "schedules",
    responses(
        (status = 200, description = "Schedules by name", body = ScheduleList),
    ),
)]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<ScheduleList>> {
    let rows = schedules::list(state.pool()).await?;
    Ok(Json(ScheduleList { schedules: rows }))
}

/// Create a schedule, or replace the one with this name. A changed cron or timezone
/// restarts the cadence from its next fire time. A schedule declared in ordinaut.toml
/// is not replaced (409): change it in the file, or delete it first.
#[utoipa::path(
    post, path = "/v1/schedules", tag = "schedules",
    request_body = ScheduleRequest,
    responses(
        (status = 200, description = "Saved", body = Schedule),
        (status = 400, description = "Invalid field (cron, timezone, names, ...)", body = ErrorBody),
        (status = 409, description = "The name belongs to a schedule declared in ordinaut.toml (`schedule_declared`; the message names the scheduler that syncs it)", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    Json(req): Json<ScheduleRequest>,
) -> ApiResult<Json<Schedule>> {
    let input = ScheduleInput {
        name: req.name.clone(),
        cron: req.cron,
        timezone: req.timezone,
        queue: req.queue,
        kind: req.kind,
        payload: req.payload,
        priority: req.priority.unwrap_or(0),
        max_attempts: req.max_attempts,
        timeout: req
            .timeout
            .as_deref()
            .map(|t| parse_duration("timeout", t, true))
            .transpose()?,
        unique_key: req.unique_key,
        overlap: req.overlap,
        misfire_grace: req
            .misfire_grace
            .as_deref()
            .map(|t| parse_duration("misfire_grace", t, false))
            .transpose()?,
    };
    let config = &state.settings().config;
    let spec = scheduler::validate(&input, config)?;
    match scheduler::save(state.pool(), &spec, Origin::Api).await {
        Ok(_) => {}
        Err(SaveError::Invalid(r)) => return Err(r.into()),
        Err(SaveError::Declared(message)) => {
            return Err(ApiError::Conflict {
                code: "schedule_declared",
                message,
            });
        }
        Err(SaveError::Db(e)) => return Err(e.into()),
    }
    tracing::info!(schedule = %spec.name, "schedule saved");
    Ok(Json(one(&state, &spec.name, false).await?))
}

/// One schedule with its recent fires (including skipped misfires).
#[utoipa::path(
    get, path = "/v1/schedules/{name}", tag = "schedules",
    params(SchedulePath),
    responses(
        (status = 200, description = "The schedule", body = Schedule),
        ScheduleLookupErrors,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    SchedulePath(name): SchedulePath,
) -> ApiResult<Json<Schedule>> {
    Ok(Json(one(&state, &name, true).await?))
}

/// Delete a schedule (its jobs stay).
#[utoipa::path(
    delete, path = "/v1/schedules/{name}", tag = "schedules",
    params(SchedulePath),
    responses(
        (status = 204, description = "Deleted"),
        ScheduleLookupErrors,
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    SchedulePath(name): SchedulePath,
) -> ApiResult<axum::http::StatusCode> {
    schedules::delete(state.pool(), &name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Pause a schedule: no fires until resumed (missed ones are not replayed).
#[utoipa::path(
    post, path = "/v1/schedules/{name}/pause", tag = "schedules",
    params(SchedulePath),
    responses(
        (status = 200, description = "Paused", body = Schedule),
        ScheduleLookupErrors,
    ),
)]
pub async fn pause(
    State(state): State<AppState>,
    SchedulePath(name): SchedulePath,
) -> ApiResult<Json<Schedule>> {
    schedules::set_paused(state.pool(), &name, true, None).await?;
    Ok(Json(one(&state, &name, false).await?))
}

/// Resume a schedule from its next cron time.
#[utoipa::path(
    post, path = "/v1/schedules/{name}/resume", tag = "schedules",
    params(SchedulePath),
    responses(
        (status = 200, description = "Resumed", body = Schedule),
        ScheduleLookupErrors,
    ),
)]
pub async fn resume(
    State(state): State<AppState>,
    SchedulePath(name): SchedulePath,
) -> ApiResult<Json<Schedule>> {
    scheduler::resume(state.pool(), &name).await?;
    Ok(Json(one(&state, &name, false).await?))
}

/// A job made by a trigger.
#[derive(Debug, Serialize, ToSchema)]
pub struct Triggered {
    /// The new job's id.
    pub job_id: Uuid,
}

/// Enqueue one job from the schedule now, without moving its cadence.
#[utoipa::path(
    post, path = "/v1/schedules/{name}/trigger", tag = "schedules",
    params(SchedulePath),
    responses(
        (status = 200, description = "Enqueued", body = Triggered),
        ScheduleLookupErrors,
    ),
)]
pub async fn trigger(
    State(state): State<AppState>,
    SchedulePath(name): SchedulePath,
) -> ApiResult<Json<Triggered>> {
    let firer = Firer::new(
        state.pool().clone(),
        scheduler::fire_options(&state.settings().config),
    );
    let job_id = firer.trigger(&name).await?;
    Ok(Json(Triggered { job_id }))
}
