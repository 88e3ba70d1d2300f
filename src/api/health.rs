//! Liveness (`/health`), readiness (`/ready`) and Prometheus metrics (`/metrics`).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Json;

/// Status body of `/health` and `/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok` or `ready`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: the process answers. Never touches the database.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "Alive", body = Status)))]
pub async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: the database answers, is a writable primary, and its schema is at this
/// build's migration.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "Database unreachable, not a writable primary, or schema not current", body = ErrorBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> ApiResult<Json<Status>> {
    // At most one check (one connection) per second, shared by every probe: a flood of
    // /ready cannot take the connections /v1 needs.
    let health = state.fresh_health().await;
    if health.ready() {
        return Ok(Json(Status { status: "ready" }));
    }
    Err(ApiError::Unavailable(
        health
            .error
            .unwrap_or_else(|| "database not checked yet".to_owned()),
    ))
}

/// Prometheus metrics in the text exposition format. Queue gauges come from the cached
/// snapshot (refreshed every few seconds by one background task), so a scrape never
/// touches the database.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "Missing or wrong token (only with API_METRICS_AUTH=true)", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.inner.metrics.render(),
    )
}
