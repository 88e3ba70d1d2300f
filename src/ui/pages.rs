//! Page and action handlers. Each reads through, or acts by calling, the `/v1` handler
//! that does the same (so validation and messages are the API's); this file only turns
//! forms into requests and answers into HTML.

// Handlers answer with a Response either way (a page or an error page); boxing the
// error side would only add an allocation per refused request.
#![allow(clippy::result_large_err)]

use axum::extract::{Extension, Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::Viewer;
use super::layout::{
    self, csrf_field, flash_banner, page, pretty, respond, seconds, state_badge, time, time_opt,
};
use crate::api::dashboard::{self, AuditQuery, BulkRequest, StatsQuery};
use crate::api::error::ApiError;
use crate::api::extract::{Access, Json, Path, RequestId};
use crate::api::jobs::{self, EnqueueRequest, GetQuery, Job, ListQuery, StateName};
use crate::api::queues::{self, QueueSettingsRequest};
use crate::api::{AppState, schedules, workers};

type Page = Result<Response, Response>;

/// An API refusal as a page naming the problem; our own failure as the generic page.
fn refused(viewer: &Viewer, e: ApiError) -> Response {
    match e {
        ApiError::Internal(detail) => layout::internal(&detail),
        other => layout::error_page(viewer, other.status(), &other.to_string()),
    }
}

fn ok(markup: Markup) -> Page {
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
                        "{s:?} is not scheduled, available, running, completed, failed or cancelled"
                    ),
                )
            })
        })
        .transpose()
}

const STATES: [&str; 6] = [
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

// ---------------------------------------------------------------- overview

/// Overview: per queue, jobs by state, throughput, waits, limits and workers; live.
pub async fn overview(State(state): State<AppState>, viewer: Viewer) -> Page {
    let body = overview_body(&state, &viewer).await?;
    ok(page(&viewer, "Overview", "/ui", body))
}

/// The live part of the overview, polled every two seconds.
pub async fn overview_fragment(State(state): State<AppState>, viewer: Viewer) -> Page {
    ok(overview_body(&state, &viewer).await?)
}

async fn overview_body(state: &AppState, viewer: &Viewer) -> Result<Markup, Response> {
    let queues = queues::list(State(state.clone()))
        .await
        .map_err(|e| refused(viewer, e))?
        .0
        .queues;
    let stats = dashboard::stats(
        State(state.clone()),
        crate::api::extract::Query(StatsQuery { minutes: Some(60) }),
    )
    .await
    .map_err(|e| refused(viewer, e))?
    .0;
    let figures = |name: &str| stats.queues.iter().find(|f| f.queue == name);
    let mut names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    for f in &stats.queues {
        if !names.contains(&f.queue.as_str()) {
            names.push(&f.queue);
        }
    }
    // One series over the hour, all queues together: minute, completed, failed.
    let now = Utc::now().timestamp() / 60 * 60;
    let mut xs = Vec::new();
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for i in (0..60).rev() {
        let t = now - i * 60;
        xs.push(t);
        let (c, f) = stats
            .queues
            .iter()
            .flat_map(|q| q.per_minute.iter())
            .filter(|m| m.minute.timestamp() == t)
            .fold((0, 0), |(c, f), m| (c + m.completed, f + m.failed));
        done.push(c);
        failed.push(f);
    }
    let series = serde_json::json!([xs, done, failed]).to_string();
    Ok(html! {
        div #overview hx-get="/ui/fragments/overview" hx-trigger="every 2s" hx-swap="outerHTML" {
            p.summary {
                strong #workers-alive { (stats.workers_alive) } " workers alive · "
                (queues.iter().map(|q| q.running).sum::<i64>()) " running · "
                (queues.iter().map(|q| q.available).sum::<i64>()) " waiting"
            }
            div.chart data-series=(series) data-labels="completed,failed" aria-label="Finished jobs per minute, last hour" {}
            @if names.is_empty() {
                p.muted { "No queues yet: enqueue a job to see one." }
            } @else {
                div.scroll {
                table #queues-table {
                    thead { tr {
                        th { "Queue" } th { "Available" } th { "Scheduled" } th { "Running / limit" }
                        th title="last 60 minutes" { "Completed (1 h)" } th title="last 60 minutes" { "Failed (1 h)" }
                        th title="due to start, jobs finished in the last hour" { "Wait p50 / p95 / p99" }
                        th { "Workers" }
                    } }
                    tbody {
                        @for name in &names {
                            @let q = queues.iter().find(|q| q.name == *name);
                            @let f = figures(name);
                            tr data-queue=(name) {
                                td {
                                    a href={ "/ui/jobs?queue=" (name) } { (name) }
                                    @if q.is_some_and(|q| q.paused) { " " span.badge.warn { "paused" } }
                                }
                                td.num { (q.map_or(0, |q| q.available)) }
                                td.num { (q.map_or(0, |q| q.scheduled)) }
                                td.num.running {
                                    (q.map_or(0, |q| q.running))
                                    @if let Some(l) = q.and_then(|q| q.concurrency_limit) { " / " (l) }
                                }
                                td.num.completed { (f.map_or(0, |f| f.completed)) }
                                td.num.failed { (f.map_or(0, |f| f.failed)) }
                                td.num {
                                    @match f.and_then(|f| f.wait.as_ref()) {
                                        Some(w) => {
                                            (w.p50.map(seconds).unwrap_or_default()) " / "
                                            (w.p95.map(seconds).unwrap_or_default()) " / "
                                            (w.p99.map(seconds).unwrap_or_default())
                                        }
                                        None => span.muted { "—" },
                                    }
                                }
                                td.num { (f.map_or(0, |f| f.workers)) }
                            }
                        }
                    }
                }
                }
            }
            @if !viewer.access.can_write() { p.muted { "Read-only: actions are hidden." } }
        }
    })
}

// ---------------------------------------------------------------- jobs

/// Filters of the jobs page.
#[derive(Debug, Default, Deserialize)]
pub struct JobsQuery {
    queue: Option<String>,
    kind: Option<String>,
    state: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    cursor: Option<String>,
}

