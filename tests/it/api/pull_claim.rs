//! The pull claim: limited queues, the event gate, the claim window before a wait's
//! deadline, and jobs claimed for a client that disconnected.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::{App, Server, TOKEN};
use crate::common::eventually;

async fn enqueue(app: &App, queue: &str) -> Uuid {
    let r = app.enqueue(json!({"queue": queue, "kind": "k"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["id"].as_str().unwrap().parse().unwrap()
}

fn claimed_ids(body: &Value) -> Vec<String> {
    body["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobs in {body}"))
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn pull_claim_on_a_limited_queue_stays_within_its_concurrency_limit() {
    let app = App::new().await;
    let set = app
        .patch("/v1/queues/scans", json!({"concurrency_limit": 1}))
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    for _ in 0..3 {
        enqueue(&app, "scans").await;
    }
    let free = [enqueue(&app, "free").await, enqueue(&app, "free").await];
    let first = app.claim(json!({"queues": ["scans"], "limit": 10})).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(
        claimed_ids(&first.body).len(),
        1,
        "one job of the limited queue"
    );
    assert_eq!(first.body["jobs"][0]["queue"], "scans");
    let second = app.claim(json!({"queues": ["scans"], "limit": 10})).await;
    assert_eq!(
        claimed_ids(&second.body),
        Vec::<String>::new(),
        "none while it runs"
    );
    // With an unlimited queue beside it, the limit still holds and the rest comes from
    // the unlimited queue.
    let mixed = app
        .claim(json!({"queues": ["scans", "free"], "limit": 10, "wait": "2s"}))
        .await;
    let mut got = claimed_ids(&mixed.body);
    got.sort();
    let mut want: Vec<String> = free.iter().map(Uuid::to_string).collect();
    want.sort();
    assert_eq!(got, want);
    app.db
        .assert_rows("due_work WHERE queue = 'scans' AND state = 'running'", 1)
        .await;
}

#[tokio::test]
async fn pull_claim_opens_the_event_gate_only_when_it_has_to_wait() {
    let app = App::new().await;
    enqueue(&app, "ready").await;
    let plain = app.claim(json!({"queues": ["empty"]})).await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.text);
    let zero = app.claim(json!({"queues": ["empty"], "wait": "0s"})).await;
    assert_eq!(claimed_ids(&zero.body).len(), 0);
    let found = app.claim(json!({"queues": ["ready"], "wait": "30s"})).await;
    assert_eq!(claimed_ids(&found.body).len(), 1, "work was there at once");
    assert_eq!(
        app.db.count("event_subscribers").await,
        0,
        "no claim had to wait, so the gate stays closed"
    );
    // A claim that does wait opens it (so the count above can see a subscription).
    let waited = app.claim(json!({"queues": ["empty"], "wait": "2s"})).await;
    assert_eq!(claimed_ids(&waited.body).len(), 0);
    app.db.assert_rows("event_subscribers", 1).await;
}

#[tokio::test]
async fn pull_claim_stops_claiming_before_its_wait_ends() {
    let server = Server::start().await;
    let wait = Duration::from_secs(4);
    let sent = Instant::now();
    let waiter = server.claim_in_background(json!({"queues": ["late"], "wait": "4s"}));
    // Work that arrives in the wait's last 300 ms is left for the next claim: a client
    // about to give up must not be handed jobs it will never see.
    tokio::time::sleep_until((sent + wait - Duration::from_millis(300)).into()).await;
    let id = enqueue(&server.app, "late").await;
    let answer = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the claim answers")
        .unwrap();
    assert_eq!(claimed_ids(&answer), Vec::<String>::new());
    let (state, attempt): (String, i32) =
        sqlx::query_as("SELECT state, attempt FROM due_work WHERE id = $1")
            .bind(id)
            .fetch_one(&server.app.db.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempt), ("available", 0));
    server.stop().await;
}

#[tokio::test]
async fn jobs_claimed_for_a_client_that_disconnected_are_handed_back_unspent() {
    let server = Server::start().await;
    let id = enqueue(&server.app, "q").await;
    // Hold the claim statement inside Postgres (it needs ROW EXCLUSIVE on due_work)
    // until the client has gone.
    let mut blocker = server.app.db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE due_work IN SHARE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let body = json!({"queues": ["q"], "lease_seconds": 3600}).to_string();
    let request = format!(
        "POST /v1/pull/claim HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    eventually(
        Duration::from_secs(20),
        "claim blocked on the lock",
        || async {
            (server
                .app
                .db
                .count(
                    "pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query LIKE '%due_work%'",
                )
                .await
                == 1)
                .then_some(())
        },
    )
    .await;
    // The client gives up: the server sees the EOF and drops the request; it closes
    // the connection without an answer once it has.
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("server closes the connection")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&answer), "", "no answer was sent");
    blocker.commit().await.unwrap();
    // The claim commits now, for nobody: the job must come back at once, not after the
    // hour-long lease, and without spending its attempt.
    eventually(Duration::from_secs(20), "job handed back", || async {
        (server
            .app
            .db
            .count("job_attempts WHERE outcome = 'interrupted'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let (state, attempt, owner): (String, i32, Option<Uuid>) =
        sqlx::query_as("SELECT state, attempt, lease_owner FROM due_work WHERE id = $1")
            .bind(id)
            .fetch_one(&server.app.db.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempt, owner), ("available", 0, None));
    let again = server.app.claim(json!({"queues": ["q"]})).await;
    assert_eq!(claimed_ids(&again.body), vec![id.to_string()]);
    assert_eq!(again.body["jobs"][0]["attempt"], 1);
    server.stop().await;
}
