//! Bulk actions (count, confirm, run in batches) and the audit log.

use super::*;

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

/// The submitted bulk form and the `/v1/jobs/bulk` request it asks for, or the refusal.
fn bulk_form(ui: &Ui, body: &[u8]) -> Result<(BulkForm, BulkRequest), Response> {
    let f = BulkForm::parse(body).map_err(|e| refused(&ui.viewer, e))?;
    let req = bulk_request(&f).map_err(|e| refused(&ui.viewer, e))?;
    Ok((f, req))
}

/// Shows exactly how many jobs the action would touch and asks to confirm.
pub async fn bulk_preview(ui: Ui, body: axum::body::Bytes) -> Page {
    let (f, req) = bulk_form(&ui, &body)?;
    let count = ui
        .read(jobs::bulk_count(ui.api(), Json(req.clone())))
        .await?;
    let action = req.action.clone();
    let body = html! {
        p { "Action: " strong #bulk-action-name { (action) } ", on every job matching:" }
        (describe(&f))
        @if count.matched == 0 {
            p #bulk-count data-count="0" { "No job matches: nothing to do." }
        } @else {
            p #bulk-count data-count=(count.matched) { strong { (count.matched) } " jobs match now. Jobs enqueued after this count are left alone." }
            form method="post" action="/ui/bulk/run" {
                (csrf_field(&ui.viewer))
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
    ui.page("Confirm bulk action", "/ui/jobs", body)
}

/// Runs the confirmed action in batches and shows what it did.
pub async fn bulk_run(
    ui: Ui,
    Extension(access): Extension<Access>,
    body: axum::body::Bytes,
) -> Page {
    let (f, req) = bulk_form(&ui, &body)?;
    let r = ui
        .read(jobs::bulk_run(ui.api(), Extension(access), Json(req)))
        .await?;
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
    ui.page("Bulk action done", "/ui/jobs", body)
}

// ---------------------------------------------------------------- audit

/// Paging of the audit page.
#[derive(Debug, Deserialize)]
pub struct AuditPaging {
    before: Option<i64>,
}

/// The audit log of bulk actions and deletes.
pub async fn audit(ui: Ui, Query(p): Query<AuditPaging>) -> Page {
    let query = AuditQuery {
        before: p.before,
        limit: Some(50),
    };
    let page_ = ui
        .read(audit::audit_log(
            ui.api(),
            crate::api::extract::Query(query),
        ))
        .await?;
    let body = html! {
        (table_or(page_.entries.is_empty(), html! { p.muted #no-audit { "Nothing recorded yet." } }, html! {
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
        }))
        @if let Some(b) = page_.next_before { p { a href={ "/ui/audit?before=" (b) } { "Older entries →" } } }
    };
    ui.page("Audit log", "/ui/audit", body)
}
