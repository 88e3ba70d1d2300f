//! `GET /v1/jobs`: live and finished jobs, newest first, with filters, a bounded
//! search and a cursor.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Job, StateName, check_filter, check_name};
use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{Json, Query, check_range};
use crate::api::openapi::InvalidFilter;
use crate::api::paging::{next_key, parse_cursor};
use crate::db::history::{self, JobFilter, JobMatch};

/// Default and largest page size of the list.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1000;
/// Default of [`crate::api::ApiSettings::search_scan_budget`]: a page of a rare search
/// examines at most this many live and this many finished jobs (tens of milliseconds
/// of JSON path or text matching; docs/BENCHMARKS.md).
pub const SEARCH_SCAN_BUDGET: i64 = 10_000;

/// Filters and cursor of the job list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this queue.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    pub queue: Option<String>,
    /// Only this kind.
    #[param(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    pub kind: Option<String>,
    /// Only this state (`waiting`: workflow steps waiting for their dependencies).
    pub state: Option<StateName>,
    /// Created at or after this RFC 3339 time.
    #[param(format = DateTime)]
    pub created_after: Option<String>,
    /// Created before this RFC 3339 time.
    #[param(format = DateTime)]
    pub created_before: Option<String>,
    /// Only jobs fired by the schedule of this name.
    pub schedule: Option<String>,
    /// Only jobs whose payload matches this SQL/JSON path: a predicate
    /// (`$.port > 1024`) when it is true, any other path (`$.tags[*] ? (@ == "prod")`)
    /// when it finds something.
    pub payload: Option<String>,
    /// Only jobs whose metadata matches this SQL/JSON path (as `payload`).
    pub metadata: Option<String>,
    /// Only jobs with this text (case-insensitive) in payload, metadata or last error.
    pub text: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
    /// Page size, 1..=1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    /// The jobs.
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Present only on a partial page of a search (`payload`, `metadata`, `text`): the
    /// search examined its budget of jobs (10,000 live and 10,000 finished by default)
    /// before finding `limit` matches, and stopped. Every job newer than or equal to
    /// this id was searched and `jobs` holds the matches among them, possibly none;
    /// older jobs were not searched yet. Continue with it as `cursor` (it equals
    /// `next_cursor`).
    #[schema(format = Uuid)]
    pub searched_to: Option<String>,
}

/// List jobs, live and finished, and workflow steps waiting for their dependencies
/// (state `waiting`), newest first, with filters and a cursor. A search (`payload`,
/// `metadata`, `text`) examines a bounded number of jobs per page: when that ends
/// before `limit` matches are found the page is partial (`searched_to`).
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        InvalidFilter,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<JobPage>> {
    let (created_after, created_before) =
        check_filter(&q.queue, &q.kind, &q.created_after, &q.created_before)?;
    let before_id = parse_cursor(q.cursor.as_deref())?;
    let limit = check_range("limit", q.limit.unwrap_or(DEFAULT_LIMIT), 1..=MAX_LIMIT)?;
    let schedule_id = match q.schedule.as_deref() {
        None => None,
        Some(name) => {
            check_name("schedule", name)?;
            match crate::db::schedules::get(state.pool(), name).await? {
                Some(s) => Some(s.id),
                None => {
                    return Err(ApiError::invalid(
                        "schedule",
                        format!("no schedule is named {name:?}"),
                    ));
                }
            }
        }
    };
    for (field, path) in [("payload", &q.payload), ("metadata", &q.metadata)] {
        if let Some(path) = path
            && let Err(reason) = history::check_json_path(state.pool(), path).await?
        {
            return Err(ApiError::invalid(
                field,
                format!("is not a JSON path ({reason})"),
            ));
        }
    }
    if q.text
        .as_deref()
        .is_some_and(|t| t.is_empty() || t.len() > 200)
    {
        return Err(ApiError::invalid("text", "must be 1 to 200 bytes"));
    }
    let filter = JobFilter {
        matching: JobMatch {
            queue: q.queue,
            kind: q.kind,
            state: q.state.map(|s| s.as_str().to_owned()),
            created_after,
            created_before,
        },
        schedule_id,
        payload_path: q.payload,
        metadata_path: q.metadata,
        text: q.text,
        before_id,
        limit,
    };
    let page =
        history::list_jobs_budgeted(state.pool(), &filter, state.settings().search_scan_budget)
            .await?;
    let jobs = page.jobs;
    let searched_to = page.searched_to.map(|id| id.to_string());
    let next_cursor = match &searched_to {
        Some(mark) => Some(mark.clone()),
        None => next_key(&jobs, limit, |j| j.id.to_string()),
    };
    Ok(Json(JobPage {
        jobs,
        next_cursor,
        searched_to,
    }))
}
