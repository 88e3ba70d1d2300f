//! The pull model: a worker written against the HTTP API alone.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ordinaut::db::due_work;
use ordinaut::model::Backoff;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{App, Server, post_json};

/// A pull worker: claims in batches, heartbeats, fails even-numbered jobs on their
/// first attempt (retry right away), completes everything else. Returns when `total`
/// jobs have been completed by all workers together.
async fn pull_worker(
    server_url: String,
    client: reqwest::Client,
    completed: Arc<Mutex<Vec<Uuid>>>,
    total: usize,
) {
    let owner = Uuid::now_v7();
    loop {
        if completed.lock().unwrap().len() >= total {
            return;
        }
        let claim = post_json(
            &client,
            format!("{server_url}/v1/pull/claim"),
            json!({"queues": ["pull"], "limit": 5, "wait": "1s", "lease_owner": owner, "lease_seconds": 30}),
        )
        .await;
        assert_eq!(claim["lease_owner"], owner.to_string(), "{claim}");
        let jobs = claim["jobs"].as_array().cloned().unwrap_or_default();
        if jobs.is_empty() {
            continue;
        }
        let held: Vec<Value> = jobs
            .iter()
            .map(|j| json!({"id": j["id"], "attempt": j["attempt"]}))
            .collect();
        let heartbeat = json!({"lease_owner": owner, "jobs": held});
        let hb = post_json(
            &client,
            format!("{server_url}/v1/pull/heartbeat"),
            heartbeat,
        )
        .await;
        assert_eq!(hb["lost"], json!([]), "{hb}");
        for job in jobs {
            let id = job["id"].as_str().unwrap();
            let n = job["payload"]["n"].as_i64().unwrap();
            let attempt = &job["attempt"];
            if n % 2 == 0 && job["attempt"] == 1 {
                let r = client
                    .post(format!("{server_url}/v1/pull/jobs/{id}/fail"))
                    .json(&json!({"lease_owner": owner, "attempt": attempt, "error": "even numbers fail once", "retry_after": "0s", "log": "tried"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["outcome"], "retry", "{body}");
            } else {
                let r = client
                    .post(format!("{server_url}/v1/pull/jobs/{id}/complete"))
                    .json(
                        &json!({"lease_owner": owner, "attempt": attempt, "output": {"double": n * 2}, "log": "done"}),
                    )
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                completed.lock().unwrap().push(id.parse().unwrap());
            }
        }
    }
}

#[tokio::test]
async fn pull_workers_over_http_complete_every_job_exactly_once() {
    let server = Server::start().await;
    const TOTAL: usize = 60;
    let jobs: Vec<Value> = (0..TOTAL)
        .map(|n| json!({"queue": "pull", "kind": "k", "payload": {"n": n}}))
        .collect();
    for chunk in jobs.chunks(10) {
        let r = server.app.enqueue_batch(json!({"jobs": chunk})).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let completed = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(pull_worker(
                server.url(""),
                server.client(),
                completed.clone(),
                TOTAL,
            ))
        })
        .collect();
    for w in workers {
        tokio::time::timeout(Duration::from_secs(120), w)
            .await
            .expect("workers drain the queue")
            .unwrap();
    }
    let done = completed.lock().unwrap().clone();
    assert_eq!(done.len(), TOTAL);
    assert_eq!(
        done.iter().collect::<HashSet<_>>().len(),
        TOTAL,
        "no job completed twice"
    );
    let db = &server.app.db;
    assert_eq!(db.live_jobs().await, 0);
    assert_eq!(db.ended_in("completed").await, TOTAL as i64);
    assert_eq!(db.attempts_ending("completed").await, TOTAL as i64);
    assert_eq!(db.attempts_ending("retry").await, (TOTAL / 2) as i64);
    assert_eq!(
        db.count("job_history WHERE state = 'completed' AND (output->>'double') IS NOT NULL")
            .await,
        TOTAL as i64
    );
    assert_eq!(
        db.workers().await,
        0,
        "pull clients are never registered as workers"
    );
    server.stop().await;
}

#[tokio::test]
async fn claim_waits_for_work_and_wakes_when_a_job_is_enqueued() {
    let server = Server::start().await;
    let waiter = server.claim_in_background(json!({"queues": ["late"], "wait": "60s"}));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = server
        .app
        .enqueue(json!({"queue": "late", "kind": "k"}))
        .await;
    let claimed = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the claim returns when work arrives, before its 60s wait")
        .unwrap();
    assert_eq!(claimed["jobs"][0]["id"], r.body["id"]);
    assert_eq!(claimed["jobs"][0]["attempt"], 1);
    server.stop().await;
}

#[tokio::test]
async fn lost_lease_refuses_results_and_heartbeat_reports_it() {
    let app = App::new().await;
    let r = app
        .enqueue(json!({"queue": "q", "kind": "k", "max_attempts": 3}))
        .await;
    let id = r.id();
    let claim = app
        .claim(json!({"queues": ["q"], "lease_seconds": 2}))
        .await;
    assert_eq!(claim.status, 200, "{}", claim.text);
    let owner = claim.body["lease_owner"].as_str().unwrap().to_owned();
    let other = Uuid::now_v7();
    let wrong = app
        .report(&id, "complete", json!({"lease_owner": other, "attempt": 1}))
        .await;
    assert_eq!(wrong.status, 409);
    assert_eq!(wrong.body["error"]["code"], "lease_lost");
    // The lease runs out (no heartbeat) and the rescuer hands the job back.
    app.db
        .exec("UPDATE due_work SET lease_expires_at = now() - interval '1 second'")
        .await;
    let backoff = Backoff {
        base: Duration::from_millis(1),
        max: Duration::from_millis(1),
    };
    due_work::rescue_many(&app.db.pool, &[], backoff, 100)
        .await
        .unwrap();
    let hb = app
        .post(
            "/v1/pull/heartbeat",
            json!({"lease_owner": owner, "jobs": [{"id": id, "attempt": 1}]}),
        )
        .await;
    assert_eq!(hb.body["lost"], json!([id]));
    let late = app
        .report(&id, "complete", json!({"lease_owner": owner, "attempt": 1}))
        .await;
    assert_eq!(late.status, 409);
    assert_eq!(app.db.ended_jobs().await, 0);
}

#[tokio::test]
async fn cancel_reaches_a_pull_client_through_its_heartbeat() {
    let app = App::new().await;
    let r = app.enqueue(json!({"queue": "q", "kind": "k"})).await;
    let id = r.id();
    let claim = app.claim(json!({"queues": ["q"]})).await;
    let owner = claim.body["lease_owner"].as_str().unwrap().to_owned();
    let c = app.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(c.body["result"], "cancel_requested");
    let hb = app
        .post(
            "/v1/pull/heartbeat",
            json!({"lease_owner": owner, "jobs": [{"id": id, "attempt": 1}]}),
        )
        .await;
    assert_eq!(hb.body["extended"][0]["cancel_requested"], true);
    let f = app
        .report(
            &id,
            "fail",
            json!({"lease_owner": owner, "attempt": 1, "error": "stopped", "cancelled": true}),
        )
        .await;
    assert_eq!(f.status, 200, "{}", f.text);
    assert_eq!(f.body["outcome"], "cancelled");
    assert_eq!(
        app.get(&format!("/v1/jobs/{id}")).await.body["state"],
        "cancelled"
    );
}

#[tokio::test]
async fn failure_without_attempts_left_or_not_retryable_is_final() {
    let app = App::new().await;
    app.enqueue(json!({"queue": "q", "kind": "k", "max_attempts": 1}))
        .await;
    app.enqueue(json!({"queue": "q", "kind": "k", "max_attempts": 5}))
        .await;
    let claim = app.claim(json!({"queues": ["q"], "limit": 2})).await;
    let owner = claim.body["lease_owner"].as_str().unwrap().to_owned();
    for job in claim.body["jobs"].as_array().unwrap() {
        let id = job["id"].as_str().unwrap();
        let body = if job["max_attempts"] == 1 {
            json!({"lease_owner": owner, "attempt": 1, "error": "bad"})
        } else {
            json!({"lease_owner": owner, "attempt": 1, "error": "bad input", "retryable": false})
        };
        let f = app.report(&id, "fail", body).await;
        assert_eq!(f.body["outcome"], "failed", "{}", f.text);
    }
    assert_eq!(app.db.ended_in("failed").await, 2);
}
