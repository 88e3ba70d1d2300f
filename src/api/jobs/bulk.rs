//! `/v1/jobs/bulk`: cancel, retry or delete every job matching a filter, with the exact
//! count first, in short batches, recorded in the audit log.

use axum::extract::{Extension, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoResponses, ToSchema};
use uuid::Uuid;

use super::{StateName, check_filter};
use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{Access, Json, parse_id};
use crate::db::audit;
use crate::db::bulk::{self, Action, BulkFilter, Cursor};
use crate::db::history::JobMatch;

/// Jobs changed per statement of a bulk action: small enough that each batch's
/// transaction is short (one index range of due_work or job_history), large enough
/// that a million-row action is a thousand statements, not a million.
pub const BULK_BATCH: i64 = 1000;

/// Which jobs a bulk action applies to; every field optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// cancel (live jobs), retry (failed and cancelled jobs) or delete (finished and
    /// waiting jobs).
    #[schema(pattern = "^(cancel|retry|delete)$", example = "retry")]
    pub action: String,
    /// Only this queue.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    pub queue: Option<String>,
    /// Only this kind.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    pub kind: Option<String>,
    /// Only this state.
    pub state: Option<StateName>,
    /// Created at or after this RFC 3339 time.
    #[schema(format = DateTime)]
    pub created_after: Option<String>,
    /// Created before this RFC 3339 time.
    #[schema(format = DateTime)]
    pub created_before: Option<String>,
    /// Only these jobs (a selection of at most 1000 ids), within the rest of the filter.
    #[schema(max_items = 1000)]
    pub ids: Option<Vec<Uuid>>,
    /// The `newest` a count returned: only jobs at or below it are touched, so jobs
    /// enqueued after the count are left alone. Absent: counted now.
    #[schema(format = Uuid)]
    pub newest: Option<String>,
}

/// Checks a bulk request; returns its action and filter.
pub fn parse_bulk(req: &BulkRequest) -> ApiResult<(Action, BulkFilter, Option<Uuid>)> {
    let action: Action = req
        .action
        .parse()
        .map_err(|e: String| ApiError::invalid("action", e))?;
    let (created_after, created_before) = check_filter(
        &req.queue,
        &req.kind,
        &req.created_after,
        &req.created_before,
    )?;
    let newest = req
        .newest
        .as_deref()
        .map(|n| parse_id("newest", n))
        .transpose()?;
    if req.state == Some(StateName::Waiting) {
        return Err(ApiError::invalid(
            "state",
            "waiting workflow steps are not acted on in bulk; cancel or retry their workflows",
        ));
    }
    if let Some(ids) = &req.ids
        && ids.len() > BULK_BATCH as usize
    {
        return Err(ApiError::invalid(
            "ids",
            format!("{} ids exceed the limit of {BULK_BATCH}", ids.len()),
        ));
    }
    let filter = BulkFilter {
        ids: req.ids.clone(),
        matching: JobMatch {
            queue: req.queue.clone(),
            kind: req.kind.clone(),
            state: req.state.map(|s| s.as_str().to_owned()),
            created_after,
            created_before,
        },
    };
    Ok((action, filter, newest))
}

/// The refusals both bulk routes share: a request [`parse_bulk`] refuses (400), a
/// read-only token (403, `extract::require_token`).
#[derive(IntoResponses)]
#[allow(dead_code)] // Documentation only: the answers are `ApiError`s.
enum BulkErrors {
    #[response(status = 400, description = "Invalid action or filter")]
    Invalid(ErrorBody),
    #[response(status = 403, description = "Read-only token")]
    ReadOnly(ErrorBody),
}

/// How many jobs a bulk action would touch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkCount {
    /// Jobs matching now.
    pub matched: i64,
    /// Pass back as `newest` to act on exactly these (absent when none match).
    pub newest: Option<Uuid>,
}

/// Count the jobs a bulk action would touch, without changing anything.
#[utoipa::path(
    post, path = "/v1/jobs/bulk/count", tag = "jobs",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "The count", body = BulkCount),
        BulkErrors,
    ),
)]
pub async fn bulk_count(
    State(state): State<AppState>,
    Json(req): Json<BulkRequest>,
) -> ApiResult<Json<BulkCount>> {
    let (action, filter, _) = parse_bulk(&req)?;
    let counted = bulk::count_matching(state.pool(), action, &filter, None).await?;
    Ok(Json(BulkCount {
        matched: counted.matched,
        newest: counted.newest,
    }))
}

/// What a bulk action did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    /// Its audit log entry.
    pub audit_id: i64,
    /// Jobs matching when it started.
    pub matched: i64,
    /// Jobs it changed (fewer when some changed state meanwhile).
    pub affected: i64,
}

/// Cancel, retry or delete every job matching a filter, in batches of 1000 (each its own
/// short transaction), recorded in the audit log.
#[utoipa::path(
    post, path = "/v1/jobs/bulk", tag = "jobs",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "Done", body = BulkResult),
        BulkErrors,
    ),
)]
pub async fn bulk_run(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Json(req): Json<BulkRequest>,
) -> ApiResult<Json<BulkResult>> {
    let (action, filter, newest) = parse_bulk(&req)?;
    // Counted again within the caller's bound: the jobs they saw that still match.
    let counted = bulk::count_matching(state.pool(), action, &filter, newest).await?;
    // The bound: what the caller saw counted, else the newest matching now.
    let bound = newest.or(counted.newest);
    let mut target = serde_json::to_value(&req)
        .map_err(|e| ApiError::Internal(format!("bulk request does not serialise: {e}")))?;
    if let Some(map) = target.as_object_mut() {
        map.retain(|k, v| k != "action" && !v.is_null());
    }
    let action_name = format!("bulk_{}", action.as_str());
    let pool = state.pool();
    let entry = audit::insert_entry(
        pool,
        &access.actor(),
        &action_name,
        &target,
        counted.matched,
    )
    .await?;
    let mut affected = 0i64;
    if let Some(bound) = bound {
        let mut cursor = Cursor::start();
        while !cursor.is_done() {
            let (n, next) =
                bulk::run_batch(pool, action, &filter, bound, cursor, BULK_BATCH).await?;
            affected += n as i64;
            cursor = next;
            audit::update_entry(pool, entry, affected, cursor.is_done()).await?;
        }
    } else {
        audit::update_entry(pool, entry, 0, true).await?;
    }
    tracing::info!(
        action = %action_name,
        actor = %access.actor(),
        matched = counted.matched,
        affected,
        "bulk action done"
    );
    Ok(Json(BulkResult {
        audit_id: entry,
        matched: counted.matched,
        affected,
    }))
}
