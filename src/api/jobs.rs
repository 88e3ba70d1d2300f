//! `/v1/jobs`: enqueue one or a batch, get (optionally waiting for the end), list with
//! filters and a cursor, cancel, retry, attempts.
//!
//! Every field is validated here, before the database is touched, with the same rules
//! as `ordinaut jobs enqueue`; a batch is refused whole if any job in it is invalid.

use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tracing::Instrument;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Json, Path, Query, RequestId, int, parse_duration, parse_id};
use crate::db::attempts::AttemptView as Attempt;
use crate::db::due_work::{self, CancelResult, NewJob};
use crate::db::events::Received;
use crate::db::history::{self, JobFilter, JobView as Job};
use crate::db::workflows::StepOfJob;
use crate::kinds::registry::KindsView;
use crate::model::{self, JobState, limits};

/// Pattern of queue and kind names (see `model::validate_name`).
pub use crate::model::NAME_PATTERN;
/// Longest `?wait=`; longer waits are cut to it.
pub const MAX_WAIT: Duration = Duration::from_secs(120);
/// Default and largest page size of the list.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1000;
/// Default of [`super::ApiSettings::search_scan_budget`]: a page of a rare search
/// examines at most this many live and this many finished jobs (tens of milliseconds
/// of JSON path or text matching; docs/BENCHMARKS.md).
pub const SEARCH_SCAN_BUDGET: i64 = 10_000;
/// Longest unique key (the Idempotency-Key header, visible ASCII, so bytes = characters).
const MAX_UNIQUE_KEY: usize = limits::MAX_KEY_CHARS;

/// A job's state, as the API names it: [`JobState`] (the OpenAPI component keeps the
/// name `StateName`).
pub type StateName = JobState;

impl JobState {
    /// Itself. `StateName` used to be a copy of [`JobState`]; this keeps code written
    /// against the copy (the dashboard pages) compiling until it drops the call.
    pub fn as_state(self) -> JobState {
        self
    }
}

/// A job with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDetail {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// Its finished attempts, oldest first.
    pub attempts: Vec<Attempt>,
    /// For a workflow step: its workflow, its name there and its dependencies with
    /// their states (what a waiting step waits on).
    pub workflow_step: Option<StepOfJob>,
}

/// A job to enqueue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// Queue name (default: the kind's `queue`, else `default`).
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", example = "emails")]
    pub queue: Option<String>,
    /// Kind, as declared in ordinaut.toml.
    #[schema(
        pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
        example = "send_email"
    )]
    pub kind: String,
    /// JSON payload handed to the handler (default `{}`). Any JSON value; strings must
    /// not contain U+0000 (Postgres jsonb cannot store it).
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
    /// -100..=100, lower runs first (default 0).
    #[serde(default, deserialize_with = "int::opt_i32")]
    #[schema(minimum = -100, maximum = 100)]
    pub priority: Option<i32>,
    /// Run at this RFC 3339 time (with `delay` too: that long after it).
    #[schema(format = DateTime, example = "2030-01-01T09:00:00Z")]
    pub run_at: Option<String>,
    /// Run after this delay: seconds, or a number with ms/s/m/h ("30s", "5m").
    #[schema(pattern = r"^[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)?$", example = "30s")]
    pub delay: Option<String>,
    /// Attempts in all, 1..=1000 (default: the queue's, else WORKER_MAX_RETRIES + 1).
    #[serde(default, deserialize_with = "int::opt_i32")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_attempts: Option<i32>,
    /// Idempotency key: while a live job has it, enqueueing again returns that job. The
    /// Idempotency-Key header, when given, takes precedence.
    #[schema(min_length = 1, max_length = 512)]
    pub unique_key: Option<String>,
    /// Per-attempt timeout, like `delay` but above zero ("60s").
    #[schema(
        pattern = r"^(?![0.]*(ms|s|m|h)?$)[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)?$",
        example = "60s"
    )]
    pub timeout: Option<String>,
    /// Free-form metadata; `request_id` is filled in from X-Request-Id unless set.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Jobs sharing this key obey their queue's key_concurrency (e.g. one scan per target).
    #[schema(min_length = 1, max_length = 512)]
    pub concurrency_key: Option<String>,
    /// Accept a kind no live worker serves (workers that start after the first
    /// enqueues). Default false.
    #[serde(default)]
    pub allow_unknown_kind: bool,
}

