//! Schedules: the list with next fires, one schedule's fires, the form, actions.

use super::*;

// ---------------------------------------------------------------- schedules

/// Schedules with next fire times (UTC, the schedule's zone, the viewer's); actions.
pub async fn schedules(ui: Ui, Query(done): Query<Done>) -> Page {
    let list = ui.read(schedules::list(ui.api())).await?.schedules;
    let viewer = &ui.viewer;
    let body = html! {
        (done.banner())
        (table_or(list.is_empty(), html! { p.muted { "No schedules. Declare them in ordinaut.toml or POST /v1/schedules." } }, html! {
        table #schedules-table {
            thead { tr { th { "Schedule" } th { "Cron" } th { "Job" } th { "State" } th { "Next fire (UTC)" } th { "In its zone" } th { "In yours" } th { "Last fire" } th { span.visually-hidden { "Actions" } } } }
            tbody {
                @for s in &list {
                    @let zoned = s.spec.timezone.parse::<chrono_tz::Tz>().ok().map(|tz| s.state.next_run_at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string());
                    tr data-schedule=(s.spec.name) {
                        td { a href={ "/ui/schedules/" (s.spec.name) } { (s.spec.name) } @if s.state.declared { " " span.badge title="declared in ordinaut.toml" { "file" } } }
                        td.mono { (s.spec.cron) }
                        td { (s.spec.queue) " / " (s.spec.kind) }
                        td { (activity(s.state.paused)) }
                        td { (time(&s.state.next_run_at)) }
                        td.zoned { (zoned.unwrap_or_default()) " " span.muted { (s.spec.timezone) } }
                        td.yours { (viewer_time(&s.state.next_run_at)) }
                        td { (time_opt(&s.state.last_run_at)) }
                        td.actions {
                            @if viewer.access.can_write() {
                                (pause_or_resume(viewer, "/ui/schedules", &s.spec.name, s.state.paused))
                                (action_button(viewer, &format!("/ui/schedules/{}/trigger", s.spec.name), "Run now", &format!("trigger-{}", s.spec.name), None))
                                a.button href={ "/ui/schedules-new?edit=" (s.spec.name) } id={ "edit-" (s.spec.name) } { "Edit" }
                                (action_button(viewer, &format!("/ui/schedules/{}/delete", s.spec.name), "Delete", &format!("delete-{}", s.spec.name), Some("Delete this schedule? Its jobs stay.")))
                            }
                        }
                    }
                }
            }
        }
        }))
        p.hint { "\"In yours\" is your browser's time zone; hover any other time to see it there too." }
        @if viewer.access.can_write() { p { a.button #new-schedule href="/ui/schedules-new" { "New schedule…" } } }
    };
    ui.page("Schedules", "/ui/schedules", body)
}

/// One schedule: its job template and its recent fires (with their jobs, misses and
/// overlap skips).
pub async fn schedule(ui: Ui, Path(name): Path<String>) -> Page {
    let s = ui.read_key(name.clone(), schedules::get).await?;
    let zoned = |t: &chrono::DateTime<Utc>| {
        s.spec
            .timezone
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
            dt { "Cron" } dd.mono { (s.spec.cron) }
            dt { "Zone" } dd { (s.spec.timezone) }
            dt { "Job" } dd { (s.spec.queue) " / " (s.spec.kind) }
            dt { "State" } dd { (activity(s.state.paused)) }
            dt { "Overlap" } dd { (s.spec.overlap) }
            dt { "Next fire" } dd { (time(&s.state.next_run_at)) " UTC · " (zoned(&s.state.next_run_at)) " · yours: " (viewer_time(&s.state.next_run_at)) }
            dt { "Last fire" } dd { (time_opt(&s.state.last_run_at)) }
        }
        h2 { "Payload" }
        pre.json { (pretty(&s.spec.payload)) }
        h2 { "Recent fires" }
        @let fires = s.state.recent_fires.as_deref().unwrap_or_default();
        (table_or(fires.is_empty(), html! { p.muted #no-fires { "It has not fired yet." } }, html! {
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
        }))
    };
    ui.page(&format!("Schedule {name}"), "/ui/schedules", body)
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
pub async fn schedule_form(ui: Ui, Query(mut f): Query<ScheduleForm>) -> Page {
    if let Some(name) = given(&f.edit) {
        let s = ui.read_key(name, schedules::get).await?;
        f = ScheduleForm {
            name: Some(s.spec.name),
            cron: Some(s.spec.cron),
            timezone: Some(s.spec.timezone),
            queue: Some(s.spec.queue),
            kind: Some(s.spec.kind),
            payload: Some(pretty(&s.spec.payload)),
            overlap: Some(s.spec.overlap),
            edit: None,
        };
    }
    let known = known_names(&ui.state).await;
    let form = schedule_markup(&ui.state, &ui.viewer, &f, &known, None);
    ui.page("Schedule", "/ui/schedules", form)
}

fn schedule_markup(
    state: &AppState,
    viewer: &Viewer,
    f: &ScheduleForm,
    known: &Known,
    error: Option<&str>,
) -> Markup {
    html! {
        p.hint { "Saving a name that exists replaces that schedule. Schedules declared in ordinaut.toml are rewritten from the file when the scheduler starts." }
        form.card.stack method="post" action="/ui/schedules" #schedule-form {
            (form_head(viewer, error))
            label { "Name" input name="name" #name required value=[given(&f.name)]; }
            label { "Cron" input name="cron" #cron required value=[given(&f.cron)] placeholder="30 2 * * *"; }
            label { "Time zone" input name="timezone" #timezone value=[given(&f.timezone)] placeholder=(state.settings().config.tz); }
            label { "Queue" input name="queue" #queue required value=(given(&f.queue).unwrap_or_else(|| "default".into())); }
            (kind_field(&f.kind))
            (payload_field(&f.payload, 6))
            label { "While the previous job is live"
                select name="overlap" {
                    option value="allow" selected[f.overlap.as_deref() != Some("skip")] { "fire anyway (allow)" }
                    option value="skip" selected[f.overlap.as_deref() == Some("skip")] { "skip (skip)" }
                }
            }
            button type="submit" #save-schedule disabled[!viewer.access.can_write()] { "Save" }
            (datalists(known))
        }
    }
}

/// Saves a schedule through `POST /v1/schedules`'s handler; errors come back on the form.
pub async fn schedule_save(ui: Ui, Form(f): Form<ScheduleForm>) -> Page {
    let result = async {
        let req = schedules::ScheduleRequest {
            name: given(&f.name).unwrap_or_default(),
            cron: given(&f.cron).unwrap_or_default(),
            timezone: given(&f.timezone),
            queue: given(&f.queue).unwrap_or_default(),
            kind: given(&f.kind).unwrap_or_default(),
            payload: json_field("payload", &f.payload)?,
            priority: None,
            max_attempts: None,
            timeout: None,
            unique_key: None,
            overlap: given(&f.overlap),
            misfire_grace: None,
        };
        schedules::create(ui.api(), Json(req)).await
    }
    .await;
    let known = known_names(&ui.state).await;
    form_outcome(
        &ui.viewer,
        result.map(|s| format!("/ui/schedules/{}", urlencoded(&s.0.spec.name))),
        ("Schedule", "/ui/schedules"),
        |e| schedule_markup(&ui.state, &ui.viewer, &f, &known, Some(e)),
    )
}

fn urlencoded(s: &str) -> String {
    // Names are validated ([A-Za-z0-9_.:-]); nothing in them needs escaping in a path.
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
        .collect()
}
