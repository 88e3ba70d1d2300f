//! Liveness (`/health`), readiness (`/ready`) and Prometheus metrics (`/metrics`).

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Json;
use crate::db;

/// How long readiness may wait for the database.
const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

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
    match tokio::time::timeout(DB_CHECK_TIMEOUT, db::readiness(state.pool())).await {
        Ok(Ok(db::Readiness::Ready)) => Ok(Json(Status { status: "ready" })),
        Ok(Ok(db::Readiness::SchemaNotCurrent)) => Err(ApiError::Unavailable(format!(
            "database schema is not at migration {}",
            db::latest_known_migration()
        ))),
        Ok(Ok(db::Readiness::NotWritable(state))) => Err(ApiError::Unavailable(format!(
            "database server is {state}; waiting for a primary"
        ))),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable("database unreachable".to_owned()))
        }
        Err(_) => Err(ApiError::Unavailable(
            "database did not answer in time".to_owned(),
        )),
    }
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
