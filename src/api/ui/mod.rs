//! The dashboard at `/ui`: server-rendered HTML (maud, escaped by construction) with a
//! small progressive layer (htmx for live fragments and actions, uPlot for charts), all
//! embedded in the binary.
//!
//! It owns no data access and no validation of its own: every page reads through the
//! `/v1` handlers (or the store functions they call) and every action calls the `/v1`
//! handler that does the same thing, so the dashboard and the API cannot disagree. What
//! lives here is presentation, the login session and CSRF checks ([`auth`]), and the
//! security headers every answer carries.

pub mod auth;
mod layout;
pub mod limit;
mod pages;
mod workflows;

use axum::Router;
use axum::extract::{Path, Request};
use axum::handler::Handler;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::api::{self, AppState, jobs, queues, schedules};
use pages::Then::{Answer, List, Own};
use pages::action;

/// Content-Security-Policy of every dashboard answer: scripts and styles only from our
/// own embedded files (no inline script, no eval), no framing by anyone.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Where a schedule's actions end: its list.
const SCHEDULES: &str = "/ui/schedules";
/// Where a workflow's actions end: its page (this and its id).
const WORKFLOWS: &str = "/ui/workflows";

/// The dashboard's routes, mounted at `/ui` by `api::router`, and `/` redirecting there.
pub fn router(state: AppState) -> Router<AppState> {
    let guarded = Router::new()
        .route("/ui", get(pages::overview))
        .route("/ui/", get(pages::overview))
        .route("/ui/fragments/overview", get(pages::overview))
        // The /v1 event stream under the session: pages refresh their live part on it.
        .route("/ui/events", get(crate::api::events::stream))
        .live("/jobs", pages::jobs)
        .live("/jobs/{id}", pages::job)
        .route(
            "/ui/jobs/{id}/cancel",
            action(
                jobs::cancel,
                Answer(|id, r| format!("/ui/jobs/{id}?done={}", r.0.result)),
            ),
        )
        .route(
            "/ui/jobs/{id}/retry",
            action(jobs::retry, Own("/ui/jobs", "retried")),
        )
        .route("/ui/jobs/{id}/delete", post(pages::job_delete))
        .route(
            "/ui/jobs/{id}/run-now",
            action(jobs::run_now, Own("/ui/jobs", "run_now")),
        )
        .route("/ui/enqueue", get(pages::enqueue_form).post(pages::enqueue))
        .route("/ui/queues", get(pages::queues))
        .route(
            "/ui/queues/{name}",
            get(pages::queue_form).post(pages::queue_save),
        )
        .route(
            "/ui/queues/{name}/pause",
            action(queues::pause, List("/ui/queues", "paused")),
        )
        .route(
            "/ui/queues/{name}/resume",
            action(queues::resume, List("/ui/queues", "resumed")),
        )
        .route(
            "/ui/schedules",
            get(pages::schedules).post(pages::schedule_save),
        )
        .route("/ui/schedules-new", get(pages::schedule_form))
        .route("/ui/schedules/{name}", get(pages::schedule))
        .route(
            "/ui/schedules/{name}/pause",
            action(schedules::pause, List(SCHEDULES, "schedule_paused")),
        )
        .route(
            "/ui/schedules/{name}/resume",
            action(schedules::resume, List(SCHEDULES, "schedule_resumed")),
        )
        .route(
            "/ui/schedules/{name}/trigger",
            action(
                schedules::trigger,
                Answer(|_, t| format!("/ui/jobs/{}", t.0.job_id)),
            ),
        )
        .route(
            "/ui/schedules/{name}/delete",
            action(schedules::delete, List(SCHEDULES, "schedule_deleted")),
        )
        .route("/ui/workers", get(pages::workers))
        .live("/workflows", workflows::workflows)
        .live("/workflows/{id}", workflows::workflow)
        .route(
            "/ui/workflows/{id}/cancel",
            action(api::workflows::cancel, Own(WORKFLOWS, "cancelled")),
        )
        .route(
            "/ui/workflows/{id}/retry",
            action(api::workflows::retry, Own(WORKFLOWS, "retried")),
        )
        .route("/ui/bulk/preview", post(pages::bulk_preview))
        .route("/ui/bulk/run", post(pages::bulk_run))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/logout", post(auth::logout))
        .route_layer(middleware::from_fn_with_state(state, auth::guard));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/login", get(auth::login_form).post(auth::login))
        .route("/ui/assets/{name}", get(asset))
        .merge(guarded)
        .layer(middleware::from_fn(security_headers))
}

/// Routing a page with a live part.
trait LiveRoutes {
    /// Routes the page at `/ui{path}` and its live part at `/ui/fragments{path}`, both to
    /// `page` (which answers the part alone on the second, see `pages::Ui`).
    fn live<H: Handler<T, AppState>, T: 'static>(self, path: &str, page: H) -> Self;
}

impl LiveRoutes for Router<AppState> {
    fn live<H: Handler<T, AppState>, T: 'static>(self, path: &str, page: H) -> Self {
        self.route(&format!("/ui{path}"), get(page.clone()))
            .route(&format!("/ui/fragments{path}"), get(page))
    }
}

/// Adds the security headers to every dashboard answer; pages are never cached (they
/// show live data and, logged in, private data).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The embedded files: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/vendor/htmx.min.js"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/vendor/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/vendor/uPlot.min.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    ),
    (
        "LICENSES.txt",
        "text/plain; charset=utf-8",
        include_bytes!("assets/LICENSES.txt"),
    ),
];

/// Serves an embedded asset. Public (the login page needs them) and cacheable: their
/// URLs carry the version (`?v=`), so an upgrade is fetched anew.
async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
