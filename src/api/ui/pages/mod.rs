//! Page and action handlers. Each reads through, or acts by calling, the `/v1` handler
//! that does the same (so validation and messages are the API's); these modules only turn
//! forms into requests and answers into HTML.

// Handlers answer with a Response either way (a page or an error page); boxing the
// error side would only add an allocation per refused request.
#![allow(clippy::result_large_err)]

use axum::extract::{Extension, Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, post};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::Viewer;
use super::layout::{
    self, csrf_field, flash_banner, page, pretty, respond, seconds, state_badge, time, time_opt,
    viewer_time,
};
use crate::api::audit::{self, AuditQuery};
use crate::api::error::ApiError;
use crate::api::extract::{Access, Json, Path, RequestId};
use crate::api::jobs::{
    self, BulkRequest, EnqueueRequest, GetQuery, JobDetail, JobPage, ListQuery, StateName,
};
use crate::api::keys::{JobPath, KeyAndJson, PathKey, QueuePath};
use crate::api::queues::{self, QueueSettingsRequest};
use crate::api::stats::{self, StatsQuery};
use crate::api::{AppState, schedules, workers};

mod bulk;
mod enqueue;
mod job;
mod list;
mod overview;
mod queue;
mod schedule;
mod worker;

pub use self::{
    bulk::*, enqueue::*, job::*, list::*, overview::*, queue::*, schedule::*, worker::*,
};

/// A page, or the page that says why not.
pub(super) type Page = Result<Response, Response>;

/// When a live part of a page re-reads itself: on `live`, which app.js fires (at most
/// once a second) when the page's event stream (`/ui/events`, the `data-live` filter)
/// says a job changed; and every 30 s for what sends no event (a delayed job falling
/// due, the minute rolling over on the charts).
const LIVE_TRIGGER: &str = "live, every 30s";

/// What every dashboard handler starts from: the app's state and who is looking. A page
/// with a live part answers that part alone on its fragment route (`/ui/fragments/…`,
/// which htmx re-reads), so one handler serves both routes and they cannot drift apart.
pub(super) struct Ui {
    /// The app's state, handed to the `/v1` handlers.
    pub(super) state: AppState,
    /// Who is looking.
    pub(super) viewer: Viewer,
    /// Whether the request came in on a fragment route.
    fragment: bool,
}

impl FromRequestParts<AppState> for Ui {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Ui, Response> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        // The dashboard's router is merged, not nested: the path is the full one.
        let fragment = parts.uri.path().starts_with("/ui/fragments/");
        Ok(Ui {
            state: state.clone(),
            viewer,
            fragment,
        })
    }
}

impl Ui {
    /// The state argument of a `/v1` handler.
    pub(super) fn api(&self) -> State<AppState> {
        State(self.state.clone())
    }

    /// What a `/v1` handler answered, or its refusal as the page (see [`from_api`]).
    pub(super) async fn read<T>(
        &self,
        call: impl std::future::Future<Output = Result<Json<T>, ApiError>>,
    ) -> Result<T, Response> {
        from_api(&self.viewer, call).await
    }

    /// What the `/v1` handler `call` of a route on one thing answered for the key in
    /// `segment` (checked as that route checks it), or its refusal as the page.
    pub(super) async fn read_key<K: PathKey, T, Fut>(
        &self,
        segment: String,
        call: impl FnOnce(State<AppState>, K) -> Fut,
    ) -> Result<T, Response>
    where
        Fut: std::future::Future<Output = Result<Json<T>, ApiError>>,
    {
        self.read(async { call(self.api(), K::parse(segment)?).await })
            .await
    }

    /// One job with its attempts, as `GET /v1/jobs/{id}` answers it (without waiting).
    async fn job_detail(&self, id: String) -> Result<JobDetail, Response> {
        let query = crate::api::extract::Query(GetQuery { wait: None });
        self.read(async { jobs::get(self.api(), query, JobPath::parse(id)?).await })
            .await
    }

    /// The page `(title, nav)` with `body`, answered 200.
    pub(super) fn page(&self, title: &str, nav: &str, body: Markup) -> Page {
        ok(page(&self.viewer, title, nav, body))
    }

    /// A page with a live part: on the fragment route the part alone, else the page
    /// `(title, nav)` that `around` builds around it.
    pub(super) fn live(
        &self,
        (title, nav): (&str, &str),
        part: Markup,
        around: impl FnOnce(Markup) -> Markup,
    ) -> Page {
        if self.fragment {
            ok(part)
        } else {
            self.page(title, nav, around(part))
        }
    }
}