/// What an enqueue did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Enqueued {
    /// The job's id: new, or the existing live job's for a repeated unique key.
    pub id: Uuid,
    /// True when an existing live job was returned instead of a new one.
    pub duplicate: bool,
}

/// A batch of jobs to enqueue, all or nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The jobs (at least one, at most API_MAX_BATCH).
    #[schema(min_items = 1)]
    pub jobs: Vec<EnqueueRequest>,
}

/// Result of a batch, one entry per input job in input order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// Per job.
    pub jobs: Vec<Enqueued>,
}

/// True when a string or key anywhere in `value` holds U+0000, which Postgres text and
/// jsonb cannot store.
pub(crate) fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Parses an RFC 3339 timestamp field.
pub(crate) fn parse_time(field: &str, text: &str) -> ApiResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::invalid(
                field,
                format!("{text:?} is not an RFC 3339 timestamp ({e})"),
            )
        })
}

/// Validates a queue or kind name field.
pub(crate) fn check_name(field: &str, name: &str) -> ApiResult<()> {
    Ok(model::check_name(field, name)?)
}

/// Turns a request into a job, naming fields as `{prefix}{field}`.
fn build_job(
    state: &AppState,
    kinds: &KindsView,
    req: EnqueueRequest,
    prefix: &str,
    request_id: &str,
    idempotency_key: Option<&str>,
) -> ApiResult<NewJob> {
    let f = |name: &str| format!("{prefix}{name}");
    check_name(&f("kind"), &req.kind)?;
    let (queue, defaults) = kinds.resolve(&req.kind, req.queue);
    check_name(&f("queue"), &queue)?;
    let payload = req.payload.unwrap_or_else(|| serde_json::json!({}));
    let size = serde_json::to_string(&payload)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    let limit = state.settings().max_payload_bytes;
    if size > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "{}: {size} bytes exceeds the limit of {limit} bytes",
            f("payload")
        )));
    }
    let priority = model::validate_priority(req.priority.or(defaults.priority).unwrap_or(0))
        .map_err(|r| ApiError::invalid(f("priority"), r))?;
    let base = req
        .run_at
        .as_deref()
        .map(|t| parse_time(&f("run_at"), t))
        .transpose()?;
    let run_at = match &req.delay {
        // With both, the delay counts from run_at.
        Some(d) => {
            let d = parse_duration(&f("delay"), d, false)?;
            let d = chrono::Duration::from_std(d).map_err(|e| ApiError::invalid(f("delay"), e))?;
            Some(base.unwrap_or_else(Utc::now) + d)
        }
        None => base,
    };
    if let Some(n) = req.max_attempts {
        limits::check_max_attempts(&f("max_attempts"), n)?;
    }
    // The body's key is checked even when the header (already checked) overrides it.
    if let Some(k) = &req.unique_key {
        limits::check_key(&f("unique_key"), k)?;
        if k.contains('\0') {
            return Err(ApiError::invalid(
                f("unique_key"),
                "must not contain U+0000",
            ));
        }
    }
    let unique_key = idempotency_key.map(str::to_owned).or(req.unique_key);
    let timeout = match &req.timeout {
        Some(t) => Some(parse_duration(&f("timeout"), t, true)?),
        None => None,
    };
    if has_nul(&payload) {
        return Err(ApiError::invalid(
            f("payload"),
            "strings must not contain U+0000",
        ));
    }
    let check_unknown =
        state.settings().config.registry.check_unknown_kinds && !req.allow_unknown_kind;
    kinds
        .check(&req.kind, &payload, check_unknown)
        .map_err(|r| ApiError::invalid(f(&r.field), r.reason))?;
    let mut metadata = req.metadata.unwrap_or_default();
    if metadata.iter().any(|(k, v)| k.contains('\0') || has_nul(v)) {
        return Err(ApiError::invalid(
            f("metadata"),
            "strings must not contain U+0000",
        ));
    }
    // http kinds send it as X-Request-Id: a value no header can carry would make every
    // attempt fail.
    if let Some(serde_json::Value::String(id)) = metadata.get("request_id")
        && reqwest::header::HeaderValue::from_str(id).is_err()
    {
        return Err(ApiError::invalid(
            f("metadata.request_id"),
            "must be printable ASCII (no CR, LF or other control characters)",
        ));
    }
    crate::otel::check_metadata(&metadata).map_err(|r| ApiError::invalid(f("metadata"), r))?;
    metadata
        .entry("request_id")
        .or_insert_with(|| serde_json::Value::String(request_id.to_owned()));
    let mut job = NewJob::new(queue, req.kind, payload);
    job.priority = priority;
    job.run_at = run_at;
    job.max_attempts = req.max_attempts.or(defaults.max_attempts);
    job.unique_key = unique_key;
    job.timeout = timeout;
    job.metadata = serde_json::Value::Object(metadata);
    if let Some(k) = &req.concurrency_key {
        limits::check_key(&f("concurrency_key"), k)?;
    }
    job.concurrency_key = req.concurrency_key;
    Ok(job)
}

