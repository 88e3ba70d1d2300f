//! `/v1/workflows` over HTTP: submit, show, list, cancel, retry, append, and the 4xx
//! answers naming the problem.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::App;

#[tokio::test]
async fn workflows_are_submitted_shown_listed_cancelled_retried_and_appended_to() {
    let app = App::new().await;
    let created = app
        .post(
            "/v1/workflows",
            json!({"name": "deploy", "metadata": {"env": "prod"}, "jobs": [
                {"name": "provision", "queue": "q", "kind": "k", "timeout": "5m"},
                {"name": "verify", "queue": "q", "kind": "k", "depends_on": ["provision"]},
                {"name": "notify", "queue": "q", "kind": "k",
                 "depends_on": [{"name": "verify", "on_failure": "ignore"}]}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();

    let shown = app.get(&format!("/v1/workflows/{id}")).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(shown.body["state"], "running");
    assert_eq!(shown.body["metadata"]["env"], "prod");
    let jobs = shown.body["jobs"].as_array().unwrap();
    assert_eq!(jobs[0]["name"], "provision");
    assert_eq!(jobs[0]["state"], "enqueued");
    assert_eq!(jobs[0]["job_state"], "available");
    assert_eq!(jobs[1]["state"], "waiting");
    assert_eq!(jobs[2]["depends_on"][0]["on_failure"], "ignore");
    // The enqueued step is an ordinary job with the timeout converted.
    let job = app
        .get(&format!("/v1/jobs/{}", jobs[0]["job_id"].as_str().unwrap()))
        .await;
    assert_eq!(job.status, StatusCode::OK, "{}", job.text);

    let appended = app
        .post(
            &format!("/v1/workflows/{id}/jobs"),
            json!({"jobs": [{"name": "extra", "queue": "q", "kind": "k", "depends_on": ["verify"]}]}),
        )
        .await;
    assert_eq!(appended.status, StatusCode::CREATED, "{}", appended.text);
    assert_eq!(appended.body["jobs"][0]["name"], "extra");

    let list = app.get("/v1/workflows?state=running").await;
    assert_eq!(list.body["workflows"][0]["id"], id.as_str());
    assert_eq!(list.body["workflows"][0]["steps"], 4);

    let cancelled = app
        .call(Method::POST, &format!("/v1/workflows/{id}/cancel"), None)
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text);
    let shown = app.get(&format!("/v1/workflows/{id}")).await;
    assert_eq!(shown.body["state"], "cancelled");
    let late = app
        .post(
            &format!("/v1/workflows/{id}/jobs"),
            json!({"jobs": [{"name": "late", "queue": "q", "kind": "k"}]}),
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.text);

    let retried = app
        .call(Method::POST, &format!("/v1/workflows/{id}/retry"), None)
        .await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text);
    assert_eq!(retried.body["retried"], 1);
    let shown = app.get(&format!("/v1/workflows/{id}")).await;
    assert_eq!(shown.body["state"], "running");
    assert_eq!(shown.body["jobs"][1]["state"], "waiting");
}

#[tokio::test]
async fn bad_workflows_get_a_400_naming_the_problem() {
    let app = App::new().await;
    let cases = [
        (
            json!({"name": "w", "jobs": [{"name": "a", "queue": "q", "kind": "k", "depends_on": ["b"]},
                                         {"name": "b", "queue": "q", "kind": "k", "depends_on": ["a"]}]}),
            "depends_on: a cycle runs through a, b",
        ),
        (
            json!({"name": "w", "jobs": [{"name": "a", "queue": "q", "kind": "k", "depends_on": ["nope"]}]}),
            "jobs[0].depends_on: no step named nope",
        ),
        (
            json!({"name": "w", "jobs": [{"name": "a", "queue": "bad queue", "kind": "k"}]}),
            "jobs[0].queue",
        ),
        (
            json!({"name": "w", "jobs": [{"name": "a", "queue": "q", "kind": "k", "timeout": "soon"}]}),
            "jobs[0].timeout",
        ),
        (
            json!({"name": "w", "jobs": [{"name": "a", "queue": "q", "kind": "k", "bogus": 1}]}),
            "bogus",
        ),
        (json!({"name": "w"}), "jobs"),
    ];
    for (body, want) in cases {
        let r = app.post("/v1/workflows", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert!(
            r.body["error"]["message"].as_str().unwrap().contains(want),
            "{body}: {}",
            r.text
        );
    }
    let missing = app
        .get(&format!("/v1/workflows/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let missing = app
        .call(
            Method::POST,
            &format!("/v1/workflows/{}/cancel", uuid::Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    let bad = app.get("/v1/workflows/not-a-uuid").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = app.get("/v1/workflows?state=done").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
