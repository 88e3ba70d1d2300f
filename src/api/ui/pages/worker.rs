//! Live worker processes.

use super::*;

// ---------------------------------------------------------------- workers

/// Live worker processes: host, queues, slots, heartbeat, the jobs they run.
pub async fn workers(ui: Ui) -> Page {
    let list = ui.read(workers::list(ui.api())).await?.workers;
    let now = Utc::now();
    let body = html! {
        (table_or(list.is_empty(), html! { p.muted #no-workers { "No worker is running." } }, html! {
        table #workers-table {
            thead { tr { th { "Worker" } th { "Host" } th { "Queues" } th { "Slots busy / total" } th title="claimed, not started yet" { "Prefetched" } th { "Last heartbeat" } th { "Started" } th { "Version" } th { "Running jobs" } } }
            tbody {
                @for w in &list {
                    tr {
                        td.mono { (short(&w.registration.id.to_string())) }
                        td { (w.registration.hostname) " (pid " (w.registration.pid) ")" }
                        td { (w.registration.queues.join(", ")) }
                        td.num.busy { (w.life.busy.map_or(w.life.running, i64::from)) " / " (w.registration.concurrency) }
                        td.num.prefetched { (w.life.prefetched.map_or_else(|| "—".to_owned(), |p| p.to_string())) }
                        td { (time(&w.life.last_heartbeat_at)) " " span.muted { "(" (seconds((now - w.life.last_heartbeat_at).num_milliseconds().max(0) as f64 / 1000.0)) " ago)" } }
                        td { (time(&w.life.started_at)) }
                        td { (w.registration.version) }
                        td { @for j in w.life.running_jobs.iter().take(20) { a.mono href={ "/ui/jobs/" (j) } { (short(&j.to_string())) } " " } }
                    }
                }
            }
        }
        }))
    };
    ui.page("Workers", "/ui/workers", body)
}