/// The enqueue's `send` span (a child of the server span), with its context stored in
/// every job; without an exporter, the request's own `traceparent` is stored instead.
fn traced(jobs: &mut [NewJob], headers: &HeaderMap) -> tracing::Span {
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let span = crate::otel::enqueue_span(
        jobs.iter().map(|j| j.queue.as_str()),
        &ids,
        crate::otel::Parent::Current,
    );
    let outside = crate::otel::from_headers(headers);
    let carrier = crate::otel::enqueue_context(&span, outside.as_ref());
    crate::otel::stamp_jobs(jobs, carrier.as_ref());
    span
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(k)
            if (1..=MAX_UNIQUE_KEY).contains(&k.len())
                && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(k))
        }
        _ => Err(ApiError::invalid(
            "Idempotency-Key",
            format!("must be 1 to {MAX_UNIQUE_KEY} visible ASCII characters"),
        )),
    }
}

async fn insert(state: &AppState, jobs: &[NewJob]) -> ApiResult<Vec<Enqueued>> {
    let results =
        due_work::enqueue_many(state.pool(), jobs, state.settings().default_max_attempts).await?;
    for (job, r) in jobs.iter().zip(&results) {
        if !r.duplicate {
            crate::metrics::job_enqueued(&job.queue, &job.kind);
        }
    }
    Ok(results
        .into_iter()
        .map(|r| Enqueued {
            id: r.id,
            duplicate: r.duplicate,
        })
        .collect())
}

/// Enqueue a job.
///
/// With an `Idempotency-Key` header (or `unique_key`), repeating the request while the
/// first job is live returns that job (200, `duplicate: true`) instead of a new one.
#[utoipa::path(
    post, path = "/v1/jobs", tag = "jobs",
    request_body = EnqueueRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Idempotency key: 1 to 512 visible ASCII characters; takes precedence over `unique_key`", pattern = r"^[!-~]{1,512}$")),
    responses(
        (status = 201, description = "Enqueued", body = Enqueued),
        (status = 200, description = "A live job with this key exists; returned instead", body = Enqueued),
        (status = 400, description = "Malformed JSON, an invalid field, a payload not matching the kind's payload_schema (field named), or a kind no live worker serves", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "Body or payload too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn enqueue(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    Json(req): Json<EnqueueRequest>,
) -> ApiResult<(StatusCode, Json<Enqueued>)> {
    let key = idempotency_key(&headers)?;
    let kinds = state.kinds_view([req.kind.as_str()]).await?;
    let mut job = build_job(&state, &kinds, req, "", &request_id.0, key)?;
    let span = traced(std::slice::from_mut(&mut job), &headers);
    let mut results = insert(&state, std::slice::from_ref(&job))
        .instrument(span)
        .await?;
    let result = results
        .pop()
        .ok_or_else(|| ApiError::Internal("enqueue returned no result".to_owned()))?;
    let status = if result.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(result)))
}

