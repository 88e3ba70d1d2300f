//! `GET /v1/events` over a real socket, and graceful shutdown with a stream open.

use std::time::Duration;

use ordinaut::db::due_work;
use serde_json::json;
use uuid::Uuid;

use super::Server;

/// Reads the stream until `done` accepts what has arrived, or fails after 30s.
async fn read_until(
    response: &mut reqwest::Response,
    seen: &mut String,
    done: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(seen) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("timed out; stream so far:\n{seen}"))
            .expect("stream reads")
            .expect("stream still open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn event_stream_reports_state_changes_of_the_filtered_queue() {
    let server = Server::start().await;
    let client = server.client();
    let mut stream = client
        .get(server.url("/v1/events?queue=ev"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let enqueue = |queue: &'static str| {
        client
            .post(server.url("/v1/jobs"))
            .json(&json!({"queue": queue, "kind": "k"}))
            .send()
    };
    let other = enqueue("other").await.unwrap();
    let other = other.json::<serde_json::Value>().await.unwrap();
    let mine = enqueue("ev").await.unwrap();
    let mine = mine.json::<serde_json::Value>().await.unwrap();
    let id = mine["id"].as_str().unwrap().to_owned();
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, |s| {
        s.contains(&id) && s.contains("available")
    })
    .await;
    due_work::claim_due(
        &server.app.db.pool,
        &["ev".into()],
        1,
        Uuid::now_v7(),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    read_until(&mut stream, &mut seen, |s| s.contains("\"running\"")).await;
    assert!(seen.contains("event: job"), "{seen}");
    assert!(
        !seen.contains(other["id"].as_str().unwrap()),
        "filtered out: {seen}"
    );

    // Shutdown ends the open stream instead of waiting for the client.
    server.stop().await;
}

#[tokio::test]
async fn event_stream_filters_by_job_id() {
    let server = Server::start().await;
    let client = server.client();
    let a = server
        .app
        .enqueue(json!({"queue": "q", "kind": "k", "delay": "1h"}))
        .await;
    let id = a.id();
    let mut stream = client
        .get(server.url(&format!("/v1/events?job_id={id}")))
        .send()
        .await
        .unwrap();
    server.app.enqueue(json!({"queue": "q", "kind": "k"})).await;
    let cancel = client
        .post(server.url(&format!("/v1/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, |s| s.contains("cancelled")).await;
    // Its own enqueue event may arrive too (NOTIFY is delivered after subscribing);
    // every event must be about the filtered job.
    for line in seen.lines().filter(|l| l.starts_with("data:")) {
        assert!(line.contains(&id), "only the filtered job: {seen}");
    }
    server.stop().await;
}
