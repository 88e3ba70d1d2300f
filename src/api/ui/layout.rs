//! The page shell, navigation, error and login pages, and small formatting helpers.
//! maud escapes every interpolated value; nothing here builds HTML from strings.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::auth::{CSRF_FIELD, Viewer};
use crate::api::extract::Access;

/// Version appended to asset URLs so an upgrade is not served from a stale cache.
const V: &str = env!("CARGO_PKG_VERSION");

/// htmx settings: no inline indicator styles and no eval (the CSP forbids both).
const HTMX_CONFIG: &str = r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"historyCacheSize":0}"#;

fn head(title: &str, csrf: Option<&str>) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="htmx-config" content=(HTMX_CONFIG);
        @if let Some(c) = csrf { meta name="csrf-token" content=(c); }
        title { (title) " · Ordinaut" }
        link rel="stylesheet" href={ "/ui/assets/uPlot.min.css?v=" (V) };
        link rel="stylesheet" href={ "/ui/assets/app.css?v=" (V) };
        script src={ "/ui/assets/htmx.min.js?v=" (V) } defer {}
        script src={ "/ui/assets/uPlot.iife.min.js?v=" (V) } defer {}
        script src={ "/ui/assets/app.js?v=" (V) } defer {}
    }
}

const NAV: &[(&str, &str)] = &[
    ("/ui", "Overview"),
    ("/ui/jobs", "Jobs"),
    ("/ui/workflows", "Workflows"),
    ("/ui/enqueue", "Enqueue"),
    ("/ui/queues", "Queues"),
    ("/ui/schedules", "Schedules"),
    ("/ui/workers", "Workers"),
    ("/ui/audit", "Audit log"),
];

/// A whole page: navigation, who is logged in, then `body`.
pub fn page(viewer: &Viewer, title: &str, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title, Some(&viewer.csrf))) }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui" { "Ordinaut" }
                    nav aria-label="Main" {
                        @for (href, label) in NAV {
                            @if *href == current {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                    div.who {
                        @match &viewer.access {
                            Access::Open => span.badge.warn title="API_TOKENS is empty" { "open: no login" },
                            Access::ReadOnly(_) => span.badge #role { "read-only" },
                            Access::Admin(_) => span.badge #role { "admin" },
                        }
                        @if viewer.logged_in {
                            form method="post" action="/ui/logout" {
                                (csrf_field(viewer))
                                button.link type="submit" #logout { "Log out" }
                            }
                        }
                    }
                }
                main #main { h1 { (title) } (body) }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(viewer.csrf); }
}

/// A page as a response.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// An error page naming the problem.
pub fn error_page(viewer: &Viewer, status: StatusCode, message: &str) -> Response {
    respond(
        status,
        page(
            viewer,
            status.canonical_reason().unwrap_or("Error"),
            "",
            html! {
                p.error role="alert" { (message) }
                p { a href="/ui" { "Back to the overview" } }
            },
        ),
    )
}

/// Our own failure: logged once here, a generic page for the viewer.
pub fn internal(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %error, "dashboard request failed");
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        html! {
            (DOCTYPE)
            html lang="en" {
                head { (head("Error", None)) }
                body { main { h1 { "Internal error" } p { "See the server log." } } }
            }
        },
    )
}

/// The login form, with a message after a failed attempt.
pub fn login_page(status: StatusCode, message: Option<&str>, next: &str) -> Response {
    respond(
        status,
        html! {
            (DOCTYPE)
            html lang="en" {
                head { (head("Log in", None)) }
                body.login {
                    main #main {
                        h1 { "Ordinaut" }
                        form.card method="post" action="/ui/login" {
                            label for="token" { "API token" }
                            input #token type="password" name="token" autocomplete="current-password" required autofocus;
                            input type="hidden" name="next" value=(next);
                            @if let Some(m) = message { p.error role="alert" #login-error { (m) } }
                            button type="submit" #login { "Log in" }
                            p.hint { "Any of API_TOKENS (full access) or API_READONLY_TOKENS (read only)." }
                        }
                    }
                }
            }
        },
    )
}

/// A timestamp: UTC text, machine-readable for app.js to show local time on hover.
pub fn time(t: &DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S")) } }
}

/// A timestamp app.js rewrites into the viewer's own time zone (UTC until it runs).
pub fn viewer_time(t: &DateTime<Utc>) -> Markup {
    html! { time.viewer datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S")) " UTC" } }
}

/// An optional timestamp.
pub fn time_opt(t: &Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { span.muted { "—" } },
    }
}

/// A job state as a coloured badge.
pub fn state_badge(state: &str) -> Markup {
    html! { span class={ "state state-" (state) } { (state) } }
}

/// Seconds as "1.2 s" / "350 ms".
pub fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

/// Pretty JSON for a <pre>.
pub fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A fixed message for `?done=` after an action (never the query text itself).
pub fn flash(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "cancelled" => "Job cancelled.",
        "cancel_requested" => "Cancel requested: its worker stops it.",
        "retried" => "Job re-enqueued.",
        "run_now" => "Job is due now.",
        "deleted" => "Job deleted.",
        "paused" => "Queue paused: workers stop taking jobs from it.",
        "resumed" => "Queue resumed.",
        "saved" => "Queue settings saved.",
        "schedule_paused" => "Schedule paused.",
        "schedule_resumed" => "Schedule resumed.",
        "triggered" => "Schedule triggered: one job enqueued.",
        "schedule_deleted" => "Schedule deleted.",
        _ => return None,
    })
}

/// The flash banner, if any.
pub fn flash_banner(code: Option<&str>) -> Markup {
    banner(flash(code))
}

/// A flash banner with `message`; nothing without one.
pub fn banner(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message { p.flash role="status" #flash { (m) } }
    }
}
