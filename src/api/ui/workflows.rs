//! Dashboard pages of workflows: the list, and one workflow's graph (its steps by stage,
//! each with its state, what it waits for and its outcome), live while it runs, with
//! cancel and retry. Reads and acts through the `/v1/workflows` handlers.

// Handlers answer with a Response either way (a page or an error page).
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::extract::Query;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{banner, csrf_field, pretty, state_badge, time, time_opt};
use super::pages::{Page, Ui, table_or};
use crate::api::extract::Path;
use crate::api::workflows::{self as api, ListQuery};
use crate::db::workflows::{Step, Workflow};

/// `?state=` of the list and `?done=` after an action.
#[derive(Debug, Default, Deserialize)]
pub struct WorkflowsQuery {
    state: Option<String>,
    done: Option<String>,
}

fn flash(done: Option<&str>) -> Markup {
    banner(match done {
        Some("cancelled") => {
            Some("Workflow cancelled: waiting steps at once, running jobs are stopping.")
        }
        Some("retried") => Some("Failed and cancelled steps enqueued again."),
        _ => None,
    })
}

/// Workflows, newest first, with their states and step counts (live: the fragment
/// route answers the list alone).
pub async fn workflows(ui: Ui, Query(q): Query<WorkflowsQuery>) -> Page {
    let body = list_body(&ui, q.state.clone()).await?;
    let fragment = match &q.state {
        Some(s) => format!("/ui/fragments/workflows?state={s}"),
        None => "/ui/fragments/workflows".to_owned(),
    };
    ui.live(("Workflows", "/ui/workflows"), body, |body| {
        html! {
            (flash(q.done.as_deref()))
            form.filters method="get" action="/ui/workflows" {
                label { "State " select name="state" {
                    option value="" { "any" }
                    @for s in ["running", "completed", "failed", "cancelled"] {
                        option value=(s) selected[q.state.as_deref() == Some(s)] { (s) }
                    }
                } }
                button type="submit" { "Filter" }
            }
            div hx-get=(fragment) hx-trigger="every 2s" hx-swap="innerHTML" { (body) }
        }
    })
}

async fn list_body(ui: &Ui, filter: Option<String>) -> Result<Markup, Response> {
    let query = ListQuery {
        state: filter.filter(|s| !s.is_empty()),
        cursor: None,
        limit: Some(100),
    };
    let query = crate::api::extract::Query(query);
    let list = ui.read(api::list(ui.api(), query)).await?.workflows;
    Ok(html! {
        (table_or(list.is_empty(), html! { p.muted #no-workflows { "No workflow yet." } }, html! {
        table #workflows-table {
            thead { tr { th { "Workflow" } th { "Name" } th { "State" } th { "Steps" } th { "By state" } th { "Created" } th { "Finished" } } }
            tbody {
                @for w in &list {
                    tr {
                        td.mono { a href={ "/ui/workflows/" (w.id) } { (w.id) } }
                        td { (w.name) }
                        td { (state_badge(&w.state)) }
                        td.num { (w.steps) }
                        td { @if let Some(m) = w.counts.as_object() { @for (s, n) in m { (state_badge(s)) " " (n.to_string()) " " } } }
                        td { (time(&w.created_at)) }
                        td { (time_opt(&w.finished_at)) }
                    }
                }
            }
        }
        }))
    })
}

/// Each step's stage: the length of the longest chain of dependencies before it.
fn stages(steps: &[Step]) -> Vec<usize> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = steps
        .iter()
        .map(|s| {
            s.depends_on
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d["name"].as_str().and_then(|n| index.get(n).copied()))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let mut stage: Vec<Option<usize>> = vec![None; steps.len()];
    // Iterative depth-first evaluation; the graph is acyclic (checked at submit), the
    // guard only keeps a bad row from looping.
    for start in 0..steps.len() {
        let mut stack = vec![start];
        let mut guard = 0;
        while let Some(&v) = stack.last() {
            guard += 1;
            if guard > 4 * steps.len() * steps.len().max(1) + 16 {
                break;
            }
            if stage[v].is_some() {
                stack.pop();
                continue;
            }
            let missing: Vec<usize> = deps[v]
                .iter()
                .copied()
                .filter(|&d| stage[d].is_none())
                .collect();
            if missing.is_empty() {
                stage[v] = Some(
                    deps[v]
                        .iter()
                        .map(|&d| stage[d].unwrap_or(0) + 1)
                        .max()
                        .unwrap_or(0),
                );
                stack.pop();
            } else {
                stack.extend(missing);
            }
        }
    }
    stage.into_iter().map(|s| s.unwrap_or(0)).collect()
}

