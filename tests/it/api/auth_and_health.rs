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

/// Settings whose configuration declares `queue` and `kind` (their metric labels).
fn declaring(queue: &str, kind: &str) -> ordinaut::api::ApiSettings {
    let mut s = settings();
    let mut config = (*s.config).clone();
    config.queues.insert(queue.into(), Default::default());
    config.kinds.insert(
        kind.into(),
        ordinaut::config::KindConfig::Noop(Default::default()),
    );
    s.config = std::sync::Arc::new(config);
    s
}

#[tokio::test]
async fn metrics_report_requests_by_route_and_queue_depth() {
    let app = App::with(declaring("metrics-q", "metrics-k")).await;
    let r = app
        .enqueue(json!({"queue": "metrics-q", "kind": "metrics-k"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    app.get(&format!("/v1/jobs/{}", r.body["id"].as_str().unwrap()))
        .await;
    // What the background refresher does every few seconds.
    app.state.refresh_once().await;
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

#[tokio::test]
async fn metric_labels_are_limited_to_declared_and_known_queues_and_kinds() {
    let app = App::with(declaring("known-q", "known-k")).await;
    let stranger = format!("q-{}", uuid::Uuid::now_v7().simple());
    let odd_kind = format!("k-{}", uuid::Uuid::now_v7().simple());
    // A queue with a settings row is known to the cluster, so it keeps its label.
    app.db
        .exec("INSERT INTO queues (name) VALUES ('configured-q')")
        .await;
    for (queue, kind) in [
        ("known-q", "known-k"),
        (stranger.as_str(), odd_kind.as_str()),
        ("configured-q", odd_kind.as_str()),
    ] {
        let r = app.enqueue(json!({"queue": queue, "kind": kind})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    app.state.refresh_once().await;
    let text = app.send(bare("/metrics")).await.text;
    assert!(!text.contains(&stranger), "{text}");
    assert!(!text.contains(&odd_kind), "{text}");
    assert!(
        text.contains("ordinaut_jobs_enqueued_total{queue=\"known-q\",kind=\"known-k\"}"),
        "{text}"
    );
    assert!(
        text.contains("ordinaut_jobs_enqueued_total{queue=\"other\",kind=\"other\"}"),
        "{text}"
    );
    assert!(
        text.contains("ordinaut_queue_available{queue=\"known-q\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ordinaut_queue_available{queue=\"configured-q\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ordinaut_queue_available{queue=\"other\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn scrapes_and_the_health_snapshot_never_wait_on_the_database() {
    let app = App::new().await;
    app.state.refresh_once().await;
    assert!(app.state.db_health().ready(), "{:?}", app.state.db_health());
    // A long reader of due_work makes any queue_stats query wait on its lock.
    let reader = app.db.hold("LOCK due_work IN ACCESS EXCLUSIVE MODE").await;
    let scrapes: Vec<_> = (0..30)
        .map(|_| {
            let router = app.router.clone();
            tokio::spawn(async move {
                use tower::ServiceExt;
                router.oneshot(bare("/metrics")).await.unwrap().status()
            })
        })
        .collect();
    // Sampled on a connection of its own: a transaction's view of pg_stat_activity is
    // frozen at its first read.
    let mut probe = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.url)
        .await
        .unwrap();
    let mut most_waiting = 0;
    for scrape in scrapes {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut probe)
        .await
        .unwrap();
        most_waiting = most_waiting.max(waiting);
        assert_eq!(scrape.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(most_waiting, 0, "scrapes queued on the database");
    reader.commit().await.unwrap();
}

#[tokio::test]
async fn a_flood_of_ready_probes_holds_at_most_one_connection() {
    let app = App::new().await;
    // Make the readiness query hang: it reads the migrations table.
    let blocker = app
        .db
        .hold("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
        .await;
    let probes: Vec<_> = (0..40)
        .map(|_| {
            let router = app.router.clone();
            tokio::spawn(async move {
                use tower::ServiceExt;
                router.oneshot(bare("/ready")).await.map(|r| r.status())
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE NOT l.granted AND d.datname = current_database()",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(
        waiting <= 1,
        "{waiting} readiness queries hold connections at once"
    );
    // /v1 still gets connections meanwhile.
    assert_eq!(app.get("/v1/workers").await.status, StatusCode::OK);
    blocker.rollback().await.unwrap();
    for p in probes {
        let status = p.await.unwrap().unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
            "{status}"
        );
    }
}
