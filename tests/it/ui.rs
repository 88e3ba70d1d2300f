//! The dashboard's rules through the real router on a real database: login, cookie
//! attributes, CSRF, read-only tokens (also on /v1), security headers, escaping, bulk
//! actions by filter with their count and audit record, delete, statistics.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ordinaut::api::{self, AppState};
use serde_json::{Value, json};

use crate::api::{App, Reply, TOKEN, settings};

const READONLY: &str = "read-only-token-0123456789";

pub(crate) fn app_settings() -> ordinaut::api::ApiSettings {
    let mut s = settings();
    s.readonly_tokens = vec![READONLY.to_owned()];
    s
}

/// A browser's view: the session cookie and the page's CSRF token.
pub(crate) struct Session {
    cookie: String,
    csrf: String,
}

fn form_request(path: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.body(Body::from(body.to_owned())).unwrap()
}

fn page_request(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path);
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.body(Body::empty()).unwrap()
}

/// Posts a form as a browser would, with the session `cookie` if any.
async fn send_form(app: &App, path: &str, cookie: Option<&str>, body: &str) -> Reply {
    app.send(form_request(path, cookie, body)).await
}

/// Gets a page as a browser would, with the session `cookie` if any.
async fn send_page(app: &App, path: &str, cookie: Option<&str>) -> Reply {
    app.send(page_request(path, cookie)).await
}

fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf-token\" content=\"")
        .expect("page carries a csrf token")
        + "name=\"csrf-token\" content=\"".len();
    html[at..at + 64].to_owned()
}

fn set_cookie(r: &Reply) -> String {
    r.headers
        .get("set-cookie")
        .expect("a cookie is set")
        .to_str()
        .unwrap()
        .to_owned()
}