/// An API refusal as a page naming the problem; our own failure as the generic page.
pub(super) fn refused(viewer: &Viewer, e: ApiError) -> Response {
    match e {
        ApiError::Internal(detail) => layout::internal(&detail),
        other => layout::error_page(viewer, other.status(), &other.to_string()),
    }
}

/// What a `/v1` handler answered, or its refusal as the page (see [`refused`]).
pub(super) async fn from_api<T>(
    viewer: &Viewer,
    call: impl std::future::Future<Output = Result<Json<T>, ApiError>>,
) -> Result<T, Response> {
    call.await.map(|Json(t)| t).map_err(|e| refused(viewer, e))
}

/// Runs an action through its `/v1` handler, then redirects to where `to` says (or
/// shows the refusal).
async fn act<T>(
    viewer: &Viewer,
    call: impl std::future::Future<Output = Result<T, ApiError>>,
    to: impl FnOnce(T) -> String,
) -> Page {
    let done = call.await.map_err(|e| refused(viewer, e))?;
    Ok(Redirect::to(&to(done)).into_response())
}

/// Where a dashboard action redirects once done; the flash banner names the `?done=` code.
pub(super) enum Then<T> {
    /// A list page (its address) with a done code.
    List(&'static str, &'static str),
    /// The page of the action's key (its address without the key) with a done code.
    Own(&'static str, &'static str),
    /// An address made from the key and the `/v1` handler's answer.
    Answer(fn(&str, T) -> String),
}

impl<T> Then<T> {
    fn address(&self, key: &str, answer: T) -> String {
        match self {
            Then::List(list, done) => format!("{list}?done={done}"),
            Then::Own(page, done) => format!("{page}/{key}?done={done}"),
            Then::Answer(to) => to(key, answer),
        }
    }
}

/// A dashboard action's route: runs the `/v1` handler `call` on the path's key (a name or
/// an id, checked as the `/v1` route checks it), then redirects where `then` says, or
/// shows the refusal. Each action is one line of the router instead of a handler of its
/// own.
pub(super) fn action<F, K, Fut, T>(call: F, then: Then<T>) -> MethodRouter<AppState>
where
    F: Fn(State<AppState>, K) -> Fut + Clone + Send + Sync + 'static,
    K: PathKey + 'static,
    Fut: std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Send + 'static,
{
    let then = std::sync::Arc::new(then);
    post(move |ui: Ui, Path(key): Path<String>| {
        let (call, then) = (call.clone(), then.clone());
        async move {
            let done = async { call(ui.api(), K::parse(key.clone())?).await };
            act(&ui.viewer, done, |answer| then.address(&key, answer)).await
        }
    })
}

/// A submitted form's outcome: a redirect to the `Ok` address, or the form again
/// (`form(message)`, on the page `(title, nav)`) with the API's refusal and status.
fn form_outcome(
    viewer: &Viewer,
    result: Result<String, ApiError>,
    (title, nav): (&str, &str),
    form: impl FnOnce(&str) -> Markup,
) -> Page {
    match result {
        Ok(to) => Ok(Redirect::to(&to).into_response()),
        Err(ApiError::Internal(d)) => Err(layout::internal(&d)),
        Err(e) => Ok(respond(
            e.status(),
            page(viewer, title, nav, form(&e.to_string())),
        )),
    }
}

/// A page answered 200.
pub(super) fn ok(markup: Markup) -> Page {
    Ok(respond(StatusCode::OK, markup))
}

/// A time field: RFC 3339 as is; a browser's `datetime-local` value
/// ("2026-12-01T09:30") is read as UTC; anything else goes to the API to refuse.
fn utc_time(v: &Option<String>) -> Option<String> {
    let text = given(v)?;
    let local = text.len() == 16 && text.as_bytes().get(10) == Some(&b'T');
    Some(if local { format!("{text}:00Z") } else { text })
}

/// Empty form and query fields mean "not given".
fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn parse_state(v: &Option<String>) -> Result<Option<StateName>, ApiError> {
    given(v)
        .map(|s| {
            serde_json::from_value(serde_json::Value::String(s.clone())).map_err(|_| {
                ApiError::invalid(
                    "state",
                    format!(
                        "{s:?} is not waiting, scheduled, available, running, completed, failed or cancelled"
                    ),
                )
            })
        })
        .transpose()
}

const STATES: [&str; 7] = [
    "waiting",
    "scheduled",
    "available",
    "running",
    "completed",
    "failed",
    "cancelled",
];

/// `?done=` after a redirecting action.
#[derive(Debug, Deserialize)]
pub struct Done {
    done: Option<String>,
}

impl Done {
    /// The banner saying what the action did (nothing without a known code).
    fn banner(&self) -> Markup {
        flash_banner(self.done.as_deref())
    }
}

