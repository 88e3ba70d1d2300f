//! `/v1/workflows`: jobs submitted together with dependencies (db::workflows, migration
//! 0016). Validation is the SQL function's, so the API, the CLI and SQL callers get the
//! same messages.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, IntoResponses, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Json, Query};
use super::keys::{KeyAndJson, WorkflowPath};
use super::openapi::InvalidFilter;
use super::paging::{next_key, parse_cursor};
use crate::db::workflows::{self, StepRef, Workflow, WorkflowSummary};

/// What a failed or cancelled dependency means for its dependent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The dependent is cancelled (default).
    Cancel,
    /// The dependent runs anyway.
    Ignore,
    /// The dependent runs only if such a dependency failed; otherwise it is skipped.
    Cleanup,
}

/// A dependency: a step name, or a name with its own failure policy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Dependency {
    /// Name of a step of the same workflow.
    Name(String),
    /// Name and the policy of this edge.
    Edge {
        /// Step name.
        name: String,
        /// Policy of this edge.
        #[serde(skip_serializing_if = "Option::is_none")]
        on_failure: Option<OnFailure>,
    },
}

/// One job of a workflow.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// Name within the workflow (required in `jobs`; group members default to `group-N`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", example = "clone")]
    pub name: Option<String>,
    /// Queue name.
    pub queue: String,
    /// Kind, as declared in ordinaut.toml.
    pub kind: String,
    /// A JSON object. Dependents find their dependencies' outcomes under `_workflow`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// -100..=100, lower runs first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Attempts in all, 1..=1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i64>,
    /// Per-attempt timeout ("60s").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Free-form metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// Concurrency key (the queue's key_concurrency applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// Steps this one waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// Policy of this step's edges (default: the workflow's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
}

/// A workflow: `jobs` with dependencies, or the batch shorthand `group` + `callback`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRequest {
    /// Name (1-200 characters).
    #[schema(example = "scan example.com")]
    pub name: String,
    /// Free-form metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// Default policy of every edge (default cancel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// The steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Vec<StepRequest>>,
    /// Shorthand: jobs run in parallel, then `callback` once all of them ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Vec<StepRequest>>,
    /// Shorthand: runs after every `group` job ended, whatever the outcome, with their
    /// outcomes under `_workflow.deps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<StepRequest>,
}

/// Steps to add to a running workflow.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    /// New steps; they may depend on any step of the workflow.
    pub jobs: Vec<StepRequest>,
}

/// A submitted workflow.
#[derive(Debug, Serialize, ToSchema)]
pub struct Submitted {
    /// Workflow id.
    pub id: Uuid,
}

/// Steps added by an append.
#[derive(Debug, Serialize, ToSchema)]
pub struct Appended {
    /// The new steps and their job ids.
    pub jobs: Vec<StepRef>,
}

/// The outcome of a retry.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    /// Jobs re-enqueued (their cancelled dependents wait again).
    pub retried: i32,
}

/// The outcome of a cancel.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cancelled {
    /// Always `cancelled`: waiting steps and jobs are cancelled, running jobs are stopping.
    pub result: String,
}

/// Filters of `GET /v1/workflows`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// running, completed, failed or cancelled.
    pub state: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
    /// Page size, 1..=1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// A page of workflows, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowPage {
    /// The workflows.
    pub workflows: Vec<WorkflowSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The errors of a route on one workflow that its `{id}` decides: not a UUID (400,
/// [`WorkflowPath`]) or no such workflow (404).
#[derive(IntoResponses)]
#[allow(dead_code)] // Documentation only: the answers are `ApiError`s.
enum WorkflowLookupErrors {
    #[response(status = 400, description = "Invalid id")]
    InvalidId(ErrorBody),
    #[response(status = 404, description = "No such workflow")]
    NotFound(ErrorBody),
}

fn spec_value<T: Serialize>(req: &T) -> ApiResult<serde_json::Value> {
    let mut spec = serde_json::to_value(req).map_err(|e| ApiError::Internal(e.to_string()))?;
    workflows::normalize_spec(&mut spec)?;
    Ok(spec)
}

/// Submit a workflow, all or nothing. Jobs without dependencies are available at once;
/// the others wait (state `waiting`, not claimable) until their dependencies ended.
#[utoipa::path(
    post, path = "/v1/workflows", tag = "workflows",
    request_body = WorkflowRequest,
    responses(
        (status = 201, description = "Submitted", body = Submitted),
        (status = 400, description = "Invalid workflow: a field, an unknown dependency or a cycle, named", body = ErrorBody),
    ),
)]
pub async fn submit(
    State(state): State<AppState>,
    Json(req): Json<WorkflowRequest>,
) -> ApiResult<(StatusCode, Json<Submitted>)> {
    let spec = spec_value(&req)?;
    let id = workflows::submit(state.pool(), &spec, state.settings().default_max_attempts).await?;
    Ok((StatusCode::CREATED, Json(Submitted { id })))
}