pub(crate) async fn login(app: &App, token: &str) -> Session {
    let r = send_form(app, "/ui/login", None, &format!("token={token}&next=/ui")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let cookie = set_cookie(&r).split(';').next().unwrap().to_owned();
    let page = send_page(app, "/ui", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    Session {
        csrf: csrf_of(&page.text),
        cookie,
    }
}

impl Session {
    pub(crate) async fn get(&self, app: &App, path: &str) -> Reply {
        send_page(app, path, Some(&self.cookie)).await
    }

    /// Posts `fields` as [`Session::post`] does and asserts the answer's `status`.
    pub(crate) async fn submit(
        &self,
        app: &App,
        path: &str,
        fields: &str,
        status: StatusCode,
    ) -> Reply {
        let r = self.post(app, path, fields).await;
        assert_eq!(r.status, status, "{}", r.text);
        r
    }

    /// Posts `fields` and asserts the form comes back refused (400) with a message
    /// that `mentions` the field.
    pub(crate) async fn refuses(&self, app: &App, path: &str, fields: &str, mentions: &str) {
        let r = self.post(app, path, fields).await;
        r.refused(StatusCode::BAD_REQUEST, mentions);
    }

    /// Presses an action's button (a form of no fields of its own): it redirects.
    pub(crate) async fn act(&self, app: &App, path: &str) -> Reply {
        self.submit(app, path, "", StatusCode::SEE_OTHER).await
    }

    pub(crate) async fn post(&self, app: &App, path: &str, fields: &str) -> Reply {
        let sep = if fields.is_empty() { "" } else { "&" };
        let body = format!("{fields}{sep}_csrf={}", self.csrf);
        send_form(app, path, Some(&self.cookie), &body).await
    }
}

pub(crate) async fn enqueue(app: &App, queue: &str, kind: &str, payload: Value) -> String {
    let r = app
        .enqueue(json!({"queue": queue, "kind": kind, "payload": payload}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.id()
}

/// Claims a job of `queue` through the API: the lease owner and attempt a report of it
/// carries.
async fn claim_one(app: &App, queue: &str) -> (String, Value) {
    let claim = app.claim(json!({"queues": [queue]})).await;
    let owner = claim.body["lease_owner"].as_str();
    let owner = owner.unwrap_or_else(|| panic!("a lease owner in {}", claim.text));
    (owner.to_owned(), claim.body["jobs"][0]["attempt"].clone())
}

/// Enqueues a job (kind `k`, payload `{}`) on `queue` and claims it through the API:
/// its id, then its lease owner and attempt as [`claim_one`] gives them.
async fn running_job(app: &App, queue: &str) -> (String, String, Value) {
    let id = enqueue(app, queue, "k", json!({})).await;
    let (owner, attempt) = claim_one(app, queue).await;
    (id, owner, attempt)
}

async fn paused(app: &App, queue: &str) -> bool {
    app.get(&format!("/v1/queues/{queue}")).await.body["paused"] == json!(true)
}

#[tokio::test]
async fn with_tokens_nothing_of_the_ui_is_visible_without_login() {
    let app = App::with(app_settings()).await;
    enqueue(&app, "secret-queue", "k", json!({"x": 1})).await;
    for path in [
        "/ui",
        "/ui/jobs",
        "/ui/queues",
        "/ui/workers",
        "/ui/audit",
        "/ui/fragments/overview",
    ] {
        let r = send_page(&app, path, None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            r.headers["location"]
                .to_str()
                .unwrap()
                .starts_with("/ui/login?next=")
        );
        assert!(!r.text.contains("secret-queue"));
    }
    // htmx polls are told to go to the login page.
    let r = app
        .send(
            Request::get("/ui/fragments/jobs")
                .header("hx-request", "true")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.contains_key("hx-redirect"));
    // A wrong token gets no cookie and no data.
    let r = send_form(&app, "/ui/login", None, "token=wrong-token&next=/ui").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.get("set-cookie").is_none());
    assert!(r.text.contains("not one of API_TOKENS"));
    // A made-up session id is no session.
    let forged = format!("ordinaut_session={}", "ab".repeat(32));
    let r = send_page(&app, "/ui/queues", Some(&forged)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // And the open redirect of ?next= goes nowhere else.
    let r = send_form(
        &app,
        "/ui/login",
        None,
        &format!("token={TOKEN}&next=https://evil.example/"),
    )
    .await;
    assert_eq!(r.headers["location"], "/ui");
}

#[tokio::test]
async fn login_cookie_is_httponly_strict_expiring_and_secure_behind_https() {
    let app = App::with(app_settings()).await;
    let plain = send_form(&app, "/ui/login", None, &format!("token={TOKEN}")).await;
    let cookie = set_cookie(&plain);
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP must still be able to log in"
    );
    let mut req = form_request("/ui/login", None, &format!("token={TOKEN}"));
    req.headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    let tls = app.send(req).await;
    assert!(set_cookie(&tls).contains("; Secure"));
    // Only a hash of the session id is stored.
    let id = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ui_sessions WHERE id_hash = $1::bytea")
            .bind(id.as_bytes())
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0);
    let expires: bool = sqlx::query_scalar(
        "SELECT bool_and(expires_at BETWEEN now() + interval '11 hours' AND now() + interval '13 hours') FROM ui_sessions",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(expires);
}

#[tokio::test]
async fn state_changing_requests_need_the_sessions_csrf_token() {
    let app = App::with(app_settings()).await;
    enqueue(&app, "q", "k", json!({})).await;
    let s = login(&app, TOKEN).await;
    let bare = send_form(&app, "/ui/queues/q/pause", Some(&s.cookie), "").await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN);
    assert!(bare.text.contains("CSRF"));
    let wrong = send_form(
        &app,
        "/ui/queues/q/pause",
        Some(&s.cookie),
        &format!("_csrf={}", "0".repeat(64)),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(!paused(&app, "q").await);
    // Another session's token is not this session's.
    let other = login(&app, TOKEN).await;
    let crossed = send_form(
        &app,
        "/ui/queues/q/pause",
        Some(&s.cookie),
        &format!("_csrf={}", other.csrf),
    )
    .await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);
    assert!(!paused(&app, "q").await);
    s.act(&app, "/ui/queues/q/pause").await;
    assert!(paused(&app, "q").await);
    // htmx sends it as a header.
    let req = Request::post("/ui/queues/q/resume")
        .header("cookie", &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::SEE_OTHER);
    assert!(!paused(&app, "q").await);
}

#[tokio::test]
async fn logout_ends_the_session_and_a_removed_token_ends_its_sessions() {
    let app = App::with(app_settings()).await;
    let s = login(&app, TOKEN).await;
    let out = s.post(&app, "/ui/logout", "").await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(set_cookie(&out).contains("Max-Age=0"));
    assert_eq!(s.get(&app, "/ui").await.status, StatusCode::SEE_OTHER);

    let s = login(&app, TOKEN).await;
    // The same database, served with the token no longer configured.
    let mut changed = app_settings();
    changed.tokens = vec!["a-new-token-9876543210".to_owned()];
    let router = api::router(AppState::new(app.db.pool.clone(), changed));
    let r = tower::ServiceExt::oneshot(router, page_request("/ui", Some(&s.cookie)))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let left: i64 = app.db.count("ui_sessions").await;
    assert_eq!(left, 0);
}

#[tokio::test]
async fn read_only_tokens_read_everything_and_change_nothing() {
    let app = App::with(app_settings()).await;
    let id = enqueue(&app, "q", "k", json!({})).await;
    let ro = |method: Method, path: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {READONLY}"))
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap()
    };
    assert_eq!(
        app.send(ro(Method::GET, "/v1/jobs")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.send(ro(Method::GET, &format!("/v1/jobs/{id}")))
            .await
            .status,
        StatusCode::OK
    );
    for (method, path) in [
        (Method::POST, format!("/v1/jobs/{id}/cancel")),
        (Method::POST, "/v1/queues/q/pause".to_owned()),
        (Method::DELETE, format!("/v1/jobs/{id}")),
        (Method::POST, "/v1/jobs/bulk".to_owned()),
        (Method::POST, "/v1/jobs".to_owned()),
    ] {
        let r = app.send(ro(method.clone(), &path)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(r.body["error"]["code"], "forbidden");
    }
    let s = login(&app, READONLY).await;
    let page = s.get(&app, &format!("/ui/jobs/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("read-only"));
    for action in ["id=\"cancel\"", "id=\"delete\"", "id=\"copy\""] {
        assert!(
            !page.text.contains(action),
            "{action} shown to a read-only viewer"
        );
    }
    let queues = s.get(&app, "/ui/queues").await;
    assert!(!queues.text.contains("id=\"pause-q\""));
    let r = s.post(&app, &format!("/ui/jobs/{id}/cancel"), "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("read-only"));
    assert_eq!(
        app.get(&format!("/v1/jobs/{id}")).await.body["state"],
        "available"
    );
    // Logging out is not a change.
    assert_eq!(
        s.post(&app, "/ui/logout", "").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn every_answer_has_a_csp_without_inline_script_and_refuses_framing() {
    let app = App::with(app_settings()).await;
    let s = login(&app, TOKEN).await;
    let id = enqueue(&app, "q", "k", json!({})).await;
    let pages = [
        send_page(&app, "/ui/login", None).await,
        s.get(&app, "/ui").await,
        s.get(&app, "/ui/jobs").await,
        s.get(&app, &format!("/ui/jobs/{id}")).await,
        s.get(&app, "/ui/enqueue").await,
        s.get(&app, "/ui/queues").await,
        s.get(&app, "/ui/schedules").await,
        s.get(&app, "/ui/workers").await,
        s.get(&app, "/ui/audit").await,
        send_page(&app, "/ui/assets/htmx.min.js", None).await,
    ];
    for r in &pages {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(r.headers["x-frame-options"], "DENY");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
        // No inline script and no inline handlers: every <script> has a src.
        assert_eq!(
            r.text.matches("<script").count(),
            r.text.matches("<script src=").count()
        );
        assert!(!r.text.contains(" onclick=") && !r.text.contains(" onload="));
    }
    assert!(
        pages[1].headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store")
    );
    // The front-end libraries are embedded, with their licences.
    let licences = send_page(&app, "/ui/assets/LICENSES.txt", None).await;
    assert!(licences.text.contains("uPlot") && licences.text.contains("htmx"));
    // / sends browsers to the dashboard.
    let root = send_page(&app, "/", None).await;
    assert_eq!(root.headers["location"], "/ui");
}

#[tokio::test]
async fn payloads_metadata_errors_and_names_are_rendered_as_text() {
    let app = App::with(app_settings()).await;
    let evil = "<script>alert('x')</script><img src=x onerror=alert(1)>";
    let r = app
        .enqueue(
            json!({"queue": "q", "kind": "k", "payload": {"p": evil}, "metadata": {"m": evil}}),
        )
        .await;
    let id = r.id();
    let (owner, attempt) = claim_one(&app, "q").await;
    let failed = app
        .report(&id, "fail", json!({"lease_owner": owner, "attempt": attempt, "error": evil, "retryable": false, "log": evil}))
        .await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.text);
    let s = login(&app, TOKEN).await;
    for path in [format!("/ui/jobs/{id}"), "/ui/jobs".to_owned()] {
        let page = s.get(&app, &path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.text.contains("<script>alert"), "{path}");
        assert!(!page.text.contains("<img src=x"), "{path}");
        assert!(page.text.contains("&lt;script&gt;alert"), "{path}");
    }
}

#[tokio::test]
async fn without_tokens_the_ui_is_open_but_forms_still_need_the_csrf_cookie() {
    let mut s = settings();
    s.tokens.clear();
    let app = App::with(s).await;
    enqueue(&app, "q", "k", json!({})).await;
    let page = send_page(&app, "/ui/queues", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("open: no login"));
    let cookie = set_cookie(&page).split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("ordinaut_csrf="));
    let csrf = cookie.split_once('=').unwrap().1.to_owned();
    let forged = send_form(&app, "/ui/queues/q/pause", None, &format!("_csrf={csrf}")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "no cookie, no action");
    assert!(!paused(&app, "q").await);
    let ok = send_form(
        &app,
        "/ui/queues/q/pause",
        Some(&cookie),
        &format!("_csrf={csrf}"),
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
    assert!(paused(&app, "q").await);
}

async fn cancelled_jobs(app: &App, queue: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = enqueue(app, queue, "k", json!({"i": i})).await;
        assert_eq!(
            app.post(&format!("/v1/jobs/{id}/cancel"), json!({}))
                .await
                .status,
            StatusCode::OK
        );
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn bulk_retry_by_filter_shows_the_count_and_touches_only_the_counted_jobs() {
    let app = App::with(app_settings()).await;
    let counted = cancelled_jobs(&app, "bulkq", 3).await;
    let other = cancelled_jobs(&app, "elsewhere", 1).await;
    let s = login(&app, TOKEN).await;
    let preview = s
        .submit(
            &app,
            "/ui/bulk/preview",
            "action=retry&queue=bulkq&state=cancelled",
            StatusCode::OK,
        )
        .await;
    assert!(
        preview.text.contains("data-count=\"3\""),
        "{}",
        preview.text
    );
    let at =
        preview.text.find("name=\"newest\" value=\"").unwrap() + "name=\"newest\" value=\"".len();
    let newest = preview.text[at..at + 36].to_owned();
    // Enqueued after the count: left alone.
    let late = cancelled_jobs(&app, "bulkq", 1).await;
    let done = s
        .submit(
            &app,
            "/ui/bulk/run",
            &format!("action=retry&queue=bulkq&state=cancelled&newest={newest}&matched=3"),
            StatusCode::OK,
        )
        .await;
    assert!(done.text.contains("data-affected=\"3\""), "{}", done.text);
    for id in &counted {
        assert_eq!(
            app.get(&format!("/v1/jobs/{id}")).await.body["state"],
            "available"
        );
    }
    for id in other.iter().chain(&late) {
        assert_eq!(
            app.get(&format!("/v1/jobs/{id}")).await.body["state"],
            "cancelled"
        );
    }
    let audit = app.get("/v1/audit").await.body;
    let entry = &audit["entries"][0];
    assert_eq!(entry["action"], "bulk_retry");
    assert_eq!(entry["actor"], "API_TOKENS #1");
    assert_eq!(entry["matched"], 3);
    assert_eq!(entry["affected"], 3);
    assert_eq!(entry["target"]["queue"], "bulkq");
    assert!(entry["finished_at"].is_string());
    let page = s.get(&app, "/ui/audit").await;
    assert!(page.text.contains("bulk_retry") && page.text.contains("bulkq"));
}

#[tokio::test]
async fn bulk_cancel_works_through_many_batches() {
    let app = App::with(app_settings()).await;
    let jobs: Vec<_> = (0..2_500)
        .map(|i| ordinaut::db::due_work::NewJob::new("big", "k", json!({ "i": i })))
        .collect();
    ordinaut::db::due_work::enqueue_many(&app.db.pool, &jobs, 3)
        .await
        .unwrap();
    enqueue(&app, "small", "k", json!({})).await;
    let count = app
        .post(
            "/v1/jobs/bulk/count",
            json!({"action": "cancel", "queue": "big"}),
        )
        .await;
    assert_eq!(count.body["matched"], 2500, "{}", count.text);
    let r = app
        .post(
            "/v1/jobs/bulk",
            json!({"action": "cancel", "queue": "big", "newest": count.body["newest"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["affected"], 2500);
    app.db.assert_rows("due_work WHERE queue = 'big'", 0).await;
    app.db
        .assert_rows(
            "job_history WHERE queue = 'big' AND state = 'cancelled'",
            2500,
        )
        .await;
    app.db
        .assert_rows("due_work WHERE queue = 'small'", 1)
        .await;
    let bad = app
        .post("/v1/jobs/bulk", json!({"action": "explode"}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("action:")
    );
}

#[tokio::test]
async fn delete_removes_a_finished_job_with_its_attempts_and_refuses_a_running_one() {
    let app = App::with(app_settings()).await;
    let (id, owner, attempt) = running_job(&app, "q").await;
    let r = app.delete(&format!("/v1/jobs/{id}")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    app.report(
        &id,
        "fail",
        json!({"lease_owner": owner, "attempt": attempt, "error": "boom", "retryable": false}),
    )
    .await;
    app.db.assert_rows("job_attempts", 1).await;
    let s = login(&app, TOKEN).await;
    s.act(&app, &format!("/ui/jobs/{id}/delete")).await;
    assert_eq!(
        app.get(&format!("/v1/jobs/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    app.db.assert_rows("job_attempts", 0).await;
    assert_eq!(
        app.get("/v1/audit").await.body["entries"][0]["action"],
        "delete"
    );
}

#[tokio::test]
async fn stats_count_finished_jobs_per_minute_and_the_overview_shows_them() {
    let app = App::with(app_settings()).await;
    for outcome in ["complete", "complete", "fail"] {
        let (id, owner, attempt) = running_job(&app, "statq").await;
        let body = if outcome == "complete" {
            json!({"lease_owner": owner, "attempt": attempt})
        } else {
            json!({"lease_owner": owner, "attempt": attempt, "error": "boom", "retryable": false})
        };
        let r = app
            .post(&format!("/v1/pull/jobs/{id}/{outcome}"), body)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let stats = app.get("/v1/stats?minutes=60").await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.text);
    let q = &stats.body["queues"][0];
    assert_eq!(q["queue"], "statq");
    assert_eq!(q["completed"], 2);
    assert_eq!(q["failed"], 1);
    assert_eq!(q["wait"]["jobs"], 3);
    assert!(q["wait"]["p99"].as_f64().unwrap() >= q["wait"]["p50"].as_f64().unwrap());
    assert_eq!(
        app.get("/v1/stats?minutes=0").await.status,
        StatusCode::BAD_REQUEST
    );
    let s = login(&app, TOKEN).await;
    let page = s.get(&app, "/ui/fragments/overview").await;
    assert!(
        page.text.contains("<td class=\"num completed\">2</td>"),
        "{}",
        page.text
    );
    assert!(page.text.contains("<td class=\"num failed\">1</td>"));
}

#[tokio::test]
async fn ui_forms_give_the_apis_validation_messages() {
    let app = App::with(app_settings()).await;
    enqueue(&app, "q", "k", json!({})).await;
    let s = login(&app, TOKEN).await;
    s.refuses(
        &app,
        "/ui/queues/q",
        "rate_limit=fast&concurrency_limit=",
        "rate_limit:",
    )
    .await;
    let r = s.post(&app, "/ui/queues/q", "concurrency_limit=0").await;
    assert!(
        r.text.contains("concurrency_limit: 0 must be at least 1"),
        "{}",
        r.text
    );
    s.submit(
        &app,
        "/ui/queues/q",
        "concurrency_limit=3&rate_limit=10%2Fs&timeout=30s",
        StatusCode::SEE_OTHER,
    )
    .await;
    let q = app.get("/v1/queues/q").await.body;
    assert_eq!(
        (q["concurrency_limit"].clone(), q["rate_limit"].clone()),
        (json!(3), json!(10))
    );
    s.refuses(
        &app,
        "/ui/enqueue",
        "queue=q&kind=k&payload=%7Bnot+json",
        "payload: is not valid JSON",
    )
    .await;
    let r = s
        .post(
            &app,
            "/ui/enqueue",
            "queue=bad%20name&kind=k&payload=%7B%7D",
        )
        .await;
    assert!(r.text.contains("queue:"), "{}", r.text);
    let r = s
        .post(
            &app,
            "/ui/enqueue",
            "queue=q&kind=k&payload=%7B%22a%22%3A1%7D&priority=5",
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let id = r.headers["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/ui/jobs/")
        .to_owned();
    let job = app.get(&format!("/v1/jobs/{id}")).await.body;
    assert_eq!(
        (job["payload"]["a"].clone(), job["priority"].clone()),
        (json!(1), json!(5))
    );
}

#[tokio::test]
async fn a_delayed_job_can_be_run_now_and_the_list_filters_by_creation_time() {
    let app = App::with(app_settings()).await;
    let r = app
        .enqueue(json!({"queue": "q", "kind": "k", "delay": "1h"}))
        .await;
    let id = r.id();
    let s = login(&app, TOKEN).await;
    let page = s.get(&app, &format!("/ui/jobs/{id}")).await;
    assert!(page.text.contains("id=\"run-now\""), "{}", page.text);
    s.act(&app, &format!("/ui/jobs/{id}/run-now")).await;
    assert_eq!(
        app.get(&format!("/v1/jobs/{id}")).await.body["state"],
        "available"
    );
    let again = app.post(&format!("/v1/jobs/{id}/run-now"), json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["error"]["code"], "not_scheduled");

    let listed = s
        .get(&app, "/ui/jobs?created_after=2000-01-01T00%3A00")
        .await;
    assert!(
        listed.text.contains(&format!("data-job=\"{id}\"")),
        "{}",
        listed.text
    );
    let none = s
        .get(&app, "/ui/jobs?created_after=2999-01-01T00%3A00")
        .await;
    assert!(none.text.contains("No jobs match."));
    let bad = s.get(&app, "/ui/jobs?created_after=yesterday").await;
    bad.refused(StatusCode::BAD_REQUEST, "created_after:");
}

#[tokio::test]
async fn schedules_page_pauses_triggers_and_lists_recent_fires_with_their_jobs() {
    let app = App::with(app_settings()).await;
    let r = app
        .create_schedule(json!({"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "queue": "q", "kind": "k"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let s = login(&app, TOKEN).await;
    let list = s.get(&app, "/ui/schedules").await;
    assert!(list.text.contains("Europe/Berlin") && list.text.contains("id=\"trigger-nightly\""));
    let r = s.act(&app, "/ui/schedules/nightly/trigger").await;
    let job = r.headers["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/ui/jobs/")
        .to_owned();
    let page = s.get(&app, "/ui/schedules/nightly").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("triggered"), "{}", page.text);
    assert!(page.text.contains(&format!("/ui/jobs/{job}")));
    assert_eq!(
        s.post(&app, "/ui/schedules/nightly/pause", "").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(app.get("/v1/schedules/nightly").await.body["paused"], true);
    assert_eq!(
        s.get(&app, "/ui/schedules/nope").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn schedules_are_created_and_edited_from_the_ui_with_the_apis_messages() {
    let app = App::with(app_settings()).await;
    let s = login(&app, TOKEN).await;
    s.refuses(
        &app,
        "/ui/schedules",
        "name=hourly&cron=every+hour&queue=q&kind=k&payload=%7B%7D",
        "cron:",
    )
    .await;
    let r = s
        .submit(
            &app,
            "/ui/schedules",
            "name=hourly&cron=0+*+*+*+*&timezone=Asia%2FTokyo&queue=q&kind=k&payload=%7B%22a%22%3A1%7D&overlap=skip",
            StatusCode::SEE_OTHER,
        )
        .await;
    assert_eq!(r.headers["location"], "/ui/schedules/hourly");
    let saved = app.get("/v1/schedules/hourly").await.body;
    assert_eq!(saved["timezone"], "Asia/Tokyo");
    assert_eq!(saved["overlap"], "skip");
    assert_eq!(saved["payload"]["a"], 1);
    let form = s.get(&app, "/ui/schedules-new?edit=hourly").await;
    assert!(form.text.contains("value=\"Asia/Tokyo\""), "{}", form.text);
}

#[tokio::test]
async fn bulk_actions_on_selected_jobs_touch_only_those() {
    let app = App::with(app_settings()).await;
    let ids = cancelled_jobs(&app, "selq", 3).await;
    let s = login(&app, TOKEN).await;
    let list = s.get(&app, "/ui/jobs?queue=selq").await;
    assert!(
        list.text.contains("class=\"pick\""),
        "admins get checkboxes"
    );
    let picked = format!("selection=1&action=retry&ids={}&ids={}", ids[0], ids[2]);
    let preview = s.post(&app, "/ui/bulk/preview", &picked).await;
    assert!(
        preview.text.contains("data-count=\"2\""),
        "{}",
        preview.text
    );
    let done = s.post(&app, "/ui/bulk/run", &picked).await;
    assert!(done.text.contains("data-affected=\"2\""), "{}", done.text);
    let state = |i: usize| {
        let app = &app;
        let id = ids[i].clone();
        async move { app.get(&format!("/v1/jobs/{id}")).await.body["state"].clone() }
    };
    assert_eq!(state(0).await, "available");
    assert_eq!(state(1).await, "cancelled");
    assert_eq!(state(2).await, "available");
    // Nothing ticked selects nothing (not everything).
    let none = s
        .post(&app, "/ui/bulk/preview", "selection=1&action=delete")
        .await;
    assert!(none.text.contains("data-count=\"0\""), "{}", none.text);
    let too_many: Vec<String> = (0..1001)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let r = app
        .post(
            "/v1/jobs/bulk/count",
            json!({"action": "retry", "ids": too_many}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let ro = login(&app, READONLY).await;
    assert!(
        !ro.get(&app, "/ui/jobs?queue=selq")
            .await
            .text
            .contains("class=\"pick\"")
    );
}

#[tokio::test]
async fn the_job_page_and_the_api_show_a_running_jobs_latest_progress() {
    let app = App::with(app_settings()).await;
    let (id, owner, _) = running_job(&app, "q").await;
    let owner: uuid::Uuid = owner.parse().unwrap();
    let job: uuid::Uuid = id.parse().unwrap();
    let row = |by_attempt: i32, message: &str| ordinaut::db::kinds::ProgressRow {
        id: job,
        attempt: by_attempt,
        progress: json!({"attempt": by_attempt, "percent": 40.0, "message": message, "at": "2026-12-02T06:00:00Z"}),
    };
    // Only the attempt holding the lease can report.
    ordinaut::db::kinds::set_progress(&app.db.pool, uuid::Uuid::now_v7(), &[row(1, "stranger")])
        .await
        .unwrap();
    ordinaut::db::kinds::set_progress(&app.db.pool, owner, &[row(7, "old attempt")])
        .await
        .unwrap();
    assert_eq!(
        app.get(&format!("/v1/jobs/{id}")).await.body["progress"],
        Value::Null
    );
    ordinaut::db::kinds::set_progress(&app.db.pool, owner, &[row(1, "cloning <b>repo</b>")])
        .await
        .unwrap();
    let r = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(r.body["progress"]["message"], "cloning <b>repo</b>");
    let s = login(&app, TOKEN).await;
    let page = s.get(&app, &format!("/ui/jobs/{id}")).await;
    assert!(
        page.text.contains(r#"<progress max="100" value="40">"#),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("cloning &lt;b&gt;repo&lt;/b&gt;"),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn job_detail_links_the_trace_id_to_the_trace_url() {
    let mut s = app_settings();
    s.config = std::sync::Arc::new(ordinaut::config::Config {
        trace_url: Some("https://jaeger.example/trace/{trace_id}".to_owned()),
        ..Default::default()
    });
    let app = App::with(s).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = app
        .enqueue(json!({"queue": "q", "kind": "k",
                   "metadata": {"traceparent": format!("00-{trace}-00f067aa0ba902b7-01")}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.id();
    let s = login(&app, TOKEN).await;
    let page = s.get(&app, &format!("/ui/jobs/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text
            .contains(&format!("href=\"https://jaeger.example/trace/{trace}\"")),
        "{}",
        page.text
    );
}

/// Submits workflow "scan <acme>" (a name the pages must escape): a step "clone", then
/// `more` steps; its id.
async fn scan_workflow(app: &App, more: Value) -> String {
    let mut jobs = vec![json!({"name": "clone", "queue": "q", "kind": "k"})];
    jobs.extend(more.as_array().cloned().unwrap_or_default());
    let r = app
        .submit_workflow(json!({"name": "scan <acme>", "jobs": jobs}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.id()
}

#[tokio::test]
async fn the_workflow_page_shows_the_graph_by_stage_and_cancels_and_retries() {
    let app = App::with(app_settings()).await;
    let id = scan_workflow(&app, json!([
        {"name": "tool", "queue": "q", "kind": "k", "depends_on": ["clone"]},
        {"name": "report", "queue": "q", "kind": "k", "depends_on": [{"name": "tool", "on_failure": "ignore"}]}]))
    .await;
    let s = login(&app, TOKEN).await;
    let list = s.get(&app, "/ui/workflows").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.text.contains(&id) && list.text.contains("scan &lt;acme&gt;"));
    let page = s.get(&app, &format!("/ui/workflows/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    // Three stages, live while running, the edge's policy shown.
    for stage in ["data-stage=\"0\"", "data-stage=\"1\"", "data-stage=\"2\""] {
        assert!(page.text.contains(stage), "{stage}");
    }
    assert!(page.text.contains("every 1s"));
    assert!(page.text.contains("(ignore)"));
    assert!(page.text.contains("waiting for 1"));
    s.act(&app, &format!("/ui/workflows/{id}/cancel")).await;
    let page = s
        .get(&app, &format!("/ui/workflows/{id}?done=cancelled"))
        .await;
    assert!(
        page.text.contains("data-state=\"cancelled\""),
        "{}",
        page.text
    );
    assert!(
        !page.text.contains("every 1s"),
        "a finished workflow stops polling"
    );
    s.act(&app, &format!("/ui/workflows/{id}/retry")).await;
    assert_eq!(
        app.get(&format!("/v1/workflows/{id}")).await.body["state"],
        "running"
    );
    // A read-only session sees the page without the actions, and cannot act.
    let ro = login(&app, READONLY).await;
    let page = ro.get(&app, &format!("/ui/workflows/{id}")).await;
    assert!(!page.text.contains("id=\"cancel\""));
    let r = ro
        .post(&app, &format!("/ui/workflows/{id}/cancel"), "")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// A waiting step's job page names its workflow (a link), its step and what it waits
/// on with their states, polls (it can end without an event), offers Cancel but not
/// Delete, and cancelling it there ends it; the jobs list filters `state=waiting`.
#[tokio::test]
async fn a_waiting_steps_job_page_shows_its_workflow_and_what_it_waits_on() {
    let app = App::with(app_settings()).await;
    let wf = scan_workflow(
        &app,
        json!([{"name": "tool", "queue": "q", "kind": "k", "depends_on": ["clone"]}]),
    )
    .await;
    let w = app.get(&format!("/v1/workflows/{wf}")).await;
    let tool = w.body["jobs"][1]["job_id"].as_str().unwrap().to_owned();
    let s = login(&app, TOKEN).await;
    let page = s.get(&app, &format!("/ui/jobs/{tool}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains("data-state=\"waiting\""),
        "{}",
        page.text
    );
    assert!(
        page.text.contains(&format!(
            "href=\"/ui/workflows/{wf}\">scan &lt;acme&gt;</a>"
        )),
        "{}",
        page.text
    );
    assert!(page.text.contains("Waits on"), "{}", page.text);
    assert!(
        page.text
            .contains("data-dep=\"clone\" data-state=\"enqueued\""),
        "{}",
        page.text
    );
    assert!(page.text.contains("live, every 2s"));
    assert!(page.text.contains(&format!("/ui/jobs/{tool}/cancel")));
    assert!(!page.text.contains(&format!("/ui/jobs/{tool}/delete")));
    // The workflow page links the waiting step's job.
    let graph = s.get(&app, &format!("/ui/workflows/{wf}")).await;
    assert!(graph.text.contains(&format!("href=\"/ui/jobs/{tool}\"")));
    let list = s.get(&app, "/ui/jobs?state=waiting").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert!(list.text.contains(&tool[24..]), "{}", list.text);

    s.act(&app, &format!("/ui/jobs/{tool}/cancel")).await;
    let page = s.get(&app, &format!("/ui/jobs/{tool}")).await;
    assert!(
        page.text.contains("data-state=\"cancelled\""),
        "{}",
        page.text
    );
    assert!(page.text.contains("cancelled by an operator while waiting"));
    // It never ran: nothing to retry or delete here (the workflow's retry runs it).
    assert!(!page.text.contains(&format!("/ui/jobs/{tool}/retry")));
    assert!(!page.text.contains(&format!("/ui/jobs/{tool}/delete")));
}

/// Once counting the live jobs is slow (here: always, threshold zero), `/v1/queues` and
/// the pages built on it answer from the refresher's snapshot, not a count per request:
/// a job enqueued after the refresh shows only after the next one.
#[tokio::test]
async fn queue_counts_come_from_the_snapshot_when_counting_is_slow() {
    let mut s = app_settings();
    s.cached_counts_after = std::time::Duration::ZERO;
    let app = App::with(s).await;
    let first = app.enqueue(json!({"queue": "snap-q", "kind": "k"})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    app.state.refresh_once().await;
    let r = app.enqueue(json!({"queue": "snap-q", "kind": "k"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let list = app.get("/v1/queues").await;
    assert_eq!(list.body["queues"][0]["name"], "snap-q");
    assert_eq!(list.body["queues"][0]["available"], 1, "{:?}", list.body);
    // One queue by name still counts now.
    assert_eq!(app.get("/v1/queues/snap-q").await.body["available"], 2);
    app.state.refresh_once().await;
    assert_eq!(
        app.get("/v1/queues").await.body["queues"][0]["available"],
        2
    );
}
