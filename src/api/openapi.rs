//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` annotations
//! and served at `/openapi.json`.

use std::sync::Arc;

use axum::Extension;
use axum::response::IntoResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, OpenApi, ToSchema};

use super::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ordinaut API",
        description = "Jobs, queues, workers, pull-model claims and live events of an Ordinaut job queue. \
Every error is `{\"error\":{\"code\",\"message\"}}`. `/v1` requires `Authorization: Bearer <token>` when API_TOKENS is set."
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "jobs", description = "Enqueue, inspect, cancel and retry jobs"),
        (name = "queues", description = "Queue counts, pause and resume, defaults"),
        (name = "workers", description = "Live worker processes"),
        (name = "kinds", description = "The kinds registry: kinds workers serve"),
        (name = "schedules", description = "Cron schedules: create, pause, resume, trigger, delete"),
        (name = "workflows", description = "Jobs with dependencies: submit, show, list, cancel, retry, append"),
        (name = "pull", description = "Claim and finish jobs from any language over HTTP"),
        (name = "events", description = "Live job state changes"),
        (name = "health", description = "Liveness, readiness, metrics, this document"),
    )
)]
struct BaseDoc;

/// The 400 of a list or stream whose filter (its query parameters) is refused: the jobs
/// and workflows lists and the event stream.
#[derive(IntoResponses)]
#[allow(dead_code)] // Documentation only: the answer is an `ApiError`.
pub(crate) enum InvalidFilter {
    #[response(status = 400, description = "Invalid filter")]
    Invalid(ErrorBody),
}

/// The document's fixed parts: info, tags, the bearer security scheme.
pub(crate) fn base() -> utoipa::openapi::OpenApi {
    let mut doc = BaseDoc::openapi();
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// Documents what `extract::require_token` does to every operation of `doc`: each
/// requires the `bearer` scheme and may answer 401.
pub(crate) fn require_token(doc: &mut utoipa::openapi::OpenApi) {
    for op in operations(doc) {
        op.security
            .get_or_insert_with(|| vec![SecurityRequirement::new("bearer", [""; 0])]);
        add_error(op, "401", "Missing or wrong token");
    }
}

/// Documents what our `Json` extractor answers on every operation with a request body:
/// 413 for a body over the limit, 415 without `Content-Type: application/json`. An
/// operation that describes its own 413 (a payload limit too) keeps it.
pub(crate) fn json_body_errors(doc: &mut utoipa::openapi::OpenApi) {
    for op in operations(doc).filter(|op| op.request_body.is_some()) {
        add_error(op, "413", "Body too large");
        add_error(op, "415", "Not application/json");
    }
}

/// Every operation of `doc`.
fn operations(doc: &mut utoipa::openapi::OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
            &mut item.query,
        ]
        .into_iter()
        .flatten()
        .chain(item.additional_operations.values_mut())
    })
}

/// Adds an [`ErrorBody`] answer with `status` to `op` unless it describes one already.
fn add_error(op: &mut Operation, status: &str, description: &str) {
    let body = Content::new(Some(Ref::from_schema_name(ErrorBody::name())));
    let response = ResponseBuilder::new()
        .description(description)
        .content("application/json", body)
        .build();
    op.responses
        .responses
        .entry(status.to_owned())
        .or_insert(RefOr::T(response));
}

/// The document as served.
pub(crate) fn finish(doc: utoipa::openapi::OpenApi) -> serde_json::Value {
    // Serialising a utoipa document cannot fail: it is plain data with string keys.
    serde_json::to_value(&doc).expect("the OpenAPI document serialises")
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object)))]
pub async fn document(Extension(doc): Extension<Arc<serde_json::Value>>) -> impl IntoResponse {
    axum::Json(doc.as_ref().clone())
}