/// Enqueue a batch of jobs in one statement, all or nothing.
#[utoipa::path(
    post, path = "/v1/jobs/batch", tag = "jobs",
    request_body = BatchRequest,
    responses(
        (status = 201, description = "All enqueued (duplicates of live unique keys marked)", body = BatchResponse),
        (status = 400, description = "Malformed JSON, an invalid job (named by index) or too many jobs", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "Body or a payload too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn enqueue_batch(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    Json(req): Json<BatchRequest>,
) -> ApiResult<(StatusCode, Json<BatchResponse>)> {
    let max = state.settings().max_batch;
    if req.jobs.is_empty() {
        return Err(ApiError::invalid("jobs", "must contain at least one job"));
    }
    if req.jobs.len() > max {
        return Err(ApiError::invalid(
            "jobs",
            format!("{} jobs exceed the batch limit of {max}", req.jobs.len()),
        ));
    }
    let kinds = state
        .kinds_view(req.jobs.iter().map(|j| j.kind.as_str()))
        .await?;
    let mut jobs = req
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, j)| {
            build_job(
                &state,
                &kinds,
                j,
                &format!("jobs[{i}]."),
                &request_id.0,
                None,
            )
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let span = traced(&mut jobs, &headers);
    let results = insert(&state, &jobs).instrument(span).await?;
    Ok((StatusCode::CREATED, Json(BatchResponse { jobs: results })))
}

/// Options of a job read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Wait up to this long (longer waits are cut to 120s) for the job to finish: answers
    /// as soon as it is completed, failed or cancelled, else with its state when the wait
    /// ends. A job of a queue with keep_completed = false that completes during the wait
    /// is answered as completed, without output (it is not kept).
    #[param(pattern = r"^[0-9]{1,6}(\.[0-9]{1,3})?(ms|s|m|h)?$", example = "30s")]
    pub wait: Option<String>,
}

/// Get a job, live or finished, with its attempts; optionally wait for it to finish. A
/// workflow step still waiting for its dependencies is a job in state `waiting`.
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id"), GetQuery),
    responses(
        (status = 200, description = "The job", body = JobDetail),
        (status = 400, description = "Invalid id or wait", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
) -> ApiResult<Json<JobDetail>> {
    let id = parse_id("id", &id)?;
    let wait = match &q.wait {
        Some(w) => parse_duration("wait", w, false)?
            .min(MAX_WAIT)
            .min(state.settings().max_wait),
        None => Duration::ZERO,
    };
    let job = if wait.is_zero() {
        read_job(&state, id).await?
    } else {
        wait_for_end(&state, id, wait).await?
    };
    let job = job.ok_or_else(|| ApiError::NotFound(format!("job {id} not found")))?;
    let attempts = crate::db::attempts::list_attempts(state.pool(), id).await?;
    // Only a workflow's job pays for the step lookup.
    let workflow_step = match job.workflow_id {
        Some(_) => crate::db::workflows::step_of_job(state.pool(), id).await?,
        None => None,
    };
    Ok(Json(JobDetail {
        job,
        attempts,
        workflow_step,
    }))
}

async fn read_job(state: &AppState, id: Uuid) -> ApiResult<Option<Job>> {
    Ok(history::get_job(state.pool(), id).await?)
}

/// Re-reads the job whenever an event names it (or events may have been missed) until
/// it is terminal or `wait` has passed. Subscribes before the first read, so a change
/// between that read and the wait cannot be missed.
///
/// A job seen live that then vanishes completed in a queue with `keep_completed =
/// false` (failed and cancelled jobs are always kept, and retention never touches live
/// ones): it is answered as completed, without output, rather than as not found.
async fn wait_for_end(state: &AppState, id: Uuid, wait: Duration) -> ApiResult<Option<Job>> {
    let mut rx = state.subscribe().await;
    let deadline = Instant::now() + wait;
    let mut last_live: Option<Job> = None;
    loop {
        let job = read_job(state, id).await?;
        match job {
            None => return Ok(last_live.map(completed_unkept)),
            Some(j) if j.state.is_terminal() => return Ok(Some(j)),
            Some(j) => last_live = Some(j),
        }
        let woke = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => false,
            _ = state.stopping().cancelled() => false,
            woke = changed(&mut rx, id) => woke,
        };
        if !woke {
            return Ok(read_job(state, id)
                .await?
                .or_else(|| last_live.map(completed_unkept)));
        }
    }
}

