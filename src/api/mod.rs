//! The HTTP API (`ordinaut api`): jobs, queues, workers, the pull model for external
//! workers, live events, health, readiness, metrics and the OpenAPI document.
//!
//! Built on the same store as the CLI and the worker: handlers validate input, call
//! `db::*` functions and shape the answer; no SQL lives here. [`router`] builds the
//! whole application without a socket (tests drive it with `oneshot`); [`serve`] runs
//! it on a listener until shutdown, together with the process's LISTEN connection
//! (`db::listen`) that feeds live events, unless another part of the process runs it.

pub mod audit;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod keys;
pub mod kinds;
pub mod openapi;
pub mod paging;
pub mod pull;
pub mod queues;
pub mod schedules;
pub mod snapshot;
pub mod stats;
pub mod ui;
pub mod workers;
pub mod workflows;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{Config, Redacted};
use crate::db::listen::{Listener, Topics};
use crate::db::{self, events::Received};
use crate::model::Backoff;
use error::ApiError;
use extract::RequestId;

/// What the handlers need from configuration.
#[derive(Clone)]
pub struct ApiSettings {
    /// Accepted bearer tokens; empty = `/v1` open.
    pub tokens: Vec<String>,
    /// Bearer tokens that may read but not change anything (403 on writes).
    pub readonly_tokens: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most jobs per batch.
    pub max_batch: usize,
    /// Longest any wait holds a request (`?wait=`, pull claim `wait`).
    pub max_wait: Duration,
    /// Token required on `/metrics`.
    pub metrics_auth: bool,
    /// Largest job payload (JSON text bytes); also bounds a pull client's output.
    pub max_payload_bytes: usize,
    /// max_attempts for jobs that set none and whose queue sets none.
    pub default_max_attempts: i32,
    /// Default lease for pull clients.
    pub lease: Duration,
    /// Backoff for failed pull jobs whose queue sets none.
    pub backoff: Backoff,
    /// Bytes of a pull client's log kept per attempt.
    pub output_limit: usize,
    /// Fallback re-check interval for pull claims waiting for work (jobs whose run_at
    /// passes send no event).
    pub poll_interval: Duration,
    /// `/v1/queues` answers from the refresher's snapshot (at most two refresh
    /// intervals old) once counting the live jobs took this long: on a small database
    /// the counts stay exact, on a million live jobs no request counts them again.
    pub cached_counts_after: Duration,
    /// Jobs a search of `/v1/jobs` (payload, metadata, text) examines per page on each
    /// side (live, finished) before it answers with a partial page.
    pub search_scan_budget: i64,
    /// The whole configuration, for schedule validation (TZ, limits) and triggers.
    pub config: std::sync::Arc<Config>,
}

// By hand: the tokens must never be printed.
impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("tokens", &Redacted(&self.tokens))
            .field("readonly_tokens", &Redacted(&self.readonly_tokens))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl ApiSettings {
    /// True when no token of either kind is configured: `/v1` and `/ui` are open.
    pub fn auth_disabled(&self) -> bool {
        self.tokens.is_empty() && self.readonly_tokens.is_empty()
    }

    /// Settings from the loaded configuration.
    pub fn from_config(config: &Config) -> ApiSettings {
        ApiSettings {
            tokens: config.api.tokens.clone(),
            readonly_tokens: config.api.readonly_tokens.clone(),
            max_body_bytes: config.api.max_body_bytes,
            max_batch: config.api.max_batch,
            max_wait: Duration::from_secs_f64(config.api.max_wait),
            metrics_auth: config.api.metrics_auth,
            max_payload_bytes: config.max_payload_bytes,
            default_max_attempts: config.default_max_attempts(),
            lease: config.lease(),
            backoff: Backoff {
                base: Duration::from_secs_f64(config.worker.backoff_base),
                max: Duration::from_secs_f64(config.worker.backoff_max_delay),
            },
            output_limit: config.worker.output_limit_bytes,
            poll_interval: Duration::from_secs_f64(config.worker.poll_interval),
            cached_counts_after: snapshot::CACHED_COUNTS_AFTER,
            search_scan_budget: jobs::SEARCH_SCAN_BUDGET,
            config: std::sync::Arc::new(config.clone()),
        }
    }
}