impl JobsQuery {
    fn query_string(&self, with_cursor: bool) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (k, v) in [
            ("queue", &self.queue),
            ("kind", &self.kind),
            ("state", &self.state),
            ("created_after", &self.created_after),
            ("created_before", &self.created_before),
        ] {
            if let Some(v) = given(v) {
                pairs.push((k, v));
            }
        }
        if with_cursor && let Some(c) = given(&self.cursor) {
            pairs.push(("cursor", c));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

async fn job_page(state: &AppState, q: &JobsQuery) -> Result<(Vec<Job>, Option<String>), ApiError> {
    let page = jobs::list(
        State(state.clone()),
        crate::api::extract::Query(ListQuery {
            queue: given(&q.queue),
            kind: given(&q.kind),
            state: parse_state(&q.state)?,
            created_after: utc_time(&q.created_after),
            created_before: utc_time(&q.created_before),
            cursor: given(&q.cursor),
            limit: Some(50),
        }),
    )
    .await?
    .0;
    Ok((page.jobs, page.next_cursor))
}

/// Jobs: filters, a live first page, cursor pages, and bulk actions on the filter.
pub async fn jobs(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<JobsQuery>,
) -> Page {
    let (rows, next) = job_page(&state, &q)
        .await
        .map_err(|e| refused(&viewer, e))?;
    let known = queue_names(&state).await;
    let body = html! {
        form.filters method="get" action="/ui/jobs" role="search" {
            label { "Queue " input name="queue" list="known-queues" value=[given(&q.queue)]; }
            label { "Kind " input name="kind" list="known-kinds" value=[given(&q.kind)]; }
            label { "State "
                select name="state" {
                    option value="" { "any" }
                    @for s in STATES {
                        option value=(s) selected[given(&q.state).as_deref() == Some(s)] { (s) }
                    }
                }
            }
            label { "Created after (UTC) " input name="created_after" type="datetime-local" value=[given(&q.created_after)]; }
            label { "before " input name="created_before" type="datetime-local" value=[given(&q.created_before)]; }
            button type="submit" #apply-filter { "Filter" }
            (datalists(&state, &known))
        }
        (jobs_table(&q, &rows, next.as_deref(), viewer.access.can_write()))
        @if viewer.access.can_write() {
            form.actions method="post" action="/ui/bulk/preview" #selected-form {
                (csrf_field(&viewer))
                input type="hidden" name="selection" value="1";
                label { "Selected jobs: "
                    select name="action" #selected-action {
                        option value="retry" { "retry" }
                        option value="cancel" { "cancel" }
                        option value="delete" { "delete" }
                    }
                }
                button type="submit" #selected-preview { "Act on selected…" }
                span.hint { "Ticking a box pauses the live refresh." }
            }
            section.bulk aria-labelledby="bulk-h" {
                h2 #bulk-h { "Act on every job matching this filter" }
                form method="post" action="/ui/bulk/preview" {
                    (csrf_field(&viewer))
                    (filter_fields(&q.queue, &q.kind, &q.state))
                    (time_fields(&q.created_after, &q.created_before))
                    label { "Action "
                        select name="action" #bulk-action {
                            option value="retry" { "retry (failed and cancelled jobs)" }
                            option value="cancel" { "cancel (live jobs)" }
                            option value="delete" { "delete (finished and waiting jobs)" }
                        }
                    }
                    button type="submit" #bulk-preview { "Count matching jobs…" }
                }
            }
        }
    };
    ok(page(&viewer, "Jobs", "/ui/jobs", body))
}

/// The live first page of the jobs list.
pub async fn jobs_fragment(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<JobsQuery>,
) -> Page {
    let (rows, next) = job_page(&state, &q)
        .await
        .map_err(|e| refused(&viewer, e))?;
    ok(jobs_table(
        &q,
        &rows,
        next.as_deref(),
        viewer.access.can_write(),
    ))
}

