//! `/v1/workflows` over HTTP: submit, show, list, cancel, retry, append, and the 4xx
//! answers naming the problem.

use axum::http::StatusCode;
use serde_json::json;

use super::App;

#[tokio::test]
async fn workflows_are_submitted_shown_listed_cancelled_retried_and_appended_to() {
    let app = App::new().await;
    let created = app
        .submit_workflow(
            json!({"name": "deploy", "metadata": {"env": "prod"}, "jobs": [
                {"name": "provision", "queue": "q", "kind": "k", "timeout": "5m"},
                {"name": "verify", "queue": "q", "kind": "k", "depends_on": ["provision"]},
                {"name": "notify", "queue": "q", "kind": "k",
                 "depends_on": [{"name": "verify", "on_failure": "ignore"}]}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.id();

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

    let cancelled = app.act(&format!("/v1/workflows/{id}/cancel")).await;
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

    let retried = app.act(&format!("/v1/workflows/{id}/retry")).await;
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
        let r = app.submit_workflow(body.clone()).await;
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
        .act(&format!("/v1/workflows/{}/cancel", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    let bad = app.get("/v1/workflows/not-a-uuid").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = app.get("/v1/workflows?state=done").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

/// A step waiting for its dependencies is a job in state `waiting`: shown with its
/// workflow and what it waits on, listed (and filtered by `state=waiting`), refused by
/// retry, delete and bulk actions with a 4xx naming why, and cancelled as its job would be
/// (its dependents follow their edges' policies).
#[tokio::test]
async fn a_waiting_step_is_a_visible_job_that_can_be_cancelled() {
    let app = App::new().await;
    let created = app
        .submit_workflow(json!({"name": "scan", "jobs": [
                {"name": "clone", "queue": "q", "kind": "k"},
                {"name": "tool", "queue": "q", "kind": "k", "depends_on": ["clone"]},
                {"name": "report", "queue": "q", "kind": "k",
                 "depends_on": [{"name": "tool", "on_failure": "ignore"}]},
                {"name": "notify", "queue": "q", "kind": "k", "depends_on": ["tool"]}]}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let wf = created.id();
    let shown = app.get(&format!("/v1/workflows/{wf}")).await;
    let job_of = |name: &str| {
        shown.body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["job_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (clone, tool, report, notify) = (
        job_of("clone"),
        job_of("tool"),
        job_of("report"),
        job_of("notify"),
    );

    let got = app.get(&format!("/v1/jobs/{tool}")).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    assert_eq!(got.body["state"], "waiting");
    assert_eq!(got.body["workflow_id"], wf.as_str());
    assert_eq!(got.body["queue"], "q");
    assert_eq!(got.body["attempt"], 0);
    assert_eq!(got.body["workflow_step"]["step"], "tool");
    assert_eq!(got.body["workflow_step"]["workflow_name"], "scan");
    assert_eq!(got.body["workflow_step"]["pending"], 1);
    assert_eq!(
        got.body["workflow_step"]["depends_on"],
        json!([{"name": "clone", "state": "enqueued", "on_failure": "cancel"}])
    );
    // A live step's job names its workflow too; a plain job has none.
    let live = app.get(&format!("/v1/jobs/{clone}")).await;
    assert_eq!(live.body["state"], "available");
    assert_eq!(live.body["workflow_id"], wf.as_str());
    assert_eq!(live.body["workflow_step"]["step"], "clone");

    let ids = |r: &super::Reply| -> Vec<String> {
        r.body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Newest first (ids are time-ordered), as every list.
    let desc = |mut v: Vec<String>| {
        v.sort_by(|a, b| b.cmp(a));
        v
    };
    let waiting = app.get("/v1/jobs?state=waiting").await;
    assert_eq!(waiting.status, StatusCode::OK, "{}", waiting.text);
    let expected = desc(vec![tool.clone(), report.clone(), notify.clone()]);
    assert_eq!(ids(&waiting), expected);
    assert!(
        waiting.body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["state"] == "waiting" && j["workflow_id"] == wf.as_str())
    );
    let all = app.get("/v1/jobs").await;
    assert_eq!(
        ids(&all),
        desc(vec![
            tool.clone(),
            report.clone(),
            notify.clone(),
            clone.clone()
        ])
    );
    let paged = app
        .get(&format!(
            "/v1/jobs?state=waiting&cursor={}&limit=1",
            expected[0]
        ))
        .await;
    assert_eq!(ids(&paged), vec![expected[1].clone()]);
    assert!(ids(&app.get("/v1/jobs?state=waiting&queue=other").await).is_empty());
    assert!(ids(&app.get("/v1/jobs?state=available").await) == vec![clone.clone()]);

    let bulk = app
        .post(
            "/v1/jobs/bulk/count",
            json!({"action": "cancel", "state": "waiting"}),
        )
        .await;
    bulk.refused(StatusCode::BAD_REQUEST, "workflows");
    let retry = app.act(&format!("/v1/jobs/{tool}/retry")).await;
    retry.refused(StatusCode::CONFLICT, "is waiting");
    let delete = app.delete(&format!("/v1/jobs/{tool}")).await;
    delete.refused(StatusCode::CONFLICT, "cancel it first");
    let delete = app.delete(&format!("/v1/jobs/{clone}")).await;
    delete.refused(StatusCode::CONFLICT, "live step");

    // Cancelling the waiting step: it ends without running; `notify` (a cancel edge) is
    // cancelled with it, `report` (ignore) no longer waits for it and is enqueued.
    let cancel = app.act(&format!("/v1/jobs/{tool}/cancel")).await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.text);
    assert_eq!(cancel.body["result"], "cancelled");
    let got = app.get(&format!("/v1/jobs/{tool}")).await;
    assert_eq!(got.body["state"], "cancelled");
    assert_eq!(
        got.body["last_error"],
        "cancelled by an operator while waiting"
    );
    let got = app.get(&format!("/v1/jobs/{notify}")).await;
    assert_eq!(got.body["state"], "cancelled");
    assert_eq!(
        got.body["last_error"],
        "a dependency failed or was cancelled"
    );
    let got = app.get(&format!("/v1/jobs/{report}")).await;
    assert_eq!(got.body["state"], "available", "{}", got.text);
    let shown = app.get(&format!("/v1/workflows/{wf}")).await;
    assert_eq!(shown.body["state"], "running");
    assert!(ids(&app.get("/v1/jobs?state=waiting").await).is_empty());
    let again = app.act(&format!("/v1/jobs/{tool}/cancel")).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    let retry = app.act(&format!("/v1/jobs/{tool}/retry")).await;
    retry.refused(StatusCode::CONFLICT, "retry the workflow");

    // The workflow's retry runs what never ran: both wait for `clone` again.
    let retried = app.act(&format!("/v1/workflows/{wf}/retry")).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text);
    assert_eq!(
        ids(&app.get("/v1/jobs?state=waiting").await),
        desc(vec![notify.clone(), tool.clone()])
    );

    let missing = app
        .act(&format!("/v1/jobs/{}/cancel", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
}