/// Shared state of every handler: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    pool: db::Pool,
    settings: ApiSettings,
    /// The process's listener, the source of job events.
    listener: Listener,
    /// Whether [`AppState::run_event_listener`] runs `listener` (else another part of
    /// the process does).
    runs_listener: bool,
    metrics: PrometheusHandle,
    stopping: CancellationToken,
    gate: events::Gate,
    snapshot: snapshot::Snapshot,
    kinds: crate::kinds::registry::KindsCache,
    login_limiter: ui::limit::LoginLimiter,
}

impl AppState {
    /// State over `pool`, with a listener of its own on `pool` that
    /// [`AppState::run_event_listener`] runs. Installs the metrics recorder if none is
    /// yet, and declares the configuration's queues and kinds as label values.
    pub fn new(pool: db::Pool, settings: ApiSettings) -> AppState {
        let listener = Listener::new(pool.clone(), Topics::EVENTS);
        AppState::build(pool, settings, listener, true)
    }

    /// State over `pool` whose job events come from `listener`, the process's listener,
    /// which another part of the process runs (`ordinaut dev`: one LISTEN connection
    /// for the API and the worker).
    pub fn sharing_listener(pool: db::Pool, settings: ApiSettings, listener: Listener) -> AppState {
        AppState::build(pool, settings, listener, false)
    }

    fn build(
        pool: db::Pool,
        settings: ApiSettings,
        listener: Listener,
        runs_listener: bool,
    ) -> AppState {
        crate::metrics::allow_from_config(&settings.config);
        AppState {
            inner: Arc::new(Inner {
                pool,
                settings,
                listener,
                runs_listener,
                metrics: crate::metrics::install(),
                stopping: CancellationToken::new(),
                gate: events::Gate::new(),
                snapshot: snapshot::Snapshot::new(),
                kinds: Default::default(),
                login_limiter: Default::default(),
            }),
        }
    }

    pub(crate) fn pool(&self) -> &db::Pool {
        &self.inner.pool
    }

    pub(crate) fn settings(&self) -> &ApiSettings {
        &self.inner.settings
    }

    /// The kinds registry as enqueues see it, current for `kinds`.
    pub(crate) async fn kinds_view<'a>(
        &self,
        kinds: impl IntoIterator<Item = &'a str>,
    ) -> Result<Arc<crate::kinds::registry::KindsView>, db::Error> {
        self.inner
            .kinds
            .view(&self.inner.pool, &self.inner.settings.config, kinds)
            .await
    }

    /// Wrong dashboard logins per client (`ui::limit`).
    pub(crate) fn login_limiter(&self) -> &ui::limit::LoginLimiter {
        &self.inner.login_limiter
    }

    /// A receiver of live job events (fed by the process's listener); opens the
    /// database's event triggers for as long as anyone here subscribes.
    pub async fn subscribe(&self) -> broadcast::Receiver<Received> {
        self.inner
            .gate
            .subscribe(&self.inner.pool, self.inner.listener.events())
            .await
    }

    /// Cancelled when the server stops: ends waits and event streams.
    pub fn stopping(&self) -> &CancellationToken {
        &self.inner.stopping
    }

    /// What the request's bearer token allows (see [`extract::Access`]).
    pub(crate) fn access(&self, headers: &HeaderMap) -> Option<extract::Access> {
        extract::bearer_access(&self.inner.settings, headers)
    }

    /// Runs the event gate and, unless it is shared, the LISTEN connection that feeds
    /// `/v1/events`, `?wait=` and pull waits, until [`AppState::stopping`] fires.
    /// [`serve`] runs it; tests driving the router directly spawn it themselves.
    pub async fn run_event_listener(self) {
        let inner = &self.inner;
        let gate = inner.gate.run(
            inner.pool.clone(),
            inner.listener.events().clone(),
            inner.stopping.clone(),
        );
        if inner.runs_listener {
            let listener = inner.listener.clone().run(inner.stopping.clone());
            tokio::join!(gate, listener);
        } else {
            gate.await;
        }
    }
}

