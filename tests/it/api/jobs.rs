//! `/v1/jobs`: enqueue, idempotency, batch, get, wait, list, cancel, retry, attempts.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ordinaut::db::due_work::{self, Finish, FinishKind};
use serde_json::json;
use uuid::Uuid;

use super::{App, TOKEN};

async fn enqueue(app: &App, queue: &str) -> Uuid {
    let r = app
        .enqueue(json!({"queue": queue, "kind": "k", "payload": {"n": 1}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["id"].as_str().expect("id").parse().expect("uuid")
}

async fn finish(app: &App, queue: &str, outcome: FinishKind) -> Uuid {
    let owner = Uuid::now_v7();
    let claimed = due_work::claim_due(
        &app.db.pool,
        &[queue.to_owned()],
        1,
        owner,
        Duration::from_secs(60),
    )
    .await
    .expect("claim");
    let id = claimed[0].id;
    let f = Finish {
        id,
        attempt: 1,
        outcome,
        next_run_at: None,
        error: (outcome != FinishKind::Completed).then(|| "boom".to_owned()),
        output: Some(json!({"ok": true})),
        log: Some("captured output".to_owned()),
    };
    due_work::finish_many(&app.db.pool, owner, 100, &[f])
        .await
        .expect("finish");
    id
}

#[tokio::test]
async fn enqueued_job_reads_back_with_the_request_id_in_its_metadata() {
    let app = App::new().await;
    let req = Request::post("/v1/jobs")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .header("x-request-id", "req-123")
        .body(Body::from(
            json!({"queue": "q", "kind": "k", "payload": {"a": 1}, "priority": -5, "max_attempts": 2, "timeout": "30s"})
                .to_string(),
        ))
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.headers["x-request-id"], "req-123");
    let id = r.id();
    let got = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["state"], "available");
    assert_eq!(got.body["payload"], json!({"a": 1}));
    assert_eq!(got.body["priority"], -5);
    assert_eq!(got.body["max_attempts"], 2);
    assert_eq!(got.body["metadata"]["request_id"], "req-123");
    assert_eq!(got.body["attempts"], json!([]));
    assert!(
        !got.headers["x-request-id"].is_empty(),
        "a request id is generated when absent"
    );
}

#[tokio::test]
async fn repeating_an_enqueue_with_an_idempotency_key_returns_the_same_job() {
    let app = App::new().await;
    let send = || {
        Request::post("/v1/jobs")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .header("idempotency-key", "order-42")
            .body(Body::from(json!({"queue": "q", "kind": "k"}).to_string()))
            .unwrap()
    };
    let first = app.send(send()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body["duplicate"], false);
    let second = app.send(send()).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body["duplicate"], true);
    assert_eq!(first.body["id"], second.body["id"]);
    assert_eq!(app.db.live_jobs().await, 1);
    let job = app
        .get(&format!("/v1/jobs/{}", first.body["id"].as_str().unwrap()))
        .await;
    assert_eq!(job.body["unique_key"], "order-42");
}

