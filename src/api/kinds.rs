//! `GET /v1/kinds`: the kinds live workers serve, with their defaults, payload schema
//! and serving workers (the kinds registry of migration 0014).

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiResult;
use super::extract::Json;
use crate::kinds::registry::{self, KindListing};

/// The kinds registry.
#[derive(Debug, Serialize, ToSchema)]
pub struct KindList {
    /// Kinds some worker published within the registry window, by name.
    pub kinds: Vec<KindListing>,
    /// The window, in seconds: a kind stays listed (and accepted) this long after its
    /// last publish.
    pub window_seconds: f64,
    /// Whether enqueues of kinds not listed are refused (once any kind is listed).
    pub check_unknown_kinds: bool,
}

/// List the kinds workers serve.
///
/// Workers publish their kinds at start and every minute. A kind is listed while some
/// worker published it within the registry window; `workers[].alive` is false for a
/// worker that has since exited.
#[utoipa::path(
    get, path = "/v1/kinds", tag = "kinds",
    responses(
        (status = 200, description = "Kinds with their serving workers", body = KindList),
    ),
)]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<KindList>> {
    let config = &state.settings().config;
    let rows = crate::db::kinds::list(state.pool(), config.registry.window).await?;
    Ok(Json(KindList {
        kinds: registry::listings(rows),
        window_seconds: config.registry.window.as_secs_f64(),
        check_unknown_kinds: config.registry.check_unknown_kinds,
    }))
}
