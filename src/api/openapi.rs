//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` annotations
//! and served at `/openapi.json`.

use std::sync::Arc;

use axum::Extension;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

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
