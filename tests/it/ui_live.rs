//! The dashboard's search, live stream, statistics over time and login limit, through
//! the real router (and a real socket where the client's address or a stream matters)
//! on a real database.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::api::{App, Server, TOKEN, settings};
use crate::ui::{app_settings, enqueue, login};

/// Claims the oldest job of `queue` through the pull API and finishes it: completed,
/// or failed for good with `error`.
async fn finish(app: &App, queue: &str, error: Option<&str>) {
    let claim = app.claim(json!({"queues": [queue]})).await;
    assert_eq!(claim.status, StatusCode::OK, "{}", claim.text);
    let owner = claim.body["lease_owner"].clone();
    let job = &claim.body["jobs"][0];
    let (outcome, body) = match error {
        None => (
            "complete",
            json!({"lease_owner": owner, "attempt": job["attempt"]}),
        ),
        Some(e) => (
            "fail",
            json!({"lease_owner": owner, "attempt": job["attempt"], "error": e, "retryable": false}),
        ),
    };
    let r = app
        .post(
            &format!("/v1/pull/jobs/{}/{outcome}", job["id"].as_str().unwrap()),
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

fn ids(page: &Value) -> Vec<String> {
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

fn q(text: &str) -> String {
    serde_urlencoded::to_string([("v", text)]).unwrap()[2..].to_owned()
}

#[tokio::test]
async fn jobs_are_searched_by_json_path_in_payload_and_metadata_and_by_text() {
    let app = App::with(app_settings()).await;
    // Finished jobs (history) and live ones (due_work) are both searched.
    let alpha = json!({"target": "alpha.example", "port": 443});
    let done = enqueue(&app, "scan", "nmap", alpha).await;
    finish(&app, "scan", None).await;
    let beta = json!({"target": "beta.example", "port": 22});
    let failed = enqueue(&app, "scan", "nmap", beta).await;
    finish(&app, "scan", Some("connection refused by Gamma-Host")).await;
    let live = enqueue(
        &app,
        "scan",
        "nmap",
        json!({"target": "alpha.example", "port": 8080, "tags": ["prod"]}),
    )
    .await;
    let r = app
        .enqueue(json!({"queue": "scan", "kind": "nmap", "payload": {}, "metadata": {"team": "red_100%"}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let tagged = r.id();

    let search = |query: String| {
        let app = &app;
        async move {
            let r = app.get(&format!("/v1/jobs?{query}")).await;
            assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
            ids(&r.body)
        }
    };
    // A predicate path matches when true; newest first, across live and finished.
    assert_eq!(
        search(format!("payload={}", q(r#"$.target == "alpha.example""#))).await,
        vec![live.clone(), done.clone()]
    );
    assert_eq!(
        search(format!("payload={}", q("$.port < 100"))).await,
        vec![failed.clone()]
    );
    // Any other path matches when it finds something.
    assert_eq!(
        search(format!("payload={}", q(r#"$.tags[*] ? (@ == "prod")"#))).await,
        vec![live.clone()]
    );
    assert_eq!(
        search(format!("metadata={}", q("$.team"))).await,
        vec![tagged.clone()]
    );
    // Text: case-insensitive, in the last error, with LIKE's wildcards taken literally.
    assert_eq!(
        search(format!("text={}", q("gamma-host"))).await,
        vec![failed.clone()]
    );
    assert_eq!(
        search(format!("text={}", q("red_100%"))).await,
        vec![tagged.clone()]
    );
    assert!(search(format!("text={}", q("red_1000"))).await.is_empty());
    assert_eq!(
        search(format!("text={}&state=completed", q("alpha"))).await,
        vec![done.clone()]
    );
    // Cursor pages through the matches.
    let first = app
        .get(&format!("/v1/jobs?limit=1&text={}", q("alpha")))
        .await;
    assert_eq!(ids(&first.body), vec![live.clone()]);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(
        search(format!("limit=1&text={}&cursor={cursor}", q("alpha"))).await,
        vec![done.clone()]
    );

    // Bad searches are 400s naming the field.
    for (query, field) in [
        (format!("payload={}", q("$.[")), "payload"),
        (format!("metadata={}", q("not a path ((")), "metadata"),
        ("text=".to_owned(), "text"),
        ("schedule=nightly".to_owned(), "schedule"),
    ] {
        let r = app.get(&format!("/v1/jobs?{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text);
        assert!(r.text.contains(field), "{query}: {}", r.text);
    }

    // The jobs page searches the same way and offers no bulk action by filter that
    // would ignore the search.
    let s = login(&app, TOKEN).await;
    let page = s
        .get(&app, &format!("/ui/jobs?payload={}", q("$.port < 100")))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains(&format!("data-job=\"{failed}\"")));
    assert!(!page.text.contains(&format!("data-job=\"{done}\"")));
    assert!(page.text.contains("bulk-needs-plain-filter"));
    assert!(!page.text.contains("id=\"bulk-preview\""));
    let page = s.get(&app, &format!("/ui/jobs?payload={}", q("$.["))).await;
    page.refused(StatusCode::BAD_REQUEST, "is not a JSON path");
}

#[tokio::test]
async fn stats_give_wait_percentiles_per_minute_and_the_overview_charts_both() {
    let app = App::with(app_settings()).await;
    for _ in 0..3 {
        enqueue(&app, "w", "k", json!({})).await;
        finish(&app, "w", None).await;
    }
    let stats = app.get("/v1/stats?minutes=60").await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.text);
    let minutes = stats.body["waits_per_minute"].as_array().unwrap();
    assert!(!minutes.is_empty(), "{}", stats.text);
    let last = minutes.last().unwrap();
    assert!(last["p99"].as_f64().unwrap() >= last["p50"].as_f64().unwrap());
    let s = login(&app, TOKEN).await;
    let page = s.get(&app, "/ui").await;
    assert!(page.text.contains("id=\"chart-finished\""));
    assert!(page.text.contains("id=\"chart-waits\""));
    // The live part re-reads itself on the event stream, not on a short poll.
    assert!(page.text.contains("data-live=\"\""), "{}", page.text);
    assert!(page.text.contains("hx-trigger=\"live, every 30s\""));
}

/// Logs in over a real socket; the session cookie, or the answer's status.
async fn socket_login(server: &Server, token: &str) -> Result<String, reqwest::Response> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .post(server.url("/ui/login"))
        .form(&[("token", token), ("next", "/ui")])
        .send()
        .await
        .unwrap();
    if r.status() != reqwest::StatusCode::SEE_OTHER {
        return Err(r);
    }
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    Ok(cookie.split(';').next().unwrap().to_owned())
}

#[tokio::test]
async fn the_ui_event_stream_needs_a_session_and_carries_job_changes() {
    let server = Server::start_with(settings()).await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let refused = plain.get(server.url("/ui/events")).send().await.unwrap();
    assert_ne!(refused.status(), reqwest::StatusCode::OK);
    let cookie = socket_login(&server, TOKEN).await.expect("login");
    let events = plain.get(server.url("/ui/events?queue=live"));
    let mut stream = events.header("cookie", &cookie).send().await.unwrap();
    assert_eq!(stream.status(), reqwest::StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let id = server
        .client()
        .post(server.url("/v1/jobs"))
        .json(&json!({"queue": "live", "kind": "k"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    while !seen.contains(&id) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no event for {id}; so far:\n{seen}"))
            .unwrap()
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: job"), "{seen}");
}

#[tokio::test]
async fn wrong_tokens_are_limited_per_client_and_open_sessions_keep_working() {
    let server = Server::start_with(settings()).await;
    let cookie = socket_login(&server, TOKEN).await.expect("login");
    for _ in 0..ordinaut::api::ui::limit::MAX_FAILURES {
        let r = socket_login(&server, "wrong-token").await.unwrap_err();
        assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    // Limited now: even the right token is not looked at.
    let r = socket_login(&server, "wrong-token").await.unwrap_err();
    assert_eq!(r.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    let r = socket_login(&server, TOKEN).await.unwrap_err();
    assert_eq!(r.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= ordinaut::api::ui::limit::WINDOW.as_secs() + 1);
    assert!(r.text().await.unwrap().contains("too many wrong tokens"));
    // The session opened before, and /v1 with a token, are unaffected.
    let page = reqwest::Client::new()
        .get(server.url("/ui/jobs"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let api = server
        .client()
        .get(server.url("/v1/jobs"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), reqwest::StatusCode::OK);
}