/// List workflows, newest first.
#[utoipa::path(
    get, path = "/v1/workflows", tag = "workflows",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of workflows", body = WorkflowPage),
        InvalidFilter,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<WorkflowPage>> {
    if let Some(s) = q.state.as_deref()
        && !["running", "completed", "failed", "cancelled"].contains(&s)
    {
        return Err(ApiError::invalid(
            "state",
            format!("{s:?} is not one of running, completed, failed, cancelled"),
        ));
    }
    let before = parse_cursor(q.cursor.as_deref())?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be in 1..=1000"));
    }
    let workflows = workflows::list(state.pool(), q.state.as_deref(), before, limit).await?;
    let next_cursor = next_key(&workflows, limit, |w| w.id.to_string());
    Ok(Json(WorkflowPage {
        workflows,
        next_cursor,
    }))
}

/// A workflow with its steps: states, dependencies (the graph), outputs and errors.
#[utoipa::path(
    get, path = "/v1/workflows/{id}", tag = "workflows",
    params(WorkflowPath),
    responses(
        (status = 200, description = "The workflow", body = Workflow),
        WorkflowLookupErrors,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    WorkflowPath(id): WorkflowPath,
) -> ApiResult<Json<Workflow>> {
    Ok(Json(workflows::get(state.pool(), id).await?))
}

/// Cancel a workflow: waiting steps and jobs at once; running jobs are stopped by their
/// workers.
#[utoipa::path(
    post, path = "/v1/workflows/{id}/cancel", tag = "workflows",
    params(WorkflowPath),
    responses(
        (status = 200, description = "Cancelled", body = Cancelled),
        WorkflowLookupErrors,
    ),
)]
pub async fn cancel(
    State(state): State<AppState>,
    WorkflowPath(id): WorkflowPath,
) -> ApiResult<Json<Cancelled>> {
    workflows::cancel(state.pool(), id).await?;
    Ok(Json(Cancelled {
        result: "cancelled".to_owned(),
    }))
}

/// Retry a workflow's failed and cancelled steps; the steps cancelled or skipped
/// because of them wait again and run.
#[utoipa::path(
    post, path = "/v1/workflows/{id}/retry", tag = "workflows",
    params(WorkflowPath),
    responses(
        (status = 200, description = "Retried", body = Retried),
        WorkflowLookupErrors,
    ),
)]
pub async fn retry(
    State(state): State<AppState>,
    WorkflowPath(id): WorkflowPath,
) -> ApiResult<Json<Retried>> {
    let retried = workflows::retry(state.pool(), id).await?;
    Ok(Json(Retried { retried }))
}

/// Append steps to a running workflow (dynamic fan-out: N steps and a join that
/// depends on them). A running step can call this for its own workflow
/// (`payload._workflow.id`).
#[utoipa::path(
    post, path = "/v1/workflows/{id}/jobs", tag = "workflows",
    params(WorkflowPath),
    request_body = AppendRequest,
    responses(
        (status = 201, description = "Appended", body = Appended),
        (status = 400, description = "Invalid steps", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
        (status = 409, description = "The workflow has finished or was cancelled", body = ErrorBody),
    ),
)]
pub async fn append(
    State(state): State<AppState>,
    KeyAndJson(WorkflowPath(id), req): KeyAndJson<WorkflowPath, AppendRequest>,
) -> ApiResult<(StatusCode, Json<Appended>)> {
    let spec = spec_value(&req)?;
    let jobs = workflows::append(
        state.pool(),
        id,
        &spec["jobs"],
        state.settings().default_max_attempts,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(Appended { jobs })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_become_milliseconds() {
        let req: WorkflowRequest = serde_json::from_value(serde_json::json!({
            "name": "w",
            "jobs": [{"name": "a", "queue": "q", "kind": "k", "timeout": "2s",
                      "depends_on": ["x", {"name": "y", "on_failure": "ignore"}]}]
        }))
        .expect("parses");
        let spec = spec_value(&req).expect("valid");
        assert_eq!(spec["jobs"][0]["timeout_ms"], 2000);
        assert!(spec["jobs"][0].get("timeout").is_none());
        assert_eq!(spec["jobs"][0]["depends_on"][1]["on_failure"], "ignore");
    }
}
