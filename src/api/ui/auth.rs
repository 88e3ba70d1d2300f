//! Dashboard login: a token typed into the login form becomes a server-side session
//! (db::sessions) named by a random id in a cookie that is HttpOnly, SameSite=Strict,
//! Secure behind HTTPS and expiring; every state-changing request must carry the
//! session's CSRF token; a read-only token's session can look but not act.
//!
//! Without any token configured the dashboard is open (as `/v1` is, with the same
//! start-up warning); state-changing requests then still need a CSRF token, a random
//! value in a SameSite=Strict cookie sent back in the form (double submit), so another
//! site cannot drive an open dashboard through the operator's browser.

// Handlers answer with a Response either way (a page or an error page); boxing the
// error side would only add an allocation per refused request.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use ring::rand::SecureRandom;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::layout;
use crate::api::AppState;
use crate::api::extract::{Access, token_access};
use crate::db::sessions::{self, NewSession};

/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Cookie holding the session id.
pub const SESSION_COOKIE: &str = "ordinaut_session";
/// Cookie holding the CSRF token of an open (tokenless) dashboard.
pub const CSRF_COOKIE: &str = "ordinaut_csrf";
/// Form field carrying the CSRF token (htmx sends the X-CSRF-Token header instead).
pub const CSRF_FIELD: &str = "_csrf";
/// Largest form body the guard reads to find the CSRF field.
const MAX_FORM_BYTES: usize = 2 * 1024 * 1024;

/// Who is looking, and the CSRF token their pages must send back.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// What they may do.
    pub access: Access,
    /// CSRF token to embed in forms.
    pub csrf: String,
    /// Tokens are configured (a logout button makes sense).
    pub logged_in: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Viewer, Response> {
        parts.extensions.get::<Viewer>().cloned().ok_or_else(|| {
            // Every guarded route runs behind `guard`, which inserts it.
            (StatusCode::INTERNAL_SERVER_ERROR, "no dashboard session").into_response()
        })
    }
}

fn random_hex(bytes: usize) -> Option<String> {
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new().fill(&mut buf).ok()?;
    Some(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// The value of cookie `name`, if sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Behind a TLS-terminating proxy the request says so in X-Forwarded-Proto; only then
/// does the cookie get `Secure` (a plain-HTTP dev setup must still be able to log in).
fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("https")
        })
}

fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// The session behind the request's cookie, if any and still valid: unexpired, and its
/// token still configured with the same role.
async fn session_viewer(state: &AppState, headers: &HeaderMap) -> Result<Option<Viewer>, Response> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let id_hash = sha256(id.as_bytes());
    let row = sessions::get_session(state.pool(), &id_hash)
        .await
        .map_err(|e| layout::internal(&e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let settings = state.settings();
    let tokens = if row.role == "admin" {
        &settings.tokens
    } else {
        &settings.readonly_tokens
    };
    let configured = tokens
        .iter()
        .any(|t| bool::from(sha256(t.as_bytes()).ct_eq(&row.token_hash)));
    if !configured {
        sessions::delete_session(state.pool(), &id_hash)
            .await
            .map_err(|e| layout::internal(&e))?;
        return Ok(None);
    }
    // The actor text was fixed at login; it names the token's position.
    let n = position(&row.actor);
    Ok(Some(Viewer {
        access: if row.role == "admin" {
            Access::Admin(n)
        } else {
            Access::ReadOnly(n)
        },
        csrf: row.csrf,
        logged_in: true,
    }))
}

fn position(actor: &str) -> usize {
    actor
        .rsplit('#')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The CSRF token the request sent: the X-CSRF-Token header, else the form's field.
fn sent_csrf(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if let Some(v) = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        return Some(v.to_owned());
    }
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    fields
        .into_iter()
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v)
}