fn filter_fields(queue: &Option<String>, kind: &Option<String>, state: &Option<String>) -> Markup {
    html! {
        @if let Some(v) = given(queue) { input type="hidden" name="queue" value=(v); }
        @if let Some(v) = given(kind) { input type="hidden" name="kind" value=(v); }
        @if let Some(v) = given(state) { input type="hidden" name="state" value=(v); }
    }
}

fn time_fields(after: &Option<String>, before: &Option<String>) -> Markup {
    html! {
        @if let Some(v) = given(after) { input type="hidden" name="created_after" value=(v); }
        @if let Some(v) = given(before) { input type="hidden" name="created_before" value=(v); }
    }
}

fn state_name(s: StateName) -> &'static str {
    s.as_str()
}

fn short(id: &str) -> String {
    // UUIDv7: the first groups are the time, the last are random; show the tail.
    id.get(24..).unwrap_or(id).to_owned()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// Names the forms suggest: queues, and kinds (those workers serve, from `/v1/kinds`,
/// plus those in this process's configuration).
#[derive(Default)]
struct Known {
    queues: Vec<String>,
    kinds: Vec<String>,
}

async fn known_names(state: &AppState) -> Known {
    let queues = queues::list(State(state.clone()))
        .await
        .map(|l| l.0.queues.into_iter().map(|q| q.name).collect())
        .unwrap_or_default();
    let mut kinds: Vec<String> = crate::api::kinds::list(State(state.clone()))
        .await
        .map(|l| l.0.kinds.into_iter().map(|k| k.kind.name).collect())
        .unwrap_or_default();
    kinds.extend(state.settings().config.kinds.keys().cloned());
    kinds.sort();
    kinds.dedup();
    Known { queues, kinds }
}

fn datalists(known: &Known) -> Markup {
    html! {
        datalist #known-queues { @for q in &known.queues { option value=(q) {} } }
        datalist #known-kinds { @for k in &known.kinds { option value=(k) {} } }
    }
}

fn action_button(
    viewer: &Viewer,
    action: &str,
    label: &str,
    id: &str,
    confirm: Option<&str>,
) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf_field(viewer))
            button type="submit" id=(id) { (label) }
        }
    }
}

/// What every form starts with: its CSRF field, then the refusal that brought it back.
fn form_head(viewer: &Viewer, error: Option<&str>) -> Markup {
    html! {
        (csrf_field(viewer))
        @if let Some(e) = error { p.error role="alert" #form-error { (e) } }
    }
}

/// The kind field of the job forms, suggesting known kinds.
fn kind_field(kind: &Option<String>) -> Markup {
    html! { label { "Kind" input name="kind" #kind list="known-kinds" required value=[given(kind)]; } }
}

/// The payload field of the job forms (`{}` when empty), checked as JSON by app.js.
fn payload_field(payload: &Option<String>, rows: u8) -> Markup {
    html! {
        label { "Payload (JSON)"
            textarea name="payload" #payload rows=(rows) spellcheck="false" data-json aria-describedby="payload-msg" {
                (given(payload).unwrap_or_else(|| "{}".into()))
            }
        }
        p.hint #payload-msg aria-live="polite" {}
    }
}

/// A list's table, scrolling sideways on a narrow screen, or `none` when it is empty.
pub(super) fn table_or(empty: bool, none: Markup, table: Markup) -> Markup {
    html! { @if empty { (none) } @else { div.scroll { (table) } } }
}

/// Whether a queue or schedule is paused (a badge) or active.
fn activity(paused: bool) -> Markup {
    html! { @if paused { span.badge.warn { "paused" } } @else { "active" } }
}

/// The pause button of a live queue or schedule (`base/name`), the resume button of a
/// paused one.
fn pause_or_resume(viewer: &Viewer, base: &str, name: &str, paused: bool) -> Markup {
    let (verb, label) = if paused {
        ("resume", "Resume")
    } else {
        ("pause", "Pause")
    };
    let to = format!("{base}/{name}/{verb}");
    action_button(viewer, &to, label, &format!("{verb}-{name}"), None)
}

/// A JSON form field (payloads); empty means not given.
fn json_field(name: &str, v: &Option<String>) -> Result<Option<serde_json::Value>, ApiError> {
    given(v)
        .map(|text| {
            serde_json::from_str(&text)
                .map_err(|e| ApiError::invalid(name, format!("is not valid JSON: {e}")))
        })
        .transpose()
}

fn int_field(name: &str, v: &Option<String>) -> Result<Option<i32>, ApiError> {
    given(v)
        .map(|s| {
            s.parse::<i32>()
                .map_err(|_| ApiError::invalid(name, format!("{s:?} is not a whole number")))
        })
        .transpose()
}
