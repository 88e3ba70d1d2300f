//! `POST /v1/pull/heartbeat`: extend the leases of held attempts in one statement.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::super::AppState;
use super::super::error::ApiResult;
use super::super::extract::{Json, int};
use super::{InvalidRequest, MAX_JOBS, attempt_number, check_count, lease_from};
use crate::db::due_work;

/// One claimed attempt you hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeldAttempt {
    /// Job id.
    pub id: Uuid,
    /// The attempt number from the claim.
    #[serde(deserialize_with = "attempt_number")]
    #[schema(minimum = 1)]
    pub attempt: i32,
}

/// Leases to extend.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The lease owner from the claim.
    pub lease_owner: Uuid,
    /// Jobs to extend, each with its attempt from the claim, 1 to 1000.
    #[schema(min_items = 1, max_items = 1000)]
    pub jobs: Vec<HeldAttempt>,
    /// New lease length from now in seconds, 2..=3600 (default WORKER_LEASE_SECONDS).
    #[serde(default, deserialize_with = "int::opt_u32")]
    #[schema(minimum = 2, maximum = 3600)]
    pub lease_seconds: Option<u32>,
}

/// A lease that was extended.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExtendedLease {
    /// Job id.
    pub id: Uuid,
    /// An operator asked to cancel this job: stop it and fail it with `cancelled: true`.
    pub cancel_requested: bool,
}

/// Result of a heartbeat.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatResponse {
    /// Leases extended.
    pub extended: Vec<ExtendedLease>,
    /// Jobs that are no longer yours at that attempt (rescued after lease expiry,
    /// finished, or claimed again since): stop working on them; their results will be
    /// refused.
    pub lost: Vec<Uuid>,
}

/// Extend the leases of jobs you are running (one statement for all of them).
#[utoipa::path(
    post, path = "/v1/pull/heartbeat", tag = "pull",
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "Leases extended; lost ones listed", body = HeartbeatResponse),
        InvalidRequest,
    ),
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    Json(req): Json<HeartbeatRequest>,
) -> ApiResult<Json<HeartbeatResponse>> {
    check_count("jobs", "list", req.jobs.len(), MAX_JOBS)?;
    let held: Vec<(Uuid, i32)> = req.jobs.iter().map(|j| (j.id, j.attempt)).collect();
    let lease = lease_from(&state, req.lease_seconds)?;
    let mut conn = state
        .pool()
        .acquire()
        .await
        .map_err(crate::db::Error::from)?;
    let extended = due_work::extend_leases(&mut conn, req.lease_owner, &held, lease).await?;
    drop(conn);
    let lost = held
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !extended.iter().any(|e| e.id == *id))
        .collect();
    Ok(Json(HeartbeatResponse {
        extended: extended
            .into_iter()
            .map(|e| ExtendedLease {
                id: e.id,
                cancel_requested: e.cancel_requested,
            })
            .collect(),
        lost,
    }))
}
