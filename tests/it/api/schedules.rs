//! `/v1/schedules` and the flow-control fields of `/v1/queues/{name}`.

use axum::http::StatusCode;
use serde_json::json;

use super::App;
use crate::common::schedules;

#[tokio::test]
async fn schedules_are_created_listed_paused_resumed_triggered_and_deleted() {
    let app = App::new().await;
    let created = app
        .create_schedule(json!({"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "queue": "scans",
                   "kind": "slither", "payload": {"repo": "acme"}, "overlap": "skip"}))
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    assert_eq!(created.body["timezone"], "Europe/Berlin");
    assert_eq!(created.body["overlap"], "skip");
    let list = app.get("/v1/schedules").await;
    assert_eq!(list.body["schedules"].as_array().unwrap().len(), 1);
    let paused = app.act("/v1/schedules/nightly/pause").await;
    assert_eq!(paused.body["paused"], true);
    let resumed = app.act("/v1/schedules/nightly/resume").await;
    assert_eq!(resumed.body["paused"], false);
    let next_before = resumed.body["next_run_at"].clone();
    let triggered = app.act("/v1/schedules/nightly/trigger").await;
    assert_eq!(triggered.status, StatusCode::OK, "{}", triggered.text);
    let job = app
        .get(&format!(
            "/v1/jobs/{}",
            triggered.body["job_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(job.body["payload"], json!({"repo": "acme"}));
    let shown = app.get("/v1/schedules/nightly").await;
    assert_eq!(
        shown.body["next_run_at"], next_before,
        "trigger does not move the cadence"
    );
    assert_eq!(shown.body["recent_fires"][0]["outcome"], "triggered");
    let deleted = app.delete("/v1/schedules/nightly").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/v1/schedules/nightly").await.status, 404);
}

#[tokio::test]
async fn bad_schedules_are_refused_naming_the_field() {
    let app = App::new().await;
    let before = app.counts().await;
    for (body, field) in [
        (
            json!({"name": "a", "cron": "61 * * * *", "queue": "q", "kind": "k"}),
            "cron",
        ),
        (
            json!({"name": "a", "cron": "* *", "queue": "q", "kind": "k"}),
            "cron",
        ),
        (
            json!({"name": "a", "cron": "@daily", "timezone": "Mars/Olympus", "queue": "q", "kind": "k"}),
            "timezone",
        ),
        (
            json!({"name": "bad name", "cron": "@daily", "queue": "q", "kind": "k"}),
            "name",
        ),
        (
            json!({"name": "a", "cron": "@daily", "queue": "q", "kind": "k", "overlap": "maybe"}),
            "overlap",
        ),
        (
            json!({"name": "a", "cron": "@daily", "queue": "q", "kind": "k", "priority": 1000}),
            "priority",
        ),
        (
            json!({"name": "a", "cron": "@daily", "queue": "q", "kind": "k", "timeout": "soon"}),
            "timeout",
        ),
        (json!({"name": "a", "cron": "@daily", "queue": "q"}), "kind"),
    ] {
        let reply = app.create_schedule(body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text
        );
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {message}");
    }
    assert_eq!(app.counts().await, before);
    app.db.assert_rows("schedules", 0).await;
    assert_eq!(
        app.act("/v1/schedules/nope/trigger").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn queue_limits_are_set_and_cleared_over_http() {
    let app = App::new().await;
    let set = app
        .patch("/v1/queues/scans", json!({"concurrency_limit": 7, "rate_limit": "10/s", "burst": 20, "key_concurrency": 1}))
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.body["concurrency_limit"], 7);
    assert_eq!(set.body["rate_limit"], 10);
    assert_eq!(set.body["rate_burst"], 20);
    assert_eq!(set.body["key_concurrency"], 1);
    let cleared = app
        .patch("/v1/queues/scans", json!({"concurrency_limit": null}))
        .await;
    assert!(cleared.body["concurrency_limit"].is_null());
    assert_eq!(cleared.body["key_concurrency"], 1, "absent fields are kept");
    let bad = app
        .patch("/v1/queues/scans", json!({"rate_limit": "fast"}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = app
        .patch("/v1/queues/scans", json!({"concurrency_limit": 0}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_api_cannot_take_over_a_declared_schedule() {
    let app = App::new().await;
    schedules::declare_nightly(&app.db.pool, "scans", "slither").await;
    let r = app
        .create_schedule(
            json!({"name": "nightly", "cron": "* * * * *", "queue": "other", "kind": "k"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "schedule_declared");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"nightly\" is declared in ordinaut.toml")
            && message.contains("the scheduler on host"),
        "{message}"
    );
    let shown = app.get("/v1/schedules/nightly").await;
    assert_eq!(shown.body["cron"], "30 2 * * *", "unchanged");
    assert_eq!(shown.body["queue"], "scans");
    assert_eq!(shown.body["declared"], true);
    // Deleting it is how an operator takes it over; then a POST creates it anew.
    let deleted = app.delete("/v1/schedules/nightly").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let r = app
        .create_schedule(
            json!({"name": "nightly", "cron": "* * * * *", "queue": "other", "kind": "k"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["declared"], false);
}
