//! Enqueueing a job from a form (or a copy of another).

use super::*;

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
pub async fn enqueue_form(ui: Ui, Query(mut f): Query<EnqueueForm>) -> Page {
    if let Some(id) = given(&f.copy) {
        let d = ui.job_detail(id).await?;
        f.queue = Some(d.job.queue);
        f.kind = Some(d.job.kind);
        f.payload = Some(pretty(&d.job.payload));
        f.priority = Some(d.job.priority.to_string());
    }
    let known = known_names(&ui.state).await;
    let form = enqueue_markup(&ui.viewer, &f, &known, None);
    ui.page("Enqueue a job", "/ui/enqueue", form)
}

fn enqueue_markup(viewer: &Viewer, f: &EnqueueForm, known: &Known, error: Option<&str>) -> Markup {
    html! {
        @if !viewer.access.can_write() { p.muted { "Read-only: you can look at this form but not submit it." } }
        form.card.stack method="post" action="/ui/enqueue" #enqueue-form {
            (form_head(viewer, error))
            label { "Queue" input name="queue" #queue list="known-queues" required value=(given(&f.queue).unwrap_or_else(|| "default".into())); }
            (kind_field(&f.kind))
            (payload_field(&f.payload, 10))
            div.row {
                label { "Priority" input name="priority" type="number" min="-100" max="100" value=[given(&f.priority)] placeholder="0"; }
                label { "Delay" input name="delay" value=[given(&f.delay)] placeholder="30s"; }
                label { "Max attempts" input name="max_attempts" type="number" min="1" max="1000" value=[given(&f.max_attempts)]; }
            }
            button type="submit" #submit-enqueue disabled[!viewer.access.can_write()] { "Enqueue" }
            (datalists(known))
        }
    }
}

/// Enqueues through `POST /v1/jobs`'s handler; errors come back on the form.
pub async fn enqueue(
    ui: Ui,
    Extension(request_id): Extension<RequestId>,
    Form(f): Form<EnqueueForm>,
) -> Page {
    let result = async {
        let req = enqueue_request(&f)?;
        jobs::enqueue(ui.api(), Extension(request_id), HeaderMap::new(), Json(req)).await
    }
    .await;
    // The names are only shown on the form, which only a refusal brings back.
    let known = match result {
        Err(_) => known_names(&ui.state).await,
        Ok(_) => Known::default(),
    };
    form_outcome(
        &ui.viewer,
        result.map(|(_, Json(done))| format!("/ui/jobs/{}", done.id)),
        ("Enqueue a job", "/ui/enqueue"),
        |e| enqueue_markup(&ui.viewer, &f, &known, Some(e)),
    )
}

/// The `POST /v1/jobs` request the form asks for.
fn enqueue_request(f: &EnqueueForm) -> Result<EnqueueRequest, ApiError> {
    Ok(EnqueueRequest {
        queue: given(&f.queue),
        kind: given(&f.kind).unwrap_or_default(),
        payload: json_field("payload", &f.payload)?,
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
        allow_unknown_kind: false,
    })
}
