//! `GET /v1/audit`: who ran which bulk action or delete, on what, touching how many jobs.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiResult, ErrorBody};
use super::extract::{Json, Query, check_at_least_one, check_range};
use super::paging::next_key;
use crate::db::audit::{self, AuditRow};

/// Page of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// `next_before` of the previous page.
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// Page size, 1..=500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Recorded bulk actions and deletes, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Entries.
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next page; absent on the last.
    pub next_before: Option<i64>,
}

/// One recorded action.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: which configured token, by position (`API_TOKENS #1`).
    pub actor: String,
    /// bulk_cancel, bulk_retry, bulk_delete or delete.
    pub action: String,
    /// The filter, or the job id.
    #[schema(value_type = Object)]
    pub target: serde_json::Value,
    /// Jobs matching when confirmed.
    pub matched: i64,
    /// Jobs changed.
    pub affected: i64,
    /// End; absent while running or if cut short.
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> AuditEntry {
        AuditEntry {
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            target: r.target,
            matched: r.matched,
            affected: r.affected,
            finished_at: r.finished_at,
        }
    }
}

/// The audit log: who ran which bulk action or delete, on what, touching how many jobs.
#[utoipa::path(
    get, path = "/v1/audit", tag = "jobs",
    params(AuditQuery),
    responses(
        (status = 200, description = "Entries, newest first", body = AuditPage),
        (status = 400, description = "Invalid cursor or limit", body = ErrorBody),
    ),
)]
pub async fn audit_log(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let limit = check_range("limit", q.limit.unwrap_or(50), 1..=500)?;
    if let Some(b) = q.before {
        check_at_least_one("before", b)?;
    }
    let rows = audit::list_entries(state.pool(), q.before, limit).await?;
    let next_before = next_key(&rows, limit, |r| r.id);
    Ok(Json(AuditPage {
        entries: rows.into_iter().map(AuditEntry::from).collect(),
        next_before,
    }))
}
