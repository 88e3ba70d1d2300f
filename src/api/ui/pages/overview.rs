//! The overview: per queue jobs by state, throughput, waits, limits and workers.

use super::*;

// ---------------------------------------------------------------- overview

/// Overview: per queue, jobs by state, throughput, waits, limits and workers; live (its
/// fragment route answers the live part).
pub async fn overview(ui: Ui) -> Page {
    let body = overview_body(&ui.state, &ui.viewer).await?;
    ui.live(("Overview", "/ui"), body, |body| body)
}

async fn overview_body(state: &AppState, viewer: &Viewer) -> Result<Markup, Response> {
    let queues = from_api(viewer, queues::list(State(state.clone())))
        .await?
        .queues;
    let stats = from_api(
        viewer,
        stats::stats(
            State(state.clone()),
            crate::api::extract::Query(StatsQuery { minutes: Some(60) }),
        ),
    )
    .await?;
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
    // Waits per minute; a minute without finished jobs is a gap (null), not zero.
    let mut p50 = Vec::new();
    let mut p95 = Vec::new();
    let mut p99 = Vec::new();
    for t in &xs {
        let m = stats
            .waits_per_minute
            .iter()
            .find(|m| m.minute.timestamp() == *t);
        p50.push(m.and_then(|m| m.p50));
        p95.push(m.and_then(|m| m.p95));
        p99.push(m.and_then(|m| m.p99));
    }
    let wait_series = serde_json::json!([xs, p50, p95, p99]).to_string();
    Ok(html! {
        div #overview data-live="" hx-get="/ui/fragments/overview" hx-trigger=(LIVE_TRIGGER) hx-swap="outerHTML" {
            p.summary {
                strong #workers-alive { (stats.workers_alive) } " workers alive · "
                (queues.iter().map(|q| q.running).sum::<i64>()) " running · "
                (queues.iter().map(|q| q.available).sum::<i64>()) " waiting"
            }
            div.charts {
                figure {
                    figcaption { "Finished per minute, last hour" }
                    div.chart #chart-finished data-series=(series) data-labels="completed,failed" data-unit="jobs / min" role="img" aria-label="Completed and failed jobs per minute over the last hour" {}
                }
                figure {
                    figcaption { "Wait (due → start) per minute, last hour" }
                    div.chart #chart-waits data-series=(wait_series) data-labels="p50,p95,p99" data-unit="seconds" data-points role="img" aria-label="Wait time percentiles per minute over the last hour" {}
                }
            }
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
