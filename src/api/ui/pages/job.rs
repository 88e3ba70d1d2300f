//! One job's page and its actions (cancel, retry, run now, delete).

use super::*;

// ---------------------------------------------------------------- job detail

/// One job: everything about it and its attempts, live until it ends (its fragment
/// route answers the live part, polled while the job is not finished); actions.
pub async fn job(ui: Ui, Path(id): Path<String>, Query(done): Query<Done>) -> Page {
    let body = job_body(&ui, id).await?;
    ui.live(("Job", "/ui/jobs"), body, |body| {
        html! { (done.banner()) (body) }
    })
}

async fn job_body(ui: &Ui, id: String) -> Result<Markup, Response> {
    let (state, viewer) = (&ui.state, &ui.viewer);
    let detail = ui.job_detail(id).await?;
    let j = &detail.job;
    let s = state_name(j.state);
    let terminal = j.state.is_terminal();
    // A workflow step that ended without running has no job row to retry or delete:
    // its workflow's retry runs it.
    let never_ran = terminal && j.attempt == 0 && detail.workflow_step.is_some();
    // A waiting step can end without an event naming it (a dependency failed): poll.
    let trigger = if j.state == StateName::Waiting {
        "live, every 2s"
    } else {
        LIVE_TRIGGER
    };
    let fragment = format!("/ui/fragments/jobs/{}", j.id);
    let events = format!("job_id={}", j.id);
    let meta = |key: &str| {
        j.metadata
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    Ok(html! {
        div #job data-state=(s) data-live=[(!terminal).then_some(&events)] hx-get=[(!terminal).then_some(&fragment)] hx-trigger=[(!terminal).then_some(trigger)] hx-swap="outerHTML" {
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
                @if let Some(step) = &detail.workflow_step {
                    dt { "Workflow" }
                    dd #job-workflow { a href={ "/ui/workflows/" (step.workflow_id) } { (step.workflow_name) } }
                    dt { "Step" } dd #job-step { (step.step) " · " (state_badge(&step.state)) }
                    @if let Some(deps) = step.depends_on.as_array().filter(|d| !d.is_empty()) {
                        dt { @if j.state == StateName::Waiting { "Waits on" } @else { "Depends on" } }
                        dd #job-waits-on {
                            @for d in deps {
                                @let name = d["name"].as_str().unwrap_or("");
                                @let st = d["state"].as_str().unwrap_or("");
                                @let pol = d["on_failure"].as_str().unwrap_or("cancel");
                                span.dep data-dep=(name) data-state=(st) {
                                    (name) " " (state_badge(st))
                                    @if pol != "cancel" { span.muted { " (" (pol) ")" } }
                                }
                                " "
                            }
                            @if j.state == StateName::Waiting {
                                br; span.muted { (step.pending) " not ended yet" }
                            }
                        }
                    }
                }
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
                    @if matches!(j.state, StateName::Failed | StateName::Cancelled) && !never_ran {
                        (action_button(viewer, &format!("/ui/jobs/{}/retry", j.id), "Retry", "retry", None))
                    }
                    @if !matches!(j.state, StateName::Running | StateName::Waiting) && !never_ran {
                        (action_button(viewer, &format!("/ui/jobs/{}/delete", j.id), "Delete", "delete", Some("Delete this job and its attempts for good?")))
                    }
                    a.button #copy href={ "/ui/enqueue?copy=" (j.id) } { "Enqueue a copy…" }
                }
            }
            h2 { "Payload" }
            pre.json #payload { (pretty(&j.payload)) }
            @if let Some(p) = &j.progress { (progress_bar(p)) }
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

/// Delete a finished or waiting job.
pub async fn job_delete(
    ui: Ui,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> Page {
    let deleted =
        async { jobs::delete_job(ui.api(), Extension(access), JobPath::parse(id)?).await };
    act(&ui.viewer, deleted, |_| "/ui/jobs?done=deleted".into()).await
}

/// A running job's latest progress report: a bar with its percentage and message.
fn progress_bar(p: &serde_json::Value) -> Markup {
    let percent = p.get("percent").and_then(|v| v.as_f64());
    let message = p
        .get("message")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let attempt = p
        .get("attempt")
        .and_then(|v| v.as_i64())
        .unwrap_or_default();
    html! {
        h2 { "Progress" }
        p #progress {
            @if let Some(pc) = percent {
                progress max="100" value=(pc) { (pc) "%" } " " (pc) "% "
            }
            (message) " "
            span.muted { "(attempt " (attempt) ")" }
        }
    }
}