/// Middleware on every dashboard route but login and assets: finds the viewer (or sends
/// them to the login page), checks the CSRF token and write permission of every
/// state-changing request, and hands the viewer to the handler.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let open = state.settings().auth_disabled();
    let mut new_csrf_cookie = None;
    let viewer = if open {
        let csrf = match cookie(request.headers(), CSRF_COOKIE) {
            Some(c) if c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()) => c.to_owned(),
            _ => {
                let Some(c) = random_hex(32) else {
                    return layout::internal(&"no randomness for a csrf token");
                };
                new_csrf_cookie = Some(c.clone());
                c
            }
        };
        Viewer {
            access: Access::Open,
            csrf,
            logged_in: false,
        }
    } else {
        match session_viewer(&state, request.headers()).await {
            Ok(Some(v)) => v,
            Ok(None) => return to_login(&request),
            Err(response) => return response,
        }
    };
    let mut request = request;
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
            return layout::error_page(
                &viewer,
                StatusCode::PAYLOAD_TOO_LARGE,
                "the form is larger than the dashboard accepts",
            );
        };
        let ok = new_csrf_cookie.is_none()
            && sent_csrf(&parts.headers, &bytes)
                .is_some_and(|s| bool::from(s.as_bytes().ct_eq(viewer.csrf.as_bytes())));
        if !ok {
            return layout::error_page(
                &viewer,
                StatusCode::FORBIDDEN,
                "this form has expired or did not come from this dashboard (CSRF check failed); reload the page and try again",
            );
        }
        if !viewer.access.can_write() && parts.uri.path() != "/ui/logout" {
            return layout::error_page(
                &viewer,
                StatusCode::FORBIDDEN,
                "you are logged in with a read-only token: it cannot change anything",
            );
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    request.extensions_mut().insert(viewer.clone());
    request.extensions_mut().insert(viewer.access.clone());
    let mut response = next.run(request).await;
    if let Some(c) = new_csrf_cookie
        && let Some(v) = set_cookie(CSRF_COOKIE, &c, SESSION_TTL.as_secs(), false)
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// Not logged in: a page load goes to the login form (coming back here after), an
/// htmx request is told to do the same, anything else gets 401.
fn to_login(request: &Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/ui");
    let login = format!("/ui/login?next={}", urlencode(path));
    if request.headers().contains_key("hx-request") {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(v) = HeaderValue::from_str(&login) {
            r.headers_mut().insert("hx-redirect", v);
        }
        return r;
    }
    if request.method() == Method::GET {
        return Redirect::to(&login).into_response();
    }
    layout::login_page(StatusCode::UNAUTHORIZED, Some("log in first"), "/ui")
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)])
        .map(|e| e[2..].to_owned())
        .unwrap_or_default()
}

/// Only our own dashboard paths are followed after login (no open redirect).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui") && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/ui",
    }
}

/// Query of the login page.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// The login form (or straight on when no token is configured).
pub async fn login_form(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if state.settings().auth_disabled() {
        return Redirect::to(next).into_response();
    }
    layout::login_page(StatusCode::OK, None, next)
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Checks the token; on success stores a session and sets its cookie.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<axum::extract::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    axum::extract::Form(form): axum::extract::Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref()).to_owned();
    let client = peer.map(|p| p.0.0.ip());
    if state.settings().auth_disabled() {
        return Redirect::to(&next).into_response();
    }
    // Login CSRF: a form posted from another site must not log the browser in.
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return layout::login_page(
            StatusCode::FORBIDDEN,
            Some("cross-site login refused"),
            &next,
        );
    }
    if let Some(wait) = state.login_limiter().retry_after(client) {
        tracing::warn!(client = ?client, "dashboard login refused: too many wrong tokens");
        let mut response = layout::login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some("too many wrong tokens from this address: try again in a few minutes"),
            &next,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, (wait.as_secs() + 1).into());
        return response;
    }
    let token = form.token.trim();
    let Some(access) = token_access(state.settings(), token) else {
        state.login_limiter().failed(client);
        tracing::info!(client = ?client, "dashboard login refused");
        return layout::login_page(
            StatusCode::UNAUTHORIZED,
            Some("that token is not one of API_TOKENS or API_READONLY_TOKENS"),
            &next,
        );
    };
    let (Some(id), Some(csrf)) = (random_hex(32), random_hex(32)) else {
        return layout::internal(&"no randomness for a session id");
    };
    let role = if access.can_write() {
        "admin"
    } else {
        "readonly"
    };
    let actor = access.actor();
    let created = sessions::create_session(
        state.pool(),
        &NewSession {
            id_hash: &sha256(id.as_bytes()),
            role,
            actor: &actor,
            token_hash: &sha256(token.as_bytes()),
            csrf: &csrf,
            ttl_seconds: SESSION_TTL.as_secs_f64(),
        },
    )
    .await;
    if let Err(e) = created {
        return layout::internal(&e);
    }
    tracing::info!(actor = %actor, "dashboard login");
    let mut response = Redirect::to(&next).into_response();
    if let Some(v) = set_cookie(
        SESSION_COOKIE,
        &id,
        SESSION_TTL.as_secs(),
        is_https(&headers),
    ) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// Ends the session and clears its cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = sessions::delete_session(state.pool(), &sha256(id.as_bytes())).await
    {
        return layout::internal(&e);
    }
    let target = if state.settings().auth_disabled() {
        "/ui"
    } else {
        "/ui/login"
    };
    let mut response = Redirect::to(target).into_response();
    if let Some(v) = set_cookie(SESSION_COOKIE, "", 0, is_https(&headers)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dashboard_paths_are_followed_after_login() {
        assert_eq!(
            safe_next(Some("/ui/jobs?state=failed")),
            "/ui/jobs?state=failed"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/ui",
            "/v1/jobs",
            "/ui\\..",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ordinaut_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