#[tokio::test]
async fn batch_enqueues_every_job_in_input_order() {
    let app = App::new().await;
    let r = app
        .enqueue_batch(json!({"jobs": [
            {"queue": "a", "kind": "k"},
            {"queue": "b", "kind": "k", "delay": "1h"},
            {"queue": "a", "kind": "k", "unique_key": "u"},
            {"queue": "a", "kind": "k", "unique_key": "u"},
        ]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let jobs = r.body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 4);
    // The same key twice in one batch: one job, reported once as new, once as duplicate.
    assert_ne!(jobs[2]["duplicate"], jobs[3]["duplicate"], "{}", r.text);
    assert_eq!(jobs[2]["id"], jobs[3]["id"]);
    assert_eq!(app.db.live_jobs().await, 3);
    let second = app
        .get(&format!("/v1/jobs/{}", jobs[1]["id"].as_str().unwrap()))
        .await;
    assert_eq!(second.body["state"], "scheduled");
}

#[tokio::test]
async fn list_filters_by_queue_state_and_time_and_pages_with_a_cursor() {
    let app = App::new().await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(enqueue(&app, "one").await);
    }
    enqueue(&app, "two").await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/jobs?queue=one&limit=2&cursor={c}"),
            None => "/v1/jobs?queue=one&limit=2".to_owned(),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        for j in page.body["jobs"].as_array().unwrap() {
            assert_eq!(j["queue"], "one");
            seen.push(j["id"].as_str().unwrap().parse::<Uuid>().unwrap());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every job once");
    let after =
        (before + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let none = app.get(&format!("/v1/jobs?created_after={after}")).await;
    assert_eq!(none.body["jobs"], json!([]));
    let since = before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let all = app
        .get(&format!("/v1/jobs?created_after={since}&state=available"))
        .await;
    assert_eq!(all.body["jobs"].as_array().unwrap().len(), 6);
    finish(&app, "two", FinishKind::Failed).await;
    let failed = app.get("/v1/jobs?state=failed&kind=k").await;
    assert_eq!(failed.body["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(failed.body["jobs"][0]["queue"], "two");
}

#[tokio::test]
async fn waiting_job_is_cancelled_then_retried_and_finished_jobs_refuse_cancel() {
    let app = App::new().await;
    let id = enqueue(&app, "q").await;
    let r = app.act(&format!("/v1/jobs/{id}/cancel")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["result"], "cancelled");
    let again = app.act(&format!("/v1/jobs/{id}/cancel")).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["error"]["code"], "already_finished");
    let got = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(got.body["state"], "cancelled");
    let retried = app.act(&format!("/v1/jobs/{id}/retry")).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text);
    assert_eq!(
        app.get(&format!("/v1/jobs/{id}")).await.body["state"],
        "available"
    );
    let live = app.act(&format!("/v1/jobs/{id}/retry")).await;
    assert_eq!(live.status, StatusCode::CONFLICT);
    assert_eq!(live.body["error"]["code"], "conflict");
}

#[tokio::test]
async fn running_job_cancel_is_requested() {
    let app = App::new().await;
    let id = enqueue(&app, "q").await;
    due_work::claim_due(
        &app.db.pool,
        &["q".to_owned()],
        1,
        Uuid::now_v7(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let r = app.act(&format!("/v1/jobs/{id}/cancel")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["result"], "cancel_requested");
}

#[tokio::test]
async fn failed_job_shows_its_attempts_with_captured_output_and_can_be_retried() {
    let app = App::new().await;
    enqueue(&app, "q").await;
    let id = finish(&app, "q", FinishKind::Failed).await;
    let attempts = app.get(&format!("/v1/jobs/{id}/attempts")).await;
    assert_eq!(attempts.status, StatusCode::OK);
    assert_eq!(attempts.body["attempts"][0]["outcome"], "failed");
    assert_eq!(attempts.body["attempts"][0]["log"], "captured output");
    assert_eq!(attempts.body["attempts"][0]["error"], "boom");
    let job = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(job.body["state"], "failed");
    assert_eq!(job.body["attempts"].as_array().unwrap().len(), 1);
    let r = app.act(&format!("/v1/jobs/{id}/retry")).await;
    let state = r.body["state"].as_str();
    assert_eq!((r.status, state), (StatusCode::OK, Some("available")));
}

#[tokio::test]
async fn unknown_jobs_are_404_everywhere() {
    let app = App::new().await;
    let id = Uuid::now_v7();
    for (method, path) in [
        (Method::GET, format!("/v1/jobs/{id}")),
        (Method::GET, format!("/v1/jobs/{id}?wait=1s")),
        (Method::GET, format!("/v1/jobs/{id}/attempts")),
        (Method::POST, format!("/v1/jobs/{id}/cancel")),
        (Method::POST, format!("/v1/jobs/{id}/retry")),
    ] {
        let r = app.call(method.clone(), &path, None).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.text
        );
        assert_eq!(r.body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn wait_returns_as_soon_as_the_job_finishes() {
    let app = App::new().await.with_listener().await;
    let id = enqueue(&app, "q").await;
    let waiter = app.get_in_background(&format!("/v1/jobs/{id}?wait=120s"));
    // Give the request time to start waiting; correctness does not depend on it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    finish(&app, "q", FinishKind::Completed).await;
    // Well under the 120s wait: only an event can have ended it this early.
    let body = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("wait ends when the job finishes, not at its timeout")
        .unwrap()
        .body;
    assert_eq!(body["state"], "completed");
    assert_eq!(body["output"], json!({"ok": true}));
}

#[tokio::test]
async fn wait_ends_with_the_current_state_when_time_is_up() {
    let app = App::new().await.with_listener().await;
    let id = enqueue(&app, "q").await;
    let r = app.get(&format!("/v1/jobs/{id}?wait=300ms")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["state"], "available");
}

#[tokio::test]
async fn api_max_wait_caps_a_longer_wait() {
    let mut s = super::settings();
    s.max_wait = Duration::from_millis(300);
    let app = App::with(s).await.with_listener().await;
    let id = enqueue(&app, "q").await;
    // Asks for two minutes; the operator's cap answers after 0.3 s with the current state.
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        app.get(&format!("/v1/jobs/{id}?wait=120s")),
    )
    .await
    .expect("the wait is capped by API_MAX_WAIT, not the 120 s asked for");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["state"], "available");
}

#[tokio::test]
async fn wait_on_a_job_whose_queue_keeps_no_completed_jobs_answers_completed() {
    let app = App::new().await.with_listener().await;
    app.db
        .exec("INSERT INTO queues (name, keep_completed) VALUES ('unkept', false)")
        .await;
    let id = enqueue(&app, "unkept").await;
    let waiter = app.get_in_background(&format!("/v1/jobs/{id}?wait=120s"));
    // The waiter subscribes before its first read; give that read time to see the job
    // live, as wait_returns_as_soon_as_the_job_finishes does.
    crate::common::eventually(
        Duration::from_secs(10),
        "the waiter to subscribe",
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM event_subscribers")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
            (n > 0).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    finish(&app, "unkept", FinishKind::Completed).await;
    let reply = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("wait ends when the job finishes")
        .unwrap();
    let (status, body) = (reply.status, reply.body);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], id.to_string());
    assert_eq!(body["state"], "completed");
    assert!(body["output"].is_null(), "not kept: {body}");
    assert_eq!(
        app.db.ended_jobs().await,
        0,
        "the queue keeps no completed jobs"
    );
}