/// All routes with their OpenAPI description. Every route is added through `routes!`,
/// so it cannot be served without being documented.
fn documented_routes(state: &AppState) -> OpenApiRouter<AppState> {
    let auth = middleware::from_fn_with_state(state.clone(), extract::require_token);
    let mut v1 = OpenApiRouter::new()
        .routes(routes!(jobs::enqueue, jobs::list))
        .routes(routes!(jobs::enqueue_batch))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::retry))
        .routes(routes!(jobs::attempts))
        .routes(routes!(queues::list))
        .routes(routes!(queues::get, queues::update))
        .routes(routes!(queues::pause))
        .routes(routes!(queues::resume))
        .routes(routes!(workers::list))
        .routes(routes!(kinds::list))
        .routes(routes!(pull::claim::claim))
        .routes(routes!(pull::heartbeat::heartbeat))
        .routes(routes!(pull::finish::complete))
        .routes(routes!(pull::finish::fail))
        .routes(routes!(events::stream))
        .routes(routes!(schedules::list, schedules::create))
        .routes(routes!(schedules::get, schedules::delete))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(schedules::trigger))
        .routes(routes!(stats::stats))
        .routes(routes!(jobs::delete_job))
        .routes(routes!(jobs::run_now))
        .routes(routes!(jobs::bulk_count))
        .routes(routes!(jobs::bulk_run))
        .routes(routes!(audit::audit_log))
        .routes(routes!(workflows::submit, workflows::list))
        .routes(routes!(workflows::get))
        .routes(routes!(workflows::cancel))
        .routes(routes!(workflows::retry))
        .routes(routes!(workflows::append))
        .route_layer(auth.clone());
    openapi::require_token(v1.get_openapi_mut());
    let mut metrics = OpenApiRouter::new().routes(routes!(health::metrics));
    if state.settings().metrics_auth {
        metrics = metrics.route_layer(auth);
    }
    let open = OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(openapi::document));
    let mut all = OpenApiRouter::with_openapi(openapi::base())
        .merge(v1)
        .merge(metrics)
        .merge(open);
    openapi::json_body_errors(all.get_openapi_mut());
    all
}

/// The OpenAPI document of the API as served at `/openapi.json`.
pub fn openapi_document(state: &AppState) -> utoipa::openapi::OpenApi {
    documented_routes(state).into_openapi()
}

/// The whole application, without a socket.
pub fn router(state: AppState) -> Router {
    let (router, doc) = documented_routes(&state).split_for_parts();
    let doc = Arc::new(openapi::finish(doc));
    let max_body = state.settings().max_body_bytes;
    router
        .merge(ui::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::Extension(doc))
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(extract::request_id))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(make_span)
                        // ApiError logs our failures once; do not log them again.
                        .on_failure(()),
                )
                .layer(middleware::from_fn(track_http))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(DefaultBodyLimit::max(max_body)),
        )
        .with_state(state)
}

/// Serves `state`'s application on `listener` until `shutdown` fires, then stops
/// accepting, ends waits and event streams, and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if state.settings().auth_disabled() {
        tracing::warn!("API_TOKENS is empty: /v1 and /ui accept requests without a token");
    }
    let mut tasks = JoinSet::new();
    tasks.spawn(state.clone().run_event_listener());
    tasks.spawn(state.clone().run_refresher());
    let stopping = state.stopping().clone();
    let app = router(state);
    // The peer address is what the dashboard's login limit counts by.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            stopping.cancel();
        })
        .await;
    while tasks.join_next().await.is_some() {}
    result
}

fn make_span(request: &Request) -> tracing::Span {
    let matched_path = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.as_str());
    if crate::otel::exporting() {
        return crate::otel::server_span(request, matched_path, request_id);
    }
    tracing::info_span!(
        "http_request",
        method = %request.method(),
        matched_path = matched_path.unwrap_or("unmatched"),
        request_id = request_id.unwrap_or(""),
    )
}

async fn track_http(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        // Unmatched paths share one label: raw paths would make cardinality unbounded.
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    crate::metrics::http_request(&method, &route, response.status().as_u16(), start.elapsed());
    response
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("handler panicked".to_owned()).into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
