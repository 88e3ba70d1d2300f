//! The JSON twins of what the dashboard shows and does beyond the other `/v1` routes:
//! throughput and wait statistics, deleting a job, actions on every job matching a
//! filter (with the exact count first), and the audit log of those actions.
//!
//! Validation lives here once; the dashboard (`crate::ui`) calls these handlers.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Access, Json, Path, Query, parse_id};
use super::jobs::{StateName, check_name, parse_time};
use crate::db::audit::{self, AuditRow};
use crate::db::bulk::{self, Action, BulkFilter, Cursor, DeleteResult};
use crate::db::stats;

/// Jobs changed per statement of a bulk action: small enough that each batch's
/// transaction is short (one index range of due_work or job_history), large enough
/// that a million-row action is a thousand statements, not a million.
pub const BULK_BATCH: i64 = 1000;
/// Longest window of `/v1/stats` (what the rollups keep).
const MAX_MINUTES: i32 = stats::MAX_MINUTES;

/// Window of the statistics.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Whole minutes before the current one, 1..=1440 (default 60): the window is the
    /// current minute and these.
    #[param(minimum = 1, maximum = 1440)]
    pub minutes: Option<i32>,
}

/// Finished jobs in one minute.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Minute {
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Completed (queues that keep completed jobs only).
    pub completed: i64,
    /// Failed for good.
    pub failed: i64,
}

/// Wait from due to start, in seconds, over the window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Waits {
    /// Jobs measured.
    pub jobs: i64,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// One queue's figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueFigures {
    /// Queue.
    pub queue: String,
    /// Minutes with finished jobs, oldest first (minutes without are absent).
    pub per_minute: Vec<Minute>,
    /// Completed in the window.
    pub completed: i64,
    /// Failed in the window.
    pub failed: i64,
    /// Wait percentiles of the jobs finished in the window.
    pub wait: Option<Waits>,
    /// Live worker processes serving this queue.
    pub workers: i64,
}

/// Throughput and waits per queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// The window in minutes.
    pub minutes: i32,
    /// Queues with finished jobs in the window or a live worker, by name.
    pub queues: Vec<QueueFigures>,
    /// Wait percentiles per minute, all queues together, oldest first (minutes without
    /// finished jobs are absent).
    pub waits_per_minute: Vec<MinuteWaits>,
    /// Live worker processes.
    pub workers_alive: i64,
}

/// Wait from due to start, in seconds, of the jobs finished in one minute.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MinuteWaits {
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// Completed and failed jobs per queue and minute, and wait-time percentiles.
#[utoipa::path(
    get, path = "/v1/stats", tag = "jobs",
    params(StatsQuery),
    responses(
        (status = 200, description = "Figures per queue", body = Stats),
        (status = 400, description = "Invalid window", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    Query(q): Query<StatsQuery>,
) -> ApiResult<Json<Stats>> {
    let minutes = q.minutes.unwrap_or(60);
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(ApiError::invalid(
            "minutes",
            format!("{minutes} is out of range 1..={MAX_MINUTES}"),
        ));
    }
    let (counts, waits, minute_waits) = stats::window(state.pool(), minutes).await?;
    let waits_per_minute = minute_waits
        .into_iter()
        .map(|m| MinuteWaits {
            minute: m.minute,
            p50: m.p50,
            p95: m.p95,
            p99: m.p99,
        })
        .collect();
    let workers = crate::db::workers::list_workers(state.pool()).await?;
    let mut queues: std::collections::BTreeMap<String, QueueFigures> = Default::default();
    // In place: one entry per queue, however many minutes it has.
    fn entry<'a>(
        queues: &'a mut std::collections::BTreeMap<String, QueueFigures>,
        name: &str,
    ) -> &'a mut QueueFigures {
        queues
            .entry(name.to_owned())
            .or_insert_with(|| QueueFigures {
                queue: name.to_owned(),
                per_minute: Vec::new(),
                completed: 0,
                failed: 0,
                wait: None,
                workers: 0,
            })
    }
    for c in counts {
        let f = entry(&mut queues, &c.queue);
        f.completed += c.completed;
        f.failed += c.failed;
        f.per_minute.push(Minute {
            minute: c.minute,
            completed: c.completed,
            failed: c.failed,
        });
    }
    for w in waits {
        entry(&mut queues, &w.queue).wait = Some(Waits {
            jobs: w.jobs,
            p50: w.p50,
            p95: w.p95,
            p99: w.p99,
        });
    }
    for w in &workers {
        for name in &w.queues {
            entry(&mut queues, name).workers += 1;
        }
    }
    Ok(Json(Stats {
        minutes,
        queues: queues.into_values().collect(),
        waits_per_minute,
        workers_alive: workers.len() as i64,
    }))
}

/// Delete a finished or waiting job with its attempts (a running job must be cancelled
/// first). Recorded in the audit log.
#[utoipa::path(
    delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is running", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_job(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_id("id", &id)?;
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
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "Due now", body = RunNowResponse),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "Not waiting for a future time", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn run_now(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunNowResponse>> {
    let id = parse_id("id", &id)?;
    if bulk::run_now(state.pool(), id).await? {
        return Ok(Json(RunNowResponse {
            id,
            state: StateName::Available,
        }));
    }
    match crate::db::history::get_job(state.pool(), id).await? {
        None => Err(ApiError::NotFound(format!("job {id} not found"))),
        Some(j) => Err(ApiError::Conflict {
            code: "not_scheduled",
            message: format!(
                "job {id} is {}; only a job waiting for a future time can run now",
                j.state
            ),
        }),
    }
}

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
    if let Some(q) = &req.queue {
        check_name("queue", q)?;
    }
    if let Some(k) = &req.kind {
        check_name("kind", k)?;
    }
    let created_after = req
        .created_after
        .as_deref()
        .map(|t| parse_time("created_after", t))
        .transpose()?;
    let created_before = req
        .created_before
        .as_deref()
        .map(|t| parse_time("created_before", t))
        .transpose()?;
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
        queue: req.queue.clone(),
        kind: req.kind.clone(),
        state: req.state.map(|s| s.as_str().to_owned()),
        created_after,
        created_before,
    };
    Ok((action, filter, newest))
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
        (status = 400, description = "Invalid action or filter", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
    ),
    security(("bearer" = []))
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
        (status = 400, description = "Invalid action or filter", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Read-only token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
    ),
    security(("bearer" = []))
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
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn audit_log(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("{limit} is out of range 1..=500"),
        ));
    }
    if let Some(b) = q.before
        && b < 1
    {
        return Err(ApiError::invalid(
            "before",
            format!("{b} must be at least 1"),
        ));
    }
    let rows = audit::list_entries(state.pool(), q.before, limit).await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(Json(AuditPage {
        entries: rows.into_iter().map(AuditEntry::from).collect(),
        next_before,
    }))
}