fn graph(w: &Workflow) -> Markup {
    let stage = stages(&w.jobs);
    let last = stage.iter().copied().max().unwrap_or(0);
    html! {
        @for n in 0..=last {
            section.stage data-stage=(n) {
                h3 { "Stage " (n + 1) }
                div.scroll {
                table.steps {
                    thead { tr { th { "Step" } th { "State" } th { "Job" } th { "Depends on" } th { "Outcome" } th { "Ended" } } }
                    tbody {
                        @for (s, _) in w.jobs.iter().zip(&stage).filter(|(_, st)| **st == n) {
                            tr data-step=(s.name) data-state=(s.state) {
                                td { strong { (s.name) } br; span.muted { (s.queue) " / " (s.kind) } }
                                td {
                                    (state_badge(&s.state))
                                    @if let Some(js) = &s.job_state { " " (state_badge(js)) }
                                    @if s.state == "waiting" { br; span.muted { "waiting for " (s.pending) } }
                                }
                                td.mono { a href={ "/ui/jobs/" (s.job_id) } { (s.job_id) } }
                                td { @if let Some(a) = s.depends_on.as_array() { @for d in a {
                                    @let name = d["name"].as_str().unwrap_or("");
                                    @let pol = d["on_failure"].as_str().unwrap_or("cancel");
                                    span { (name) @if pol != "cancel" { span.muted { " (" (pol) ")" } } } " "
                                } } }
                                td {
                                    @if let Some(o) = &s.output { details { summary { "output" } pre { (pretty(o)) } } }
                                    @if let Some(e) = &s.error { pre.error { (e) } }
                                }
                                td { (time_opt(&s.finished_at)) }
                            }
                        }
                    }
                }
                }
            }
        }
    }
}

async fn detail(ui: &Ui, id: &str) -> Result<Markup, Response> {
    let viewer = &ui.viewer;
    let w = ui.read_key(id.to_owned(), api::get).await?;
    let running = w.summary.state == "running";
    let fragment = format!("/ui/fragments/workflows/{}", w.summary.id);
    Ok(html! {
        div #workflow data-state=(w.summary.state) hx-get=[running.then_some(&fragment)] hx-trigger=[running.then_some("every 1s")] hx-swap="outerHTML" {
            dl.facts {
                dt { "Id" } dd.mono #workflow-id { (w.summary.id) }
                dt { "Name" } dd { (w.summary.name) }
                dt { "State" } dd #workflow-state { (state_badge(&w.summary.state)) }
                dt { "Steps" } dd { (w.jobs.len()) }
                dt { "Created" } dd { (time(&w.summary.created_at)) }
                dt { "Finished" } dd { (time_opt(&w.summary.finished_at)) }
            }
            @if viewer.access.can_write() {
                div.actions {
                    @if running {
                        form method="post" action={ "/ui/workflows/" (w.summary.id) "/cancel" } {
                            (csrf_field(viewer)) button.danger type="submit" #cancel { "Cancel workflow" }
                        }
                    }
                    @if matches!(w.summary.state.as_str(), "failed" | "cancelled") {
                        form method="post" action={ "/ui/workflows/" (w.summary.id) "/retry" } {
                            (csrf_field(viewer)) button type="submit" #retry { "Retry failed steps" }
                        }
                    }
                }
            }
            (graph(&w))
            details { summary { "Metadata" } pre { (pretty(&w.summary.metadata)) } }
        }
    })
}

/// One workflow: its graph by stage, live while it runs (the fragment route answers
/// the graph alone).
pub async fn workflow(ui: Ui, Path(id): Path<String>, Query(q): Query<WorkflowsQuery>) -> Page {
    let body = detail(&ui, &id).await?;
    ui.live(("Workflow", "/ui/workflows"), body, |body| {
        html! { (flash(q.done.as_deref())) (body) }
    })
}
