//! Enqueueing a job from a form (or a copy of another).

#![allow(clippy::result_large_err)]

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
pub async fn enqueue_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(mut f): Query<EnqueueForm>,
) -> Page {
    if let Some(id) = given(&f.copy) {
        let d = from_api(
            &viewer,
            jobs::get(
                State(state.clone()),
                Path(id),
                crate::api::extract::Query(GetQuery { wait: None }),
            ),
        )
        .await?;
        f.queue = Some(d.job.queue);
        f.kind = Some(d.job.kind);
        f.payload = Some(pretty(&d.job.payload));
        f.priority = Some(d.job.priority.to_string());
    }
    let known = known_names(&state).await;
    ok(page(
        &viewer,
        "Enqueue a job",
        "/ui/enqueue",
        enqueue_markup(&viewer, &f, &known, None),
    ))
}

fn enqueue_markup(viewer: &Viewer, f: &EnqueueForm, known: &Known, error: Option<&str>) -> Markup {
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
            (datalists(known))
        }
    }
}

/// Enqueues through `POST /v1/jobs`'s handler; errors come back on the form.
pub async fn enqueue(
    State(state): State<AppState>,
    viewer: Viewer,
    Extension(request_id): Extension<RequestId>,
    Form(f): Form<EnqueueForm>,
) -> Page {
    let built = (|| -> Result<EnqueueRequest, ApiError> {
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
    let known = match result {
        Err(_) => known_names(&state).await,
        Ok(_) => Known {
            queues: Vec::new(),
            kinds: Vec::new(),
        },
    };
    form_outcome(
        &viewer,
        result.map(|(_, Json(done))| format!("/ui/jobs/{}", done.id)),
        ("Enqueue a job", "/ui/enqueue"),
        |e| enqueue_markup(&viewer, &f, &known, Some(e)),
    )
}
