//! The jobs list: filters, search, a live first page, cursor pages.

use super::*;

// ---------------------------------------------------------------- jobs

/// Filters of the jobs page.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobsQuery {
    queue: Option<String>,
    kind: Option<String>,
    state: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    schedule: Option<String>,
    payload: Option<String>,
    metadata: Option<String>,
    text: Option<String>,
    cursor: Option<String>,
}

impl JobsQuery {
    /// A search the bulk forms cannot carry (they act on queue, kind, state and time).
    fn searches(&self) -> bool {
        [&self.schedule, &self.payload, &self.metadata, &self.text]
            .iter()
            .any(|v| given(v).is_some())
    }

    fn query_string(&self, with_cursor: bool) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (k, v) in [
            ("queue", &self.queue),
            ("kind", &self.kind),
            ("state", &self.state),
            ("created_after", &self.created_after),
            ("created_before", &self.created_before),
            ("schedule", &self.schedule),
            ("payload", &self.payload),
            ("metadata", &self.metadata),
            ("text", &self.text),
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

/// The page of jobs `q` asks for, or the page saying why not.
async fn job_page(ui: &Ui, q: &JobsQuery) -> Result<JobPage, Response> {
    let query = ListQuery {
        queue: given(&q.queue),
        kind: given(&q.kind),
        state: parse_state(&q.state).map_err(|e| refused(&ui.viewer, e))?,
        created_after: utc_time(&q.created_after),
        created_before: utc_time(&q.created_before),
        schedule: given(&q.schedule),
        payload: given(&q.payload),
        metadata: given(&q.metadata),
        text: given(&q.text),
        cursor: given(&q.cursor),
        limit: Some(50),
    };
    ui.read(jobs::list(ui.api(), crate::api::extract::Query(query)))
        .await
}

/// Jobs: filters, a live first page (what its fragment route answers), cursor pages,
/// and bulk actions on the filter.
pub async fn jobs(ui: Ui, Query(q): Query<JobsQuery>) -> Page {
    let found = job_page(&ui, &q).await?;
    let viewer = &ui.viewer;
    let table = jobs_table(&q, &found, viewer.access.can_write());
    if ui.fragment {
        // The live part alone: no need to look up the names the filter suggests.
        return ok(table);
    }
    let known = known_names(&ui.state).await;
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
            label { "Schedule " input name="schedule" value=[given(&q.schedule)]; }
            label.wide { "Payload (JSON path) " input name="payload" #search-payload value=[given(&q.payload)] placeholder="$.target == \"example.com\"" spellcheck="false"; }
            label.wide { "Metadata (JSON path) " input name="metadata" #search-metadata value=[given(&q.metadata)] placeholder="$.request_id" spellcheck="false"; }
            label.wide { "Text in payload, metadata or error " input name="text" #search-text type="search" value=[given(&q.text)] maxlength="200"; }
            button type="submit" #apply-filter { "Filter" }
            (datalists(&known))
        }
        (table)
        @if viewer.access.can_write() {
            form.actions method="post" action="/ui/bulk/preview" #selected-form {
                (csrf_field(viewer))
                input type="hidden" name="selection" value="1";
                label { "Selected jobs: "
                    (action_select("selected-action", ["retry", "cancel", "delete"]))
                }
                button type="submit" #selected-preview { "Act on selected…" }
                span.hint { "Ticking a box pauses the live refresh." }
            }
            @if q.searches() {
                p.hint #bulk-needs-plain-filter { "Bulk actions by filter act on queue, kind, state and creation time: clear the schedule and search fields to use them, or tick jobs above." }
            } @else {
                section.bulk aria-labelledby="bulk-h" {
                    h2 #bulk-h { "Act on every job matching this filter" }
                    form method="post" action="/ui/bulk/preview" {
                        (csrf_field(viewer))
                        (filter_fields(&q.queue, &q.kind, &q.state))
                        (time_fields(&q.created_after, &q.created_before))
                        label { "Action "
                            (action_select("bulk-action", [
                                "retry (failed and cancelled jobs)",
                                "cancel (live jobs)",
                                "delete (finished and waiting jobs)",
                            ]))
                        }
                        button type="submit" #bulk-preview { "Count matching jobs…" }
                    }
                }
            }
        }
    };
    ui.page("Jobs", "/ui/jobs", body)
}

fn jobs_table(q: &JobsQuery, found: &JobPage, select: bool) -> Markup {
    let rows = &found.jobs;
    let live = given(&q.cursor).is_none();
    let fragment = format!("/ui/fragments/jobs?{}", q.query_string(false));
    // The stream can narrow to one queue; other filters are applied by the re-read.
    let events = given(&q.queue)
        .map(|queue| serde_urlencoded::to_string([("queue", queue)]).unwrap_or_default())
        .unwrap_or_default();
    html! {
        div #jobs data-live=[live.then_some(&events)] hx-get=[live.then_some(&fragment)] hx-trigger=[live.then_some(LIVE_TRIGGER)] hx-swap="outerHTML" {
            @if let Some(mark) = &found.searched_to {
                // A partial page: the search stopped at its budget (see /v1/jobs).
                p.hint #searched-to {
                    (rows.len()) " found among the newest jobs searched so far, down to job "
                    span.mono { (short(mark)) } "."
                }
            } @else if rows.is_empty() {
                p.muted #no-jobs { "No jobs match." }
            }
            @if !rows.is_empty() {
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
            @if let Some(c) = &found.next_cursor {
                @let nq = JobsQuery { cursor: Some(c.to_owned()), ..q.clone() };
                @if found.searched_to.is_some() {
                    p { a #search-further href={ "/ui/jobs?" (nq.query_string(true)) } { "Search further →" } }
                } @else {
                    p { a #next-page href={ "/ui/jobs?" (nq.query_string(true)) } { "Older jobs →" } }
                }
            }
            @if !live { p { a href={ "/ui/jobs?" (q.query_string(false)) } { "← Newest jobs (live)" } } }
        }
    }
}

/// The bulk action picker: retry, cancel, delete, with these labels.
fn action_select(id: &str, labels: [&str; 3]) -> Markup {
    html! {
        select name="action" id=(id) {
            @for (value, label) in ["retry", "cancel", "delete"].into_iter().zip(labels) {
                option value=(value) { (label) }
            }
        }
    }
}
