//! `/v1/queues`: live counts, pause and resume, per-queue defaults.

use std::time::Duration;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoResponses, ToSchema};

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Json, check_at_least_one, int, parse_duration};
use super::keys::{KeyAndJson, QueuePath};
use crate::db::queues::{self, Change, QueueSettings, QueueStats as Queue, RateLimit};
use crate::model;

/// Every known queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    /// Queues by name.
    pub queues: Vec<Queue>,
}

/// List queues with live counts (a few seconds old on a database with many live jobs).
#[utoipa::path(
    get, path = "/v1/queues", tag = "queues",
    responses(
        (status = 200, description = "Queues", body = QueueList),
    ),
)]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<QueueList>> {
    // With a million live jobs counting them takes ~0.5 s: then the refresher's counts
    // (seconds old) answer, and no request counts them again.
    let rows = match state.cached_queue_stats() {
        Some(rows) => rows.as_ref().clone(),
        None => queues::queue_stats(state.pool(), None).await?,
    };
    Ok(Json(QueueList { queues: rows }))
}

/// The 400 of a route on one queue whose `{name}` is not a name ([`QueuePath`]).
#[derive(IntoResponses)]
#[allow(dead_code)] // Documentation only: the answer is an `ApiError`.
enum InvalidName {
    #[response(status = 400, description = "Invalid name")]
    InvalidName(ErrorBody),
}

async fn one(state: &AppState, name: &str) -> ApiResult<Queue> {
    queues::queue_stats(state.pool(), Some(name))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("queue {name:?} not found")))
}

/// One queue with live counts. A queue is known once it has jobs, recent failures or
/// settings.
#[utoipa::path(
    get, path = "/v1/queues/{name}", tag = "queues",
    params(QueuePath),
    responses(
        (status = 200, description = "The queue", body = Queue),
        InvalidName,
        (status = 404, description = "Unknown queue", body = ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    QueuePath(name): QueuePath,
) -> ApiResult<Json<Queue>> {
    Ok(Json(one(&state, &name).await?))
}

/// Pause a queue: workers stop claiming from it; its jobs stay.
#[utoipa::path(
    post, path = "/v1/queues/{name}/pause", tag = "queues",
    params(QueuePath),
    responses(
        (status = 200, description = "Paused", body = Queue),
        InvalidName,
    ),
)]
pub async fn pause(
    State(state): State<AppState>,
    QueuePath(name): QueuePath,
) -> ApiResult<Json<Queue>> {
    set_paused(&state, &name, true).await
}

/// Resume a paused queue.
#[utoipa::path(
    post, path = "/v1/queues/{name}/resume", tag = "queues",
    params(QueuePath),
    responses(
        (status = 200, description = "Resumed", body = Queue),
        InvalidName,
    ),
)]
pub async fn resume(
    State(state): State<AppState>,
    QueuePath(name): QueuePath,
) -> ApiResult<Json<Queue>> {
    set_paused(&state, &name, false).await
}

/// Pauses or resumes `name` and answers with the queue.
async fn set_paused(state: &AppState, name: &str, paused: bool) -> ApiResult<Json<Queue>> {
    queues::set_paused(state.pool(), name, paused).await?;
    if paused {
        tracing::info!(queue = %name, "queue paused");
    } else {
        tracing::info!(queue = %name, "queue resumed");
    }
    Ok(Json(one(state, name).await?))
}

/// Queue defaults to change; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSettingsRequest {
    /// Default attempts for jobs that set none, 1..=1000.
    #[serde(default, deserialize_with = "int::opt_i32")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_attempts: Option<i32>,
    /// Default per-attempt timeout ("60s").
    #[schema(pattern = r"^(?![0.]*(ms|s|m|h)?$)[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)?$")]
    pub timeout: Option<String>,
    /// Backoff base ("1s").
    #[schema(pattern = r"^(?![0.]*(ms|s|m|h)?$)[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)?$")]
    pub backoff_base: Option<String>,
    /// Backoff cap ("60s").
    #[schema(pattern = r"^(?![0.]*(ms|s|m|h)?$)[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)?$")]
    pub backoff_max: Option<String>,
    /// Keep completed jobs in history.
    pub keep_completed: Option<bool>,
    /// Most jobs running at once across the cluster; `null` removes the limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub concurrency_limit: Option<Option<i32>>,
    /// Job starts per period ("10/s", "100/m", "20/10s"); `null` removes the limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = r"^[1-9][0-9]{0,8}/([1-9][0-9]{0,5}(ms|s|m|h|d)|s|m|h|d)$")]
    pub rate_limit: Option<Option<String>>,
    /// Starts allowed at once when the rate allows (default: the rate); needs rate_limit.
    #[schema(minimum = 1)]
    pub burst: Option<i32>,
    /// Most running jobs sharing a concurrency key; `null` removes the limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub key_concurrency: Option<Option<i32>>,
}

/// Tells an absent field (None) from an explicit null (Some(None)).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn limit_change(field: &str, value: Option<Option<i32>>) -> ApiResult<Change<i32>> {
    match value {
        None => Ok(Change::Keep),
        Some(None) => Ok(Change::Clear),
        Some(Some(n)) => check_at_least_one(field, n).map(Change::Set),
    }
}

fn positive(field: &str, value: &Option<String>) -> ApiResult<Option<Duration>> {
    value
        .as_deref()
        // Stored in whole milliseconds: a positive sub-millisecond value becomes 1ms.
        .map(|t| parse_duration(field, t, true).map(|d| d.max(Duration::from_millis(1))))
        .transpose()
}

/// Set a queue's defaults (creates its settings row if needed).
#[utoipa::path(
    patch, path = "/v1/queues/{name}", tag = "queues",
    params(QueuePath),
    request_body = QueueSettingsRequest,
    responses(
        (status = 200, description = "Updated", body = Queue),
        (status = 400, description = "Invalid name or field", body = ErrorBody),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    KeyAndJson(QueuePath(name), req): KeyAndJson<QueuePath, QueueSettingsRequest>,
) -> ApiResult<Json<Queue>> {
    if let Some(n) = req.max_attempts {
        crate::model::limits::check_max_attempts("max_attempts", n)?;
    }
    let rate_limit = match &req.rate_limit {
        None => {
            if req.burst.is_some() {
                return Err(ApiError::invalid("burst", "needs rate_limit"));
            }
            Change::Keep
        }
        Some(None) => Change::Clear,
        Some(Some(text)) => {
            let (limit, period) =
                model::parse_rate(text).map_err(|r| ApiError::invalid("rate_limit", r))?;
            if let Some(b) = req.burst {
                check_at_least_one("burst", b)?;
            }
            Change::Set(RateLimit {
                limit,
                period,
                burst: req.burst,
            })
        }
    };
    let concurrency_limit = limit_change("concurrency_limit", req.concurrency_limit)?;
    let key_concurrency = limit_change("key_concurrency", req.key_concurrency)?;
    let settings = QueueSettings {
        concurrency_limit,
        rate_limit,
        key_concurrency,
        max_attempts: req.max_attempts,
        timeout: positive("timeout", &req.timeout)?,
        backoff_base: positive("backoff_base", &req.backoff_base)?,
        backoff_max: positive("backoff_max", &req.backoff_max)?,
        keep_completed: req.keep_completed,
    };
    queues::upsert_settings(state.pool(), &name, &settings).await?;
    tracing::info!(queue = %name, "queue settings updated");
    Ok(Json(one(&state, &name).await?))
}
