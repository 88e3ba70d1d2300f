//! `/v1/queues` and `/v1/workers`.

use std::time::Duration;

use axum::http::StatusCode;
use ordinaut::db::{due_work, workers};
use serde_json::json;
use uuid::Uuid;

use super::App;

#[tokio::test]
async fn queues_list_counts_and_pause_resume_and_settings_apply() {
    let app = App::new().await;
    for _ in 0..3 {
        app.enqueue(json!({"queue": "mail", "kind": "k"})).await;
    }
    app.enqueue(json!({"queue": "mail", "kind": "k", "delay": "1h"}))
        .await;
    let list = app.get("/v1/queues").await;
    assert_eq!(list.status, StatusCode::OK);
    let mail = &list.body["queues"][0];
    assert_eq!(mail["name"], "mail");
    assert_eq!(mail["available"], 3);
    assert_eq!(mail["scheduled"], 1);
    assert_eq!(mail["running"], 0);
    assert!(mail["oldest_wait_seconds"].as_f64().unwrap() >= 0.0);

    let paused = app.act("/v1/queues/mail/pause").await;
    assert_eq!(paused.status, StatusCode::OK);
    assert_eq!(paused.body["paused"], true);
    let claimed = due_work::claim_due(
        &app.db.pool,
        &["mail".into()],
        10,
        Uuid::now_v7(),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(claimed.is_empty(), "a paused queue is not claimed from");
    let resumed = app.act("/v1/queues/mail/resume").await;
    assert_eq!(resumed.body["paused"], false);

    let updated = app
        .patch("/v1/queues/mail", json!({"max_attempts": 7, "timeout": "90s", "backoff_base": "2s", "backoff_max": "1m", "keep_completed": false}))
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.body["max_attempts"], 7);
    assert_eq!(updated.body["timeout_ms"], 90_000);
    assert_eq!(updated.body["backoff_max_ms"], 60_000);
    assert_eq!(updated.body["keep_completed"], false);
    let one = app.get("/v1/queues/mail").await;
    assert_eq!(one.body["backoff_base_ms"], 2000);
    // A new job in the queue takes the queue's default.
    let r = app.enqueue(json!({"queue": "mail", "kind": "k"})).await;
    let job = app
        .get(&format!("/v1/jobs/{}", r.body["id"].as_str().unwrap()))
        .await;
    assert_eq!(job.body["max_attempts"], 7);
}

#[tokio::test]
async fn workers_list_shows_registered_workers_with_their_running_jobs() {
    let app = App::new().await;
    let empty = app.get("/v1/workers").await;
    assert_eq!(empty.body, json!({"workers": []}));
    let id = Uuid::now_v7();
    let mut conn = app.db.db_config().connect_one().await.unwrap();
    workers::register(
        &mut conn,
        &workers::Registration {
            id,
            hostname: "host-a".into(),
            pid: 42,
            queues: vec!["q".into()],
            concurrency: 8,
            version: "test".into(),
        },
    )
    .await
    .unwrap();
    let job = app.enqueue(json!({"queue": "q", "kind": "k"})).await;
    due_work::claim_due(&app.db.pool, &["q".into()], 1, id, Duration::from_secs(30))
        .await
        .unwrap();
    let list = app.get("/v1/workers").await;
    assert_eq!(list.status, StatusCode::OK);
    let w = &list.body["workers"][0];
    assert_eq!(w["id"], id.to_string());
    assert_eq!(w["hostname"], "host-a");
    assert_eq!(w["concurrency"], 8);
    assert_eq!(w["queues"], json!(["q"]));
    assert_eq!(w["running"], 1);
    assert_eq!(w["running_jobs"], json!([job.body["id"]]));
    assert!(w["last_heartbeat_at"].is_string());
}
