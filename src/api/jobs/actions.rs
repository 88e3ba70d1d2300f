//! Actions on one job: cancel, retry, run now, delete.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{JobLookupErrors, StateName, job_not_found};
use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{Access, Json};
use crate::api::keys::JobPath;
use crate::db::audit;
use crate::db::bulk::{self, DeleteResult};
use crate::db::due_work::{self, CancelResult};

/// The refusal of a read-only token on the routes here that change a job (403, from
/// `extract::require_token`).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Documentation only: the answer is an `ApiError`.
enum ReadOnlyRefused {
    #[response(status = 403, description = "Read-only token")]
    ReadOnly(ErrorBody),
}

/// What a cancel did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelResponse {
    /// Job id.
    pub id: Uuid,
    /// `cancelled` (it was waiting) or `cancel_requested` (it is running; its worker
    /// stops it).
    #[schema(example = "cancelled")]
    pub result: String,
}

/// Cancel a job: at once if waiting; a running one is stopped by its worker. A workflow
/// step waiting for its dependencies ends cancelled without running; its dependents follow
/// their failure policies (cancelled over `cancel` edges, run over `ignore` edges).
#[utoipa::path(
    post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(JobPath),
    responses(
        (status = 200, description = "Cancelled or cancel requested", body = CancelResponse),
        JobLookupErrors,
        (status = 409, description = "Already finished", body = ErrorBody),
    ),
)]
pub async fn cancel(
    State(state): State<AppState>,
    JobPath(id): JobPath,
) -> ApiResult<Json<CancelResponse>> {
    let result = match due_work::cancel(state.pool(), id).await? {
        CancelResult::Cancelled => "cancelled",
        CancelResult::Requested => "cancel_requested",
        CancelResult::AlreadyFinished(s) => {
            return Err(ApiError::Conflict {
                code: "already_finished",
                message: format!("job {id} already finished ({s})"),
            });
        }
    };
    Ok(Json(CancelResponse {
        id,
        result: result.to_owned(),
    }))
}

/// Result of a retry.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryResponse {
    /// Job id.
    pub id: Uuid,
    /// Always `available`.
    pub state: StateName,
}

/// Re-enqueue a failed or cancelled job with a fresh budget of attempts.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    params(JobPath),
    responses(
        (status = 200, description = "Re-enqueued", body = RetryResponse),
        JobLookupErrors,
        (status = 409, description = "Not failed or cancelled (a waiting workflow step, or one that ended without running: retry its workflow), or its unique key is taken", body = ErrorBody),
    ),
)]
pub async fn retry(
    State(state): State<AppState>,
    JobPath(id): JobPath,
) -> ApiResult<Json<RetryResponse>> {
    due_work::retry(state.pool(), id).await?;
    Ok(Json(RetryResponse {
        id,
        state: StateName::Available,
    }))
}

/// Delete a finished or waiting job with its attempts (a running job must be cancelled
/// first). Recorded in the audit log.
#[utoipa::path(
    delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(JobPath),
    responses(
        (status = 204, description = "Deleted"),
        JobLookupErrors,
        ReadOnlyRefused,
        (status = 409, description = "The job is running", body = ErrorBody),
    ),
)]
pub async fn delete_job(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    JobPath(id): JobPath,
) -> ApiResult<StatusCode> {
    match bulk::delete_job(state.pool(), id).await? {
        DeleteResult::Deleted => {
            let target = serde_json::json!({ "job_id": id });
            let entry =
                audit::insert_entry(state.pool(), &access.actor(), "delete", &target, 1).await?;
            audit::update_entry(state.pool(), entry, 1, true).await?;
            tracing::info!(job_id = %id, actor = %access.actor(), "job deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        DeleteResult::Running => Err(ApiError::Conflict {
            code: "running",
            message: format!("job {id} is running; cancel it first"),
        }),
    }
}

/// Result of a run-now.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunNowResponse {
    /// Job id.
    pub id: Uuid,
    /// Always `available`.
    pub state: StateName,
}

/// Run a job that waits for a future run_at (delayed, backing off, or scheduled) now.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/run-now", tag = "jobs",
    params(JobPath),
    responses(
        (status = 200, description = "Due now", body = RunNowResponse),
        JobLookupErrors,
        ReadOnlyRefused,
        (status = 409, description = "Not waiting for a future time", body = ErrorBody),
    ),
)]
pub async fn run_now(
    State(state): State<AppState>,
    JobPath(id): JobPath,
) -> ApiResult<Json<RunNowResponse>> {
    if bulk::run_now(state.pool(), id).await? {
        return Ok(Json(RunNowResponse {
            id,
            state: StateName::Available,
        }));
    }
    match crate::db::history::get_job(state.pool(), id).await? {
        None => Err(job_not_found(id)),
        Some(j) => Err(ApiError::Conflict {
            code: "not_scheduled",
            message: format!(
                "job {id} is {}; only a job waiting for a future time can run now",
                j.state
            ),
        }),
    }
}
