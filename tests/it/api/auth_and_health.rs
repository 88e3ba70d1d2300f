//! Tokens, health, readiness, metrics.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use super::{App, TOKEN, settings};

fn bare(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn v1_needs_a_configured_token_and_health_and_ready_do_not() {
    let app = App::new().await;
    assert_eq!(
        app.send(bare("/v1/queues")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app.send(bare("/v1/jobs")).await;
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert_eq!(app.get("/v1/queues").await.status, StatusCode::OK);
    let health = app.send(bare("/health")).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, json!({"status": "ok"}));
    let ready = app.send(bare("/ready")).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(app.send(bare("/openapi.json")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn any_of_several_tokens_is_accepted() {
    let mut s = settings();
    s.tokens = vec!["first".into(), TOKEN.into()];
    let app = App::with(s).await;
    let req = Request::get("/v1/workers")
        .header("authorization", "bearer first")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::OK);
    assert_eq!(app.get("/v1/workers").await.status, StatusCode::OK);
}

#[tokio::test]
async fn without_tokens_v1_is_open() {
    let mut s = settings();
    s.tokens.clear();
    let app = App::with(s).await;
    assert_eq!(app.send(bare("/v1/queues")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn ready_is_503_when_the_database_is_gone() {
    let app = App::new().await;
    app.db.pool.close().await;
    let r = app.send(bare("/ready")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["error"]["code"], "unavailable");
    assert_eq!(app.send(bare("/health")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn database_failure_is_a_generic_500_in_our_shape() {
    let app = App::new().await;
    app.db.pool.close().await;
    let r = app.get("/v1/queues").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.body["error"]["code"], "internal");
    assert!(!r.text.contains("pool"), "no internals leak: {}", r.text);
}

#[tokio::test]
async fn metrics_report_requests_by_route_and_queue_depth() {
    let app = App::new().await;
    let r = app
        .post(
            "/v1/jobs",
            json!({"queue": "metrics-q", "kind": "metrics-k"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    app.get(&format!("/v1/jobs/{}", r.body["id"].as_str().unwrap()))
        .await;
    let m = app.send(bare("/metrics")).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = m.text;
    assert!(
        text.contains("ordinaut_jobs_enqueued_total{queue=\"metrics-q\",kind=\"metrics-k\"}"),
        "{text}"
    );
    assert!(text.contains("route=\"/v1/jobs/{id}\""), "{text}");
    assert!(
        text.contains("ordinaut_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("ordinaut_queue_available{queue=\"metrics-q\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ordinaut_queue_oldest_wait_seconds{queue=\"metrics-q\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_can_require_the_token() {
    let mut s = settings();
    s.metrics_auth = true;
    let app = App::with(s).await;
    let r = app.send(bare("/metrics")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/metrics").await.status, StatusCode::OK);
    assert_eq!(app.send(bare("/health")).await.status, StatusCode::OK);
}