fn jobs_table(q: &JobsQuery, rows: &[Job], next: Option<&str>, select: bool) -> Markup {
    let live = given(&q.cursor).is_none();
    let fragment = format!("/ui/fragments/jobs?{}", q.query_string(false));
    html! {
        div #jobs hx-get=[live.then_some(&fragment)] hx-trigger=[live.then_some("every 2s")] hx-swap="outerHTML" {
            @if rows.is_empty() {
                p.muted #no-jobs { "No jobs match." }
            } @else {
                div.scroll {
                table #jobs-table {
                    thead { tr { @if select { th { span.visually-hidden { "Select" } } } th { "Job" } th { "Queue" } th { "Kind" } th { "State" } th { "Attempt" } th { "Created" } th { "Finished" } th { "Last error" } } }
                    tbody {
                        @for j in rows {
                            @let s = state_name(j.state);
                            tr data-job=(j.id) data-state=(s) {
                                @if select {
                                    td { input.pick type="checkbox" name="ids" value=(j.id) form="selected-form" aria-label={ "select job " (j.id) }; }
                                }
                                td { a.mono href={ "/ui/jobs/" (j.id) } { (short(&j.id.to_string())) } }
                                td { (j.queue) } td { (j.kind) } td { (state_badge(s)) }
                                td.num { (j.attempt) " / " (j.max_attempts) }
                                td { (time(&j.created_at)) } td { (time_opt(&j.finished_at)) }
                                td.error-cell { (j.last_error.as_deref().map(|e| truncate(e, 120)).unwrap_or_default()) }
                            }
                        }
                    }
                }
                }
            }
            @if let Some(c) = next {
                @let nq = JobsQuery {
                    queue: q.queue.clone(), kind: q.kind.clone(), state: q.state.clone(),
                    created_after: q.created_after.clone(), created_before: q.created_before.clone(),
                    cursor: Some(c.to_owned()),
                };
                p { a #next-page href={ "/ui/jobs?" (nq.query_string(true)) } { "Older jobs →" } }
            }
            @if !live { p { a href={ "/ui/jobs?" (q.query_string(false)) } { "← Newest jobs (live)" } } }
        }
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
    s.as_state().as_str()
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

async fn queue_names(state: &AppState) -> Vec<String> {
    queues::list(State(state.clone()))
        .await
        .map(|l| l.0.queues.into_iter().map(|q| q.name).collect())
        .unwrap_or_default()
}

fn datalists(state: &AppState, queues: &[String]) -> Markup {
    html! {
        datalist #known-queues { @for q in queues { option value=(q) {} } }
        datalist #known-kinds { @for k in state.settings().config.kinds.keys() { option value=(k) {} } }
    }
}

// ---------------------------------------------------------------- job detail

/// One job: everything about it and its attempts, live until it ends; actions.
pub async fn job(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Page {
    let body = job_body(&state, &viewer, id).await?;
    ok(page(
        &viewer,
        "Job",
        "/ui/jobs",
        html! { (flash_banner(done.done.as_deref())) (body) },
    ))
}

/// The live part of the job page, polled while the job is not finished.
pub async fn job_fragment(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Page {
    ok(job_body(&state, &viewer, id).await?)
}

async fn job_body(state: &AppState, viewer: &Viewer, id: String) -> Result<Markup, Response> {
    let detail = jobs::get(
        State(state.clone()),
        Path(id.clone()),
        crate::api::extract::Query(GetQuery { wait: None }),
    )
    .await
    .map_err(|e| refused(viewer, e))?
    .0;
    let j = &detail.job;
    let s = state_name(j.state);
    let terminal = j.state.as_state().is_terminal();
    let fragment = format!("/ui/fragments/jobs/{}", j.id);
    let meta = |key: &str| {
        j.metadata
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    Ok(html! {
        div #job data-state=(s) hx-get=[(!terminal).then_some(&fragment)] hx-trigger=[(!terminal).then_some("every 1s")] hx-swap="outerHTML" {
            dl.facts {
                dt { "Id" } dd.mono #job-id { (j.id) }
                dt { "State" } dd #job-state { (state_badge(s)) }
                dt { "Queue" } dd { a href={ "/ui/jobs?queue=" (j.queue) } { (j.queue) } }
                dt { "Kind" } dd { (j.kind) }
                dt { "Attempt" } dd { (j.attempt) " of " (j.max_attempts) }
                dt { "Priority" } dd { (j.priority) }
                dt { "Run at" } dd { (time(&j.run_at)) }
                dt { "Created" } dd { (time(&j.created_at)) }
                dt { "Started" } dd { (time_opt(&j.attempted_at)) }
                dt { "Finished" } dd { (time_opt(&j.finished_at)) }
                @if let Some(w) = j.lease_owner { dt { "Worker" } dd.mono { (w) } }
                @if let Some(k) = &j.unique_key { dt { "Unique key" } dd.mono { (k) } }
                @if let Some(sid) = j.schedule_id { dt { "Schedule" } dd.mono { (sid) } }
                @if let Some(r) = meta("request_id") { dt { "Request id" } dd.mono { (r) } }
                @if let Some(t) = crate::otel::Carrier::from_metadata(&j.metadata) {
                    @let id = t.trace_id().unwrap_or_default();
                    dt { "Trace" }
                    dd.mono #trace-id {
                        @match &state.settings().config.trace_url {
                            Some(url) => a href=(url.replace("{trace_id}", id)) rel="noopener" target="_blank" { (id) },
                            None => (id),
                        }
                    }
                }
            }
            @if viewer.access.can_write() {
                div.actions #job-actions {
                    @if !terminal {
                        (action_button(viewer, &format!("/ui/jobs/{}/cancel", j.id), "Cancel", "cancel", None))
                    }
                    @if j.state == StateName::Scheduled {
                        (action_button(viewer, &format!("/ui/jobs/{}/run-now", j.id), "Run now", "run-now", None))
                    }
                    @if matches!(j.state, StateName::Failed | StateName::Cancelled) {
                        (action_button(viewer, &format!("/ui/jobs/{}/retry", j.id), "Retry", "retry", None))
                    }
                    @if j.state != StateName::Running {
                        (action_button(viewer, &format!("/ui/jobs/{}/delete", j.id), "Delete", "delete", Some("Delete this job and its attempts for good?")))
                    }
                    a.button #copy href={ "/ui/enqueue?copy=" (j.id) } { "Enqueue a copy…" }
                }
            }
            h2 { "Payload" }
            pre.json #payload { (pretty(&j.payload)) }
            @if let Some(o) = &j.output { h2 { "Output" } pre.json #output { (pretty(o)) } }
            @if let Some(e) = &j.last_error { h2 { "Last error" } pre.error #last-error { (e) } }
            h2 { "Metadata" }
            pre.json { (pretty(&j.metadata)) }
            h2 { "Attempts" }
            @if detail.attempts.is_empty() {
                p.muted { @if j.state == StateName::Running { "The first attempt is running." } @else { "No finished attempt yet." } }
            }
            @for a in &detail.attempts {
                section.attempt data-attempt=(a.attempt) {
                    h3 { "Attempt " (a.attempt) " · " (state_badge(&a.outcome)) }
                    dl.facts {
                        dt { "Worker" } dd.mono { (a.worker_id.map(|w| w.to_string()).unwrap_or_else(|| "—".into())) }
                        dt { "Started" } dd { (time_opt(&a.started_at)) }
                        dt { "Finished" } dd { (time(&a.finished_at)) }
                        @if let Some(st) = a.started_at {
                            dt { "Took" } dd { (seconds((a.finished_at - st).num_milliseconds() as f64 / 1000.0)) }
                        }
                    }
                    @if let Some(e) = &a.error { pre.error { (e) } }
                    @if let Some(l) = &a.log { details open { summary { "Captured log" } pre.log { (l) } } }
                }
            }
        }
    })
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

/// Cancel a job (the API's rules and answers).
pub async fn job_cancel(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Page {
    let r = jobs::cancel(State(state), Path(id.clone()))
        .await
        .map_err(|e| refused(&viewer, e))?;
    Ok(Redirect::to(&format!("/ui/jobs/{id}?done={}", r.0.result)).into_response())
}

/// Retry a failed or cancelled job.
pub async fn job_retry(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Page {
    jobs::retry(State(state), Path(id.clone()))
        .await
        .map_err(|e| refused(&viewer, e))?;
    Ok(Redirect::to(&format!("/ui/jobs/{id}?done=retried")).into_response())
}

/// Make a job waiting for a future time due now.
pub async fn job_run_now(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Page {
    dashboard::run_now(State(state), Path(id.clone()))
        .await
        .map_err(|e| refused(&viewer, e))?;
    Ok(Redirect::to(&format!("/ui/jobs/{id}?done=run_now")).into_response())
}

/// Delete a finished or waiting job.
pub async fn job_delete(
    State(state): State<AppState>,
    viewer: Viewer,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> Page {
    dashboard::delete_job(State(state), Extension(access), Path(id))
        .await
        .map_err(|e| refused(&viewer, e))?;
    Ok(Redirect::to("/ui/jobs?done=deleted").into_response())
}

// ---------------------------------------------------------------- enqueue

/// Fields of the enqueue form.
#[derive(Debug, Default, Deserialize)]
pub struct EnqueueForm {
    queue: Option<String>,
    kind: Option<String>,
    payload: Option<String>,
    priority: Option<String>,
    delay: Option<String>,
    max_attempts: Option<String>,
    /// Prefill from this job (GET only).
    copy: Option<String>,
}

/// The enqueue form, optionally prefilled from an existing job ("enqueue a copy").
pub async fn enqueue_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(mut f): Query<EnqueueForm>,
) -> Page {
    if let Some(id) = given(&f.copy) {
        let d = jobs::get(
            State(state.clone()),
            Path(id),
            crate::api::extract::Query(GetQuery { wait: None }),
        )
        .await
        .map_err(|e| refused(&viewer, e))?
        .0;
        f.queue = Some(d.job.queue);
        f.kind = Some(d.job.kind);
        f.payload = Some(pretty(&d.job.payload));
        f.priority = Some(d.job.priority.to_string());
    }
    let known = queue_names(&state).await;
    ok(page(
        &viewer,
        "Enqueue a job",
        "/ui/enqueue",
        enqueue_markup(&state, &viewer, &f, &known, None),
    ))
}

fn enqueue_markup(
    state: &AppState,
    viewer: &Viewer,
    f: &EnqueueForm,
    known: &[String],
    error: Option<&str>,
) -> Markup {
    html! {
        @if !viewer.access.can_write() { p.muted { "Read-only: you can look at this form but not submit it." } }
        form.card.stack method="post" action="/ui/enqueue" #enqueue-form {
            (csrf_field(viewer))
            @if let Some(e) = error { p.error role="alert" #form-error { (e) } }
            label { "Queue" input name="queue" #queue list="known-queues" required value=(given(&f.queue).unwrap_or_else(|| "default".into())); }
            label { "Kind" input name="kind" #kind list="known-kinds" required value=[given(&f.kind)]; }
            label { "Payload (JSON)"
                textarea name="payload" #payload rows="10" spellcheck="false" data-json aria-describedby="payload-msg" {
                    (given(&f.payload).unwrap_or_else(|| "{}".into()))
                }
            }
            p.hint #payload-msg aria-live="polite" {}
            div.row {
                label { "Priority" input name="priority" type="number" min="-100" max="100" value=[given(&f.priority)] placeholder="0"; }
                label { "Delay" input name="delay" value=[given(&f.delay)] placeholder="30s"; }
                label { "Max attempts" input name="max_attempts" type="number" min="1" max="1000" value=[given(&f.max_attempts)]; }
            }
            button type="submit" #submit-enqueue disabled[!viewer.access.can_write()] { "Enqueue" }
            (datalists(state, known))
        }
    }
}

fn int_field(name: &str, v: &Option<String>) -> Result<Option<i32>, ApiError> {
    given(v)
        .map(|s| {
            s.parse::<i32>()
                .map_err(|_| ApiError::invalid(name, format!("{s:?} is not a whole number")))
        })
        .transpose()
}

/// Enqueues through `POST /v1/jobs`'s handler; errors come back on the form.
pub async fn enqueue(
    State(state): State<AppState>,
    viewer: Viewer,
    Extension(request_id): Extension<RequestId>,
    Form(f): Form<EnqueueForm>,
) -> Page {
    let built = (|| -> Result<EnqueueRequest, ApiError> {
        let payload = match given(&f.payload) {
            None => None,
            Some(text) => Some(
                serde_json::from_str(&text)
                    .map_err(|e| ApiError::invalid("payload", format!("is not valid JSON: {e}")))?,
            ),
        };
        Ok(EnqueueRequest {
            queue: given(&f.queue).unwrap_or_default(),
            kind: given(&f.kind).unwrap_or_default(),
            payload,
            priority: int_field("priority", &f.priority)?,
            run_at: None,
            delay: given(&f.delay),
            max_attempts: int_field("max_attempts", &f.max_attempts)?,
            unique_key: None,
            timeout: None,
            metadata: Some(serde_json::Map::from_iter([(
                "enqueued_from".to_owned(),
                serde_json::Value::String("dashboard".into()),
            )])),
            concurrency_key: None,
        })
    })();
    let result = match built {
        Ok(req) => {
            jobs::enqueue(
                State(state.clone()),
                Extension(request_id),
                HeaderMap::new(),
                Json(req),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((_, Json(done))) => Ok(Redirect::to(&format!("/ui/jobs/{}", done.id)).into_response()),
        Err(ApiError::Internal(d)) => Err(layout::internal(&d)),
        Err(e) => {
            let known = queue_names(&state).await;
            Ok(respond(
                e.status(),
                page(
                    &viewer,
                    "Enqueue a job",
                    "/ui/enqueue",
                    enqueue_markup(&state, &viewer, &f, &known, Some(&e.to_string())),
                ),
            ))
        }
    }
}

// ---------------------------------------------------------------- queues

/// Queues with counts and limits; pause and resume.
pub async fn queues(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(done): Query<Done>,
) -> Page {
    let list = queues::list(State(state))
        .await
        .map_err(|e| refused(&viewer, e))?
        .0
        .queues;
    let body = html! {
        (flash_banner(done.done.as_deref()))
        @if list.is_empty() { p.muted { "No queues yet." } } @else {
        div.scroll {
        table #queues-table {
            thead { tr {
                th { "Queue" } th { "State" } th { "Available" } th { "Scheduled" } th { "Running" }
                th { "Failed (24 h)" } th { "Concurrency" } th { "Rate" } th { "Per key" } th { "Max attempts" } th { "Timeout" }
                th { "Keeps completed" } th { span.visually-hidden { "Actions" } }
            } }
            tbody {
                @for q in &list {
                    tr data-queue=(q.name) {
                        td { a href={ "/ui/jobs?queue=" (q.name) } { (q.name) } }
                        td { @if q.paused { span.badge.warn { "paused" } } @else { "active" } }
                        td.num { (q.available) } td.num { (q.scheduled) } td.num { (q.running) } td.num { (q.failed_recently) }
                        td.num { (opt(q.concurrency_limit)) }
                        td { @if let Some(r) = q.rate_limit { (r) " / " (seconds(q.rate_period_ms as f64 / 1000.0)) } @else { "—" } }
                        td.num { (opt(q.key_concurrency)) } td.num { (opt(q.max_attempts)) }
                        td { (q.timeout_ms.map(|t| seconds(t as f64 / 1000.0)).unwrap_or_else(|| "—".into())) }
                        td { (if q.keep_completed { "yes" } else { "no" }) }
                        td.actions {
                            @if viewer.access.can_write() {
                                @if q.paused {
                                    (action_button(&viewer, &format!("/ui/queues/{}/resume", q.name), "Resume", &format!("resume-{}", q.name), None))
                                } @else {
                                    (action_button(&viewer, &format!("/ui/queues/{}/pause", q.name), "Pause", &format!("pause-{}", q.name), None))
                                }
                                a.button href={ "/ui/queues/" (q.name) } id={ "edit-" (q.name) } { "Edit" }
                            }
                        }
                    }
                }
            }
        }
        }
        }
    };
    ok(page(&viewer, "Queues", "/ui/queues", body))
}

fn opt(v: Option<i32>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "—".into())
}

/// Pause a queue.
pub async fn queue_pause(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Page {
    queues::pause(State(state), Path(name))
        .await
        .map_err(|e| refused(&viewer, e))?;
    Ok(Redirect::to("/ui/queues?done=paused").into_response())
}

/// Resume a queue.
pub async fn queue_resume(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Page {
    queues::resume(State(state), Path(name))
        .await
        .map_err(|e| refused(&viewer, e))?;
    Ok(Redirect::to("/ui/queues?done=resumed").into_response())
}

/// Fields of the queue settings form; an empty limit removes it.
#[derive(Debug, Default, Deserialize)]
pub struct QueueForm {
    concurrency_limit: Option<String>,
    rate_limit: Option<String>,
    burst: Option<String>,
    key_concurrency: Option<String>,
    max_attempts: Option<String>,
    timeout: Option<String>,
    backoff_base: Option<String>,
    backoff_max: Option<String>,
    keep_completed: Option<String>,
}

fn ms_text(ms: Option<i64>) -> Option<String> {
    ms.map(|ms| {
        if ms % 1000 == 0 {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    })
}

fn rate_text(limit: Option<i32>, period_ms: i64) -> Option<String> {
    limit.map(|l| match period_ms {
        1000 => format!("{l}/s"),
        60_000 => format!("{l}/m"),
        3_600_000 => format!("{l}/h"),
        86_400_000 => format!("{l}/d"),
        p if p % 1000 == 0 => format!("{l}/{}s", p / 1000),
        p => format!("{l}/{p}ms"),
    })
}

/// The settings form of one queue, prefilled.
pub async fn queue_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Page {
    let q = queues::get(State(state), Path(name.clone()))
        .await
        .map_err(|e| refused(&viewer, e))?
        .0;
    let f = QueueForm {
        concurrency_limit: q.concurrency_limit.map(|v| v.to_string()),
        rate_limit: rate_text(q.rate_limit, q.rate_period_ms),
        burst: q.rate_burst.map(|v| v.to_string()),
        key_concurrency: q.key_concurrency.map(|v| v.to_string()),
        max_attempts: q.max_attempts.map(|v| v.to_string()),
        timeout: ms_text(q.timeout_ms),
        backoff_base: ms_text(q.backoff_base_ms),
        backoff_max: ms_text(q.backoff_max_ms),
        keep_completed: Some(if q.keep_completed { "yes" } else { "no" }.into()),
    };
    ok(page(
        &viewer,
        &format!("Queue {name}"),
        "/ui/queues",
        queue_markup(&viewer, &name, &f, None),
    ))
}

fn queue_markup(viewer: &Viewer, name: &str, f: &QueueForm, error: Option<&str>) -> Markup {
    let field = |label: &str, key: &str, v: &Option<String>, hint: &str| {
        html! { label { (label) input name=(key) id=(key) value=[given(v)] placeholder=(hint); } }
    };
    html! {
        form.card.stack method="post" action={ "/ui/queues/" (name) } #queue-form {
            (csrf_field(viewer))
            @if let Some(e) = error { p.error role="alert" #form-error { (e) } }
            p.hint { "An empty limit removes it. Durations: 30s, 5m, 250ms. Rates: 10/s, 100/m, 20/10s." }
            (field("Concurrency limit", "concurrency_limit", &f.concurrency_limit, "none"))
            (field("Rate limit", "rate_limit", &f.rate_limit, "none"))
            (field("Burst", "burst", &f.burst, "= rate"))
            (field("Per-key concurrency", "key_concurrency", &f.key_concurrency, "none"))
            (field("Max attempts", "max_attempts", &f.max_attempts, "default"))
            (field("Timeout", "timeout", &f.timeout, "default"))
            (field("Backoff base", "backoff_base", &f.backoff_base, "default"))
            (field("Backoff max", "backoff_max", &f.backoff_max, "default"))
            label { "Keep completed jobs"
                select name="keep_completed" {
                    option value="yes" selected[f.keep_completed.as_deref() != Some("no")] { "yes" }
                    option value="no" selected[f.keep_completed.as_deref() == Some("no")] { "no" }
                }
            }
            button type="submit" #save-queue disabled[!viewer.access.can_write()] { "Save" }
        }
    }
}

/// Saves queue settings through `PATCH /v1/queues/{name}`'s handler.
pub async fn queue_save(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    Form(f): Form<QueueForm>,
) -> Page {
    let built = (|| -> Result<QueueSettingsRequest, ApiError> {
        let limit = |field: &str, v: &Option<String>| -> Result<Option<Option<i32>>, ApiError> {
            Ok(Some(int_field(field, v)?))
        };
        let rate = given(&f.rate_limit);
        Ok(QueueSettingsRequest {
            max_attempts: int_field("max_attempts", &f.max_attempts)?,
            timeout: given(&f.timeout),
            backoff_base: given(&f.backoff_base),
            backoff_max: given(&f.backoff_max),
            keep_completed: given(&f.keep_completed).map(|v| v == "yes"),
            concurrency_limit: limit("concurrency_limit", &f.concurrency_limit)?,
            burst: if rate.is_some() {
                int_field("burst", &f.burst)?
            } else {
                None
            },
            rate_limit: Some(rate),
            key_concurrency: limit("key_concurrency", &f.key_concurrency)?,
        })
    })();
    let result = match built {
        Ok(req) => queues::update(State(state), Path(name.clone()), Json(req))
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(Redirect::to("/ui/queues?done=saved").into_response()),
        Err(ApiError::Internal(d)) => Err(layout::internal(&d)),
        Err(e) => Ok(respond(
            e.status(),
            page(
                &viewer,
                &format!("Queue {name}"),
                "/ui/queues",
                queue_markup(&viewer, &name, &f, Some(&e.to_string())),
            ),
        )),
    }
}

// ---------------------------------------------------------------- schedules

/// Schedules with next fire times (UTC, the schedule's zone, the viewer's); actions.
pub async fn schedules(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(done): Query<Done>,
) -> Page {
    let list = schedules::list(State(state))
        .await
        .map_err(|e| refused(&viewer, e))?
        .0
        .schedules;
    let body = html! {
        (flash_banner(done.done.as_deref()))
        @if list.is_empty() { p.muted { "No schedules. Declare them in ordinaut.toml or POST /v1/schedules." } } @else {
        div.scroll {
        table #schedules-table {
            thead { tr { th { "Schedule" } th { "Cron" } th { "Job" } th { "State" } th { "Next fire (UTC)" } th { "In its zone" } th { "Last fire" } th { span.visually-hidden { "Actions" } } } }
            tbody {
                @for s in &list {
                    @let zoned = s.timezone.parse::<chrono_tz::Tz>().ok().map(|tz| s.next_run_at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string());
                    tr data-schedule=(s.name) {
                        td { a href={ "/ui/schedules/" (s.name) } { (s.name) } @if s.declared { " " span.badge title="declared in ordinaut.toml" { "file" } } }
                        td.mono { (s.cron) }
                        td { (s.queue) " / " (s.kind) }
                        td { @if s.paused { span.badge.warn { "paused" } } @else { "active" } }
                        td { (time(&s.next_run_at)) }
                        td { (zoned.unwrap_or_default()) " " span.muted { (s.timezone) } }
                        td { (time_opt(&s.last_run_at)) }
                        td.actions {
                            @if viewer.access.can_write() {
                                @if s.paused {
                                    (action_button(&viewer, &format!("/ui/schedules/{}/resume", s.name), "Resume", &format!("resume-{}", s.name), None))
                                } @else {
                                    (action_button(&viewer, &format!("/ui/schedules/{}/pause", s.name), "Pause", &format!("pause-{}", s.name), None))
                                }
                                (action_button(&viewer, &format!("/ui/schedules/{}/trigger", s.name), "Run now", &format!("trigger-{}", s.name), None))
                                a.button href={ "/ui/schedules-new?edit=" (s.name) } id={ "edit-" (s.name) } { "Edit" }
                                (action_button(&viewer, &format!("/ui/schedules/{}/delete", s.name), "Delete", &format!("delete-{}", s.name), Some("Delete this schedule? Its jobs stay.")))
                            }
                        }
                    }
                }
            }
        }
        }
        }
        p.hint { "Hover a time to see it in your own time zone." }
        @if viewer.access.can_write() { p { a.button #new-schedule href="/ui/schedules-new" { "New schedule…" } } }
    };
    ok(page(&viewer, "Schedules", "/ui/schedules", body))
}

/// One schedule: its job template and its recent fires (with their jobs, misses and
/// overlap skips).
pub async fn schedule(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Page {
    let s = schedules::get(State(state), Path(name.clone()))
        .await
        .map_err(|e| refused(&viewer, e))?
        .0;
    let zoned = |t: &chrono::DateTime<Utc>| {
        s.timezone
            .parse::<chrono_tz::Tz>()
            .map(|tz| {
                t.with_timezone(&tz)
                    .format("%Y-%m-%d %H:%M:%S %Z")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let body = html! {
        dl.facts {
            dt { "Cron" } dd.mono { (s.cron) }
            dt { "Zone" } dd { (s.timezone) }
            dt { "Job" } dd { (s.queue) " / " (s.kind) }
            dt { "State" } dd { @if s.paused { span.badge.warn { "paused" } } @else { "active" } }
            dt { "Overlap" } dd { (s.overlap) }
            dt { "Next fire" } dd { (time(&s.next_run_at)) " UTC · " (zoned(&s.next_run_at)) }
            dt { "Last fire" } dd { (time_opt(&s.last_run_at)) }
        }
        h2 { "Payload" }
        pre.json { (pretty(&s.payload)) }
        h2 { "Recent fires" }
        @let fires = s.recent_fires.as_deref().unwrap_or_default();
        @if fires.is_empty() { p.muted #no-fires { "It has not fired yet." } } @else {
            div.scroll {
            table #fires-table {
                thead { tr { th { "Fire time (UTC)" } th { "In its zone" } th { "Outcome" } th { "Job" } th { "Skipped" } } }
                tbody {
                    @for f in fires {
                        tr {
                            td { (time(&f.fire_time)) } td { (zoned(&f.fire_time)) }
                            td { (f.outcome) }
                            td { @if let Some(j) = f.job_id { a.mono href={ "/ui/jobs/" (j) } { (short(&j.to_string())) } } }
                            td.num { @if f.skipped > 0 { (f.skipped) } }
                        }
                    }
                }
            }
            }
        }
    };
    ok(page(
        &viewer,
        &format!("Schedule {name}"),
        "/ui/schedules",
        body,
    ))
}

/// Fields of the schedule form (create, or replace by name).
#[derive(Debug, Default, Deserialize)]
pub struct ScheduleForm {
    name: Option<String>,
    cron: Option<String>,
    timezone: Option<String>,
    queue: Option<String>,
    kind: Option<String>,
    payload: Option<String>,
    overlap: Option<String>,
    /// Prefill from this schedule (GET only).
    edit: Option<String>,
}

/// The schedule form, empty or prefilled from `?edit=<name>`.
pub async fn schedule_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(mut f): Query<ScheduleForm>,
) -> Page {
    if let Some(name) = given(&f.edit) {
        let s = schedules::get(State(state.clone()), Path(name))
            .await
            .map_err(|e| refused(&viewer, e))?
            .0;
        f = ScheduleForm {
            name: Some(s.name),
            cron: Some(s.cron),
            timezone: Some(s.timezone),
            queue: Some(s.queue),
            kind: Some(s.kind),
            payload: Some(pretty(&s.payload)),
            overlap: Some(s.overlap),
            edit: None,
        };
    }
    ok(page(
        &viewer,
        "Schedule",
        "/ui/schedules",
        schedule_markup(&state, &viewer, &f, None),
    ))
}

fn schedule_markup(
    state: &AppState,
    viewer: &Viewer,
    f: &ScheduleForm,
    error: Option<&str>,
) -> Markup {
    html! {
        p.hint { "Saving a name that exists replaces that schedule. Schedules declared in ordinaut.toml are rewritten from the file when the scheduler starts." }
        form.card.stack method="post" action="/ui/schedules" #schedule-form {
            (csrf_field(viewer))
            @if let Some(e) = error { p.error role="alert" #form-error { (e) } }
            label { "Name" input name="name" #name required value=[given(&f.name)]; }
            label { "Cron" input name="cron" #cron required value=[given(&f.cron)] placeholder="30 2 * * *"; }
            label { "Time zone" input name="timezone" #timezone value=[given(&f.timezone)] placeholder=(state.settings().config.tz); }
            label { "Queue" input name="queue" #queue required value=(given(&f.queue).unwrap_or_else(|| "default".into())); }
            label { "Kind" input name="kind" #kind list="known-kinds" required value=[given(&f.kind)]; }
            label { "Payload (JSON)"
                textarea name="payload" #payload rows="6" spellcheck="false" data-json aria-describedby="payload-msg" {
                    (given(&f.payload).unwrap_or_else(|| "{}".into()))
                }
            }
            p.hint #payload-msg aria-live="polite" {}
            label { "While the previous job is live"
                select name="overlap" {
                    option value="allow" selected[f.overlap.as_deref() != Some("skip")] { "fire anyway (allow)" }
                    option value="skip" selected[f.overlap.as_deref() == Some("skip")] { "skip (skip)" }
                }
            }
            button type="submit" #save-schedule disabled[!viewer.access.can_write()] { "Save" }
            (datalists(state, &[]))
        }
    }
}

/// Saves a schedule through `POST /v1/schedules`'s handler; errors come back on the form.
pub async fn schedule_save(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(f): Form<ScheduleForm>,
) -> Page {
    let payload = match given(&f.payload) {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ApiError::invalid("payload", format!("is not valid JSON: {e}"))),
    };
    let result = match payload {
        Ok(payload) => {
            let req = schedules::ScheduleRequest {
                name: given(&f.name).unwrap_or_default(),
                cron: given(&f.cron).unwrap_or_default(),
                timezone: given(&f.timezone),
                queue: given(&f.queue).unwrap_or_default(),
                kind: given(&f.kind).unwrap_or_default(),
                payload,
                priority: None,
                max_attempts: None,
                timeout: None,
                unique_key: None,
                overlap: given(&f.overlap),
                misfire_grace: None,
            };
            schedules::create(State(state.clone()), Json(req))
                .await
                .map(|s| s.0.name)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(name) => {
            Ok(Redirect::to(&format!("/ui/schedules/{}", urlencoded(&name))).into_response())
        }
        Err(ApiError::Internal(d)) => Err(layout::internal(&d)),
        Err(e) => Ok(respond(
            e.status(),
            page(
                &viewer,
                "Schedule",
                "/ui/schedules",
                schedule_markup(&state, &viewer, &f, Some(&e.to_string())),
            ),
        )),
    }
}

fn urlencoded(s: &str) -> String {
    // Names are validated ([A-Za-z0-9_.:-]); nothing in them needs escaping in a path.
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
        .collect()
}

/// Pause a schedule.
pub async fn schedule_pause(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Page {
    schedules::pause(State(state), Path(name))
        .await
        .map_err(|e| refused(&viewer, e))?;
    Ok(Redirect::to("/ui/schedules?done=schedule_paused").into_response())
}

/// Resume a schedule.
pub async fn schedule_resume(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Page {
    schedules::resume(State(state), Path(name))
        .await
        .map_err(|e| refused(&viewer, e))?;
    Ok(Redirect::to("/ui/schedules?done=schedule_resumed").into_response())
}

/// Fire a schedule once now.
pub async fn schedule_trigger(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Page {
    let t = schedules::trigger(State(state), Path(name))
        .await
        .map_err(|e| refused(&viewer, e))?;
    Ok(Redirect::to(&format!("/ui/jobs/{}", t.0.job_id)).into_response())
}

/// Delete a schedule.
pub async fn schedule_delete(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Page {
    schedules::delete(State(state), Path(name))
        .await
        .map_err(|e| refused(&viewer, e))?;
    Ok(Redirect::to("/ui/schedules?done=schedule_deleted").into_response())
}

// ---------------------------------------------------------------- workers

/// Live worker processes: host, queues, slots, heartbeat, the jobs they run.
pub async fn workers(State(state): State<AppState>, viewer: Viewer) -> Page {
    let list = workers::list(State(state))
        .await
        .map_err(|e| refused(&viewer, e))?
        .0
        .workers;
    let now = Utc::now();
    let body = html! {
        @if list.is_empty() { p.muted #no-workers { "No worker is running." } } @else {
        div.scroll {
        table #workers-table {
            thead { tr { th { "Worker" } th { "Host" } th { "Queues" } th { "Slots busy / total" } th { "Last heartbeat" } th { "Started" } th { "Version" } th { "Running jobs" } } }
            tbody {
                @for w in &list {
                    tr {
                        td.mono { (short(&w.id.to_string())) }
                        td { (w.hostname) " (pid " (w.pid) ")" }
                        td { (w.queues.join(", ")) }
                        td.num { (w.running) " / " (w.concurrency) }
                        td { (time(&w.last_heartbeat_at)) " " span.muted { "(" (seconds((now - w.last_heartbeat_at).num_milliseconds().max(0) as f64 / 1000.0)) " ago)" } }
                        td { (time(&w.started_at)) }
                        td { (w.version) }
                        td { @for j in w.running_jobs.iter().take(20) { a.mono href={ "/ui/jobs/" (j) } { (short(&j.to_string())) } " " } }
                    }
                }
            }
        }
        }
        }
    };
    ok(page(&viewer, "Workers", "/ui/workers", body))
}

// ---------------------------------------------------------------- bulk

/// Fields of the bulk forms.
#[derive(Debug, Default)]
pub struct BulkForm {
    action: Option<String>,
    queue: Option<String>,
    kind: Option<String>,
    state: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    newest: Option<String>,
    matched: Option<String>,
    /// Selected jobs (repeated `ids` fields), if any.
    ids: Vec<String>,
    /// The form came from the "selected jobs" button: an empty selection selects nothing.
    selection: bool,
}

impl BulkForm {
    /// Parses the form by hand: `ids` repeats, which serde_urlencoded cannot map.
    fn parse(body: &[u8]) -> Result<BulkForm, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| ApiError::invalid("form", format!("cannot be read: {e}")))?;
        let mut f = BulkForm::default();
        for (k, v) in pairs {
            let v = Some(v);
            match k.as_str() {
                "action" => f.action = v,
                "queue" => f.queue = v,
                "kind" => f.kind = v,
                "state" => f.state = v,
                "created_after" => f.created_after = v,
                "created_before" => f.created_before = v,
                "newest" => f.newest = v,
                "matched" => f.matched = v,
                "selection" => f.selection = true,
                "ids" => f.ids.extend(v),
                _ => {}
            }
        }
        Ok(f)
    }
}

fn bulk_request(f: &BulkForm) -> Result<BulkRequest, ApiError> {
    let ids = if f.selection || !f.ids.is_empty() {
        Some(
            f.ids
                .iter()
                .map(|i| crate::api::extract::parse_id("ids", i))
                .collect::<Result<Vec<_>, _>>()?,
        )
    } else {
        None
    };
    Ok(BulkRequest {
        ids,
        action: given(&f.action).unwrap_or_default(),
        queue: given(&f.queue),
        kind: given(&f.kind),
        state: parse_state(&f.state)?,
        created_after: utc_time(&f.created_after),
        created_before: utc_time(&f.created_before),
        newest: given(&f.newest),
    })
}

fn describe(f: &BulkForm) -> Markup {
    html! {
        ul.filter #bulk-filter {
            @if f.selection || !f.ids.is_empty() { li { "selected jobs: " strong { (f.ids.len()) } } }
            li { "queue: " strong { (given(&f.queue).unwrap_or_else(|| "any".into())) } }
            li { "kind: " strong { (given(&f.kind).unwrap_or_else(|| "any".into())) } }
            li { "state: " strong { (given(&f.state).unwrap_or_else(|| "any".into())) } }
            @if let Some(t) = utc_time(&f.created_after) { li { "created at or after: " strong { (t) } } }
            @if let Some(t) = utc_time(&f.created_before) { li { "created before: " strong { (t) } } }
        }
    }
}

/// Shows exactly how many jobs the action would touch and asks to confirm.
pub async fn bulk_preview(
    State(state): State<AppState>,
    viewer: Viewer,
    body: axum::body::Bytes,
) -> Page {
    let f = BulkForm::parse(&body).map_err(|e| refused(&viewer, e))?;
    let req = bulk_request(&f).map_err(|e| refused(&viewer, e))?;
    let count = dashboard::bulk_count(State(state), Json(req.clone()))
        .await
        .map_err(|e| refused(&viewer, e))?
        .0;
    let action = req.action.clone();
    let body = html! {
        p { "Action: " strong #bulk-action-name { (action) } ", on every job matching:" }
        (describe(&f))
        @if count.matched == 0 {
            p #bulk-count data-count="0" { "No job matches: nothing to do." }
        } @else {
            p #bulk-count data-count=(count.matched) { strong { (count.matched) } " jobs match now. Jobs enqueued after this count are left alone." }
            form method="post" action="/ui/bulk/run" {
                (csrf_field(&viewer))
                input type="hidden" name="action" value=(action);
                (filter_fields(&f.queue, &f.kind, &f.state))
                (time_fields(&f.created_after, &f.created_before))
                @if f.selection { input type="hidden" name="selection" value="1"; }
                @for id in &f.ids { input type="hidden" name="ids" value=(id); }
                @if let Some(n) = count.newest { input type="hidden" name="newest" value=(n); }
                input type="hidden" name="matched" value=(count.matched);
                button type="submit" #bulk-confirm { "Confirm: " (action) " " (count.matched) " jobs" }
            }
        }
        p { a href="/ui/jobs" { "Cancel and go back" } }
    };
    ok(page(&viewer, "Confirm bulk action", "/ui/jobs", body))
}

/// Runs the confirmed action in batches and shows what it did.
pub async fn bulk_run(
    State(state): State<AppState>,
    viewer: Viewer,
    Extension(access): Extension<Access>,
    body: axum::body::Bytes,
) -> Page {
    let f = BulkForm::parse(&body).map_err(|e| refused(&viewer, e))?;
    let req = bulk_request(&f).map_err(|e| refused(&viewer, e))?;
    let r = dashboard::bulk_run(State(state), Extension(access), Json(req))
        .await
        .map_err(|e| refused(&viewer, e))?
        .0;
    let shown: Option<i64> = given(&f.matched).and_then(|m| m.parse().ok());
    let body = html! {
        p #bulk-result data-affected=(r.affected) {
            "Done: " strong { (r.affected) } " jobs changed"
            @if let Some(m) = shown { " of the " (m) " counted" }
            "."
        }
        (describe(&f))
        p { "Recorded as audit entry " a href="/ui/audit" { "#" (r.audit_id) } "." }
        p { a href="/ui/jobs" { "Back to jobs" } }
    };
    ok(page(&viewer, "Bulk action done", "/ui/jobs", body))
}

// ---------------------------------------------------------------- audit

/// Paging of the audit page.
#[derive(Debug, Deserialize)]
pub struct AuditPaging {
    before: Option<i64>,
}

/// The audit log of bulk actions and deletes.
pub async fn audit(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<AuditPaging>,
) -> Page {
    let page_ = dashboard::audit_log(
        State(state),
        crate::api::extract::Query(AuditQuery {
            before: p.before,
            limit: Some(50),
        }),
    )
    .await
    .map_err(|e| refused(&viewer, e))?
    .0;
    let body = html! {
        @if page_.entries.is_empty() { p.muted #no-audit { "Nothing recorded yet." } } @else {
        div.scroll {
        table #audit-table {
            thead { tr { th { "#" } th { "When" } th { "Who" } th { "Action" } th { "On" } th { "Matched" } th { "Changed" } th { "Finished" } } }
            tbody {
                @for e in &page_.entries {
                    tr data-action=(e.action) {
                        td.num { (e.id) } td { (time(&e.at)) } td { (e.actor) } td { (e.action) }
                        td.mono { (e.target.to_string()) }
                        td.num { (e.matched) } td.num { (e.affected) } td { (time_opt(&e.finished_at)) }
                    }
                }
            }
        }
        }
        }
        @if let Some(b) = page_.next_before { p { a href={ "/ui/audit?before=" (b) } { "Older entries →" } } }
    };
    ok(page(&viewer, "Audit log", "/ui/audit", body))
}
