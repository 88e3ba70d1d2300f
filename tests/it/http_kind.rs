//! The http kind and caller input it sends on: request ids, and URL credentials that
//! must never reach what the API returns (last_error, attempt errors and logs).

use crate::common::jobs::{self, Finished};
use ordinaut::model::JobState;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use ordinaut::config::{Config, KindConfig};
use ordinaut::db::due_work::{self, NewJob};
use ordinaut::kinds::HttpKind;
use ordinaut::worker::{Handlers, Worker, WorkerOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::api::App;
use crate::common::TestDb;

#[tokio::test]
async fn enqueue_refuses_a_request_id_no_header_can_carry() {
    let app = App::new().await;
    let one = app
        .enqueue(
            json!({"queue": "q", "kind": "k", "metadata": {"request_id": "a\r\nX-Injected: 1"}}),
        )
        .await;
    assert_eq!(one.status, StatusCode::BAD_REQUEST, "{}", one.text);
    assert_eq!(one.body["error"]["code"], "invalid_field");
    let message = one.body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("metadata.request_id:"),
        "names the field: {message}"
    );
    let batch = app
        .enqueue_batch(json!({"jobs": [
            {"queue": "q", "kind": "k", "metadata": {"request_id": "fine-1"}},
            {"queue": "q", "kind": "k", "metadata": {"request_id": "bad\n"}}
        ]}))
        .await;
    assert_eq!(batch.status, StatusCode::BAD_REQUEST, "{}", batch.text);
    let message = batch.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("metadata.request_id"), "{message}");
    assert_eq!(app.db.live_jobs().await, 0);
    let fine = app
        .enqueue(json!({"queue": "q", "kind": "k", "metadata": {"request_id": "req-42"}}))
        .await;
    assert_eq!(fine.status, StatusCode::CREATED, "{}", fine.text);
}

fn http_kind(url: String) -> KindConfig {
    KindConfig::Http(HttpKind {
        url,
        timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    })
}

async fn wait_finished(db: &TestDb, id: Uuid) -> Finished {
    crate::common::jobs::wait_finished(&db.pool, id, Duration::from_secs(30)).await
}

#[tokio::test]
async fn http_kind_hides_url_credentials_and_skips_an_unsendable_request_id() {
    let app = Router::new()
        .route(
            "/ok",
            post(|headers: HeaderMap| async move {
                let id = headers
                    .get("x-request-id")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                (StatusCode::OK, json!({ "request_id": id }).to_string())
            }),
        )
        .route(
            "/down",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // A port nobody listens on, for a connection error.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let secret = "s3cr3t-pw";
    let token = "t0ken-in-query";
    let mut config = Config::default();
    for (kind, base, path) in [
        ("ok", addr, "/ok"),
        ("down", addr, "/down"),
        ("refused", closed, "/x"),
    ] {
        config.kinds.insert(
            kind.to_owned(),
            http_kind(format!(
                "http://bot:{secret}@{base}{path}?token={token}&v=1"
            )),
        );
    }
    config.validate().expect("valid test config");
    let db = TestDb::new().await;
    // Enqueued by SQL, not the API, so nothing checked the request id.
    let mut ok = NewJob::new("q", "ok", json!({}));
    ok.metadata = json!({"request_id": "evil\r\nX-Injected: 1"});
    let mut down = NewJob::new("q", "down", json!({}));
    down.max_attempts = Some(1);
    let mut refused = NewJob::new("q", "refused", json!({}));
    refused.max_attempts = Some(1);
    let ids: Vec<Uuid> = due_work::enqueue_many(&db.pool, &[ok, down, refused], 4)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let mut o = WorkerOptions::from_config(&config);
    o.queues = vec!["q".into()];
    o.poll_interval = Duration::from_millis(200);
    let stop = CancellationToken::new();
    let worker = Worker::new(
        o,
        db.db_config(),
        db.pool.clone(),
        Handlers::from_config(&config).unwrap(),
    );
    let token_stop = stop.clone();
    let running = tokio::spawn(async move { worker.run(token_stop).await.expect("worker runs") });

    let Finished {
        state,
        last_error: error,
        ..
    } = wait_finished(&db, ids[0]).await;
    assert_eq!(
        state,
        JobState::Completed,
        "the request went out without the id: {error:?}"
    );
    let output = jobs::finished(&db.pool, ids[0])
        .await
        .expect("ended")
        .output;
    assert_eq!(output, Some(json!({"request_id": null})));
    let failed = wait_finished(&db, ids[1]).await;
    assert_eq!(failed.state, JobState::Failed);
    let error = failed.last_error.expect("an error");
    assert!(error.contains("answered HTTP 500"), "{error}");
    let refused = wait_finished(&db, ids[2]).await;
    assert_eq!(refused.state, JobState::Failed);
    let refused_error = refused.last_error.expect("an error");
    assert!(
        refused_error.starts_with(&format!("request to http://{closed}/x?token=***&v=***")),
        "{refused_error}"
    );
    stop.cancel();
    running.await.unwrap();
    server.abort();
    // Nothing stored about any attempt carries the credentials.
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(last_error, '') || ' ' || coalesce(output::text, '') FROM job_history
         UNION ALL
         SELECT coalesce(error, '') || ' ' || coalesce(log, '') FROM all_attempts",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(!stored.is_empty());
    for text in stored {
        assert!(
            !text.contains(secret) && !text.contains(token) && !text.contains("bot"),
            "credentials leaked: {text}"
        );
    }
}