/// The last live view of a job that completed and was not kept.
fn completed_unkept(mut job: Job) -> Job {
    job.state = StateName::Completed;
    job.lease_owner = None;
    job.finished_at = Some(Utc::now());
    job
}

/// Resolves when an event names `id`, or when events may have been missed.
async fn changed(rx: &mut broadcast::Receiver<Received>, id: Uuid) -> bool {
    loop {
        match rx.recv().await {
            Ok(Received::Events(batch)) if batch.iter().any(|e| e.id == id) => return true,
            Ok(Received::Events(_)) => {}
            Ok(Received::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => return true,
            // The sender lives as long as the state; never reached in practice.
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

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
        (status = 400, description = "Invalid filter", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<JobPage>> {
    if let Some(queue) = &q.queue {
        check_name("queue", queue)?;
    }
    if let Some(kind) = &q.kind {
        check_name("kind", kind)?;
    }
    let created_after = q
        .created_after
        .as_deref()
        .map(|t| parse_time("created_after", t))
        .transpose()?;
    let created_before = q
        .created_before
        .as_deref()
        .map(|t| parse_time("created_before", t))
        .transpose()?;
    let before_id = q
        .cursor
        .as_deref()
        .map(|c| {
            Uuid::parse_str(c)
                .map_err(|_| ApiError::invalid("cursor", "not a cursor returned by this API"))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("{limit} is out of range 1..={MAX_LIMIT}"),
        ));
    }
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
        queue: q.queue,
        kind: q.kind,
        schedule_id,
        payload_path: q.payload,
        metadata_path: q.metadata,
        text: q.text,
        state: q.state.map(|s| s.as_str().to_owned()),
        created_after,
        created_before,
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
        None => (jobs.len() as i64 == limit)
            .then(|| jobs.last().map(|j| j.id.to_string()))
            .flatten(),
    };
    Ok(Json(JobPage {
        jobs,
        next_cursor,
        searched_to,
    }))
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
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "Cancelled or cancel requested", body = CancelResponse),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "Already finished", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<CancelResponse>> {
    let id = parse_id("id", &id)?;
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
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "Re-enqueued", body = RetryResponse),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "Not failed or cancelled (a waiting workflow step, or one that ended without running: retry its workflow), or its unique key is taken", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RetryResponse>> {
    let id = parse_id("id", &id)?;
    due_work::retry(state.pool(), id).await?;
    Ok(Json(RetryResponse {
        id,
        state: StateName::Available,
    }))
}

/// A job's attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptList {
    /// Finished attempts, oldest first.
    pub attempts: Vec<Attempt>,
}

/// A job's finished attempts with their errors and captured output.
#[utoipa::path(
    get, path = "/v1/jobs/{id}/attempts", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "Attempts, oldest first", body = AttemptList),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn attempts(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<AttemptList>> {
    let id = parse_id("id", &id)?;
    let attempts = crate::db::attempts::list_attempts(state.pool(), id).await?;
    // A completed job of a queue that keeps no history is gone but its attempts stay.
    if attempts.is_empty() && history::get_job(state.pool(), id).await?.is_none() {
        return Err(ApiError::NotFound(format!("job {id} not found")));
    }
    Ok(Json(AttemptList { attempts }))
}
