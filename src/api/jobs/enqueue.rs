//! `POST /v1/jobs` and `/v1/jobs/batch`: every field validated here, before the
//! database is touched, with the same rules as `ordinaut jobs enqueue`; a batch is
//! refused whole if any job in it is invalid.

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{check_name, check_no_nul, check_size, has_nul, parse_time};
use crate::api::AppState;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{Json, RequestId, int, parse_duration};
use crate::db::due_work::{self, NewJob};
use crate::kinds::registry::KindsView;
use crate::model::{self, limits};

/// Longest unique key (the Idempotency-Key header, visible ASCII, so bytes = characters).
const MAX_UNIQUE_KEY: usize = limits::MAX_KEY_CHARS;

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
    check_size(&f("payload"), &payload, state.settings().max_payload_bytes)?;
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
    check_no_nul(&f("payload"), &payload)?;
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
        (status = 413, description = "Body or payload too large", body = ErrorBody),
    ),
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
        (status = 413, description = "Body or a payload too large", body = ErrorBody),
    ),
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
