//! Queues: counts and limits, pause and resume, the settings form.

use super::*;

// ---------------------------------------------------------------- queues

/// Queues with counts and limits; pause and resume.
pub async fn queues(ui: Ui, Query(done): Query<Done>) -> Page {
    let list = ui.read(queues::list(ui.api())).await?.queues;
    let body = html! {
        (done.banner())
        (table_or(list.is_empty(), html! { p.muted { "No queues yet." } }, html! {
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
                        td { (activity(q.paused)) }
                        td.num { (q.available) } td.num { (q.scheduled) } td.num { (q.running) } td.num { (q.failed_recently) }
                        td.num { (opt(q.concurrency_limit)) }
                        td { @if let Some(r) = q.rate_limit { (r) " / " (seconds(q.rate_period_ms as f64 / 1000.0)) } @else { "—" } }
                        td.num { (opt(q.key_concurrency)) } td.num { (opt(q.max_attempts)) }
                        td { (q.timeout_ms.map(|t| seconds(t as f64 / 1000.0)).unwrap_or_else(|| "—".into())) }
                        td { (if q.keep_completed { "yes" } else { "no" }) }
                        td.actions {
                            @if ui.viewer.access.can_write() {
                                (pause_or_resume(&ui.viewer, "/ui/queues", &q.name, q.paused))
                                a.button href={ "/ui/queues/" (q.name) } id={ "edit-" (q.name) } { "Edit" }
                            }
                        }
                    }
                }
            }
        }
        }))
    };
    ui.page("Queues", "/ui/queues", body)
}

fn opt(v: Option<i32>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "—".into())
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
pub async fn queue_form(ui: Ui, Path(name): Path<String>) -> Page {
    let q = ui.read_key(name.clone(), queues::get).await?;
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
    let form = queue_markup(&ui.viewer, &name, &f, None);
    ui.page(&format!("Queue {name}"), "/ui/queues", form)
}

fn queue_markup(viewer: &Viewer, name: &str, f: &QueueForm, error: Option<&str>) -> Markup {
    let field = |label: &str, key: &str, v: &Option<String>, hint: &str| {
        html! { label { (label) input name=(key) id=(key) value=[given(v)] placeholder=(hint); } }
    };
    html! {
        form.card.stack method="post" action={ "/ui/queues/" (name) } #queue-form {
            (form_head(viewer, error))
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
pub async fn queue_save(ui: Ui, Path(name): Path<String>, Form(f): Form<QueueForm>) -> Page {
    let result = async {
        let req = settings_request(&f)?;
        let key = QueuePath::parse(name.clone())?;
        queues::update(ui.api(), KeyAndJson(key, req)).await
    }
    .await;
    form_outcome(
        &ui.viewer,
        result.map(|_| "/ui/queues?done=saved".into()),
        (&format!("Queue {name}"), "/ui/queues"),
        |e| queue_markup(&ui.viewer, &name, &f, Some(e)),
    )
}

/// The `PATCH /v1/queues/{name}` request the form asks for: every limit is sent, so an
/// empty one is removed; a burst only goes with a rate.
fn settings_request(f: &QueueForm) -> Result<QueueSettingsRequest, ApiError> {
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
}
