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
use crate::metrics::{QueueDepth, queue_depth};

/// How long readiness and the metrics refresh may wait for the database.
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

/// Readiness: the database answers and its schema is at this build's migration.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "Database unreachable or schema not current", body = ErrorBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> ApiResult<Json<Status>> {
    match tokio::time::timeout(DB_CHECK_TIMEOUT, db::is_ready(state.pool())).await {
        Ok(Ok(true)) => Ok(Json(Status { status: "ready" })),
        Ok(Ok(false)) => Err(ApiError::Unavailable(format!(
            "database schema is not at migration {}",
            db::latest_known_migration()
        ))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable("database unreachable".to_owned()))
        }
        Err(_) => Err(ApiError::Unavailable(
            "database did not answer in time".to_owned(),
        )),
    }
}

/// Prometheus metrics in the text exposition format. Queue gauges and the schedule lag
/// are refreshed from the database on each scrape (a scrape still answers if the database does not).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "Missing or wrong token (only with API_METRICS_AUTH=true)", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match tokio::time::timeout(
        DB_CHECK_TIMEOUT,
        db::queues::queue_stats(state.pool(), None),
    )
    .await
    {
        Ok(Ok(queues)) => {
            for q in queues {
                queue_depth(
                    &q.name,
                    QueueDepth {
                        available: q.available,
                        scheduled: q.scheduled,
                        running: q.running,
                        failed_recently: q.failed_recently,
                        oldest_wait_seconds: q.oldest_wait_seconds,
                        paused: q.paused,
                    },
                );
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot refresh queue gauges"),
        Err(_) => tracing::warn!("cannot refresh queue gauges: database did not answer in time"),
    }
    match tokio::time::timeout(DB_CHECK_TIMEOUT, db::schedules::lag_seconds(state.pool())).await {
        Ok(Ok(lag)) => crate::metrics::schedule_lag(lag),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot refresh the schedule lag gauge"),
        Err(_) => {
            tracing::warn!("cannot refresh the schedule lag gauge: database did not answer in time")
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.inner.metrics.render(),
    )
}
