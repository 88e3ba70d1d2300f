//! Workflows against real Postgres, driven through the real claim and finish
//! statements (and the rescue, cancel and retry ones): activation, policies, outputs,
//! cancel, retry, append, the chord shorthand, SQL in the caller's transaction, and a
//! randomized check that no step is ever left waiting.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ordinaut::db::due_work::{self, Finish, FinishKind};
use ordinaut::db::{self, workflows};
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::jobs::{claim, finish, outcome};
use crate::common::{TestDb, schedules};

async fn submit(db: &TestDb, spec: Value) -> Uuid {
    workflows::submit(&db.pool, &spec, 4)
        .await
        .expect("workflow submits")
}

/// A fresh database holding the workflow `spec` submits: the database and its id.
async fn submitted(spec: Value) -> (TestDb, Uuid) {
    let db = TestDb::new().await;
    let id = submit(&db, spec).await;
    (db, id)
}

fn step_of(payload: &Value) -> String {
    payload["_workflow"]["step"]
        .as_str()
        .expect("a workflow job names its step")
        .to_owned()
}

/// Claims what is available on queue `q` as one worker and finishes each job with the
/// outcome `decide` gives its step, until nothing is available. Returns the rounds:
/// the steps claimed together, and every claimed job's payload by step.
async fn drive(
    db: &TestDb,
    mut decide: impl FnMut(&str) -> FinishKind,
) -> (Vec<Vec<String>>, HashMap<String, Value>) {
    let worker = Uuid::now_v7();
    let mut rounds = Vec::new();
    let mut payloads = HashMap::new();
    loop {
        let claimed = claim(&db.pool, 1000, worker).await;
        if claimed.is_empty() {
            return (rounds, payloads);
        }
        let mut round = Vec::new();
        let mut batch = Vec::new();
        for job in claimed {
            let step = step_of(&job.payload);
            let kind = decide(&step);
            batch.push(Finish {
                error: (kind != FinishKind::Completed).then(|| format!("{step} did not complete")),
                output: Some(json!({ "from": step })),
                ..outcome(job.id, job.attempt, kind)
            });
            payloads.insert(step.clone(), job.payload);
            round.push(step);
        }
        round.sort();
        finish(&db.pool, worker, &batch).await;
        rounds.push(round);
    }
}

/// For [`drive`]: the step named `failing` fails, every other one completes.
fn only_fails(failing: &str) -> impl FnMut(&str) -> FinishKind + '_ {
    move |step| {
        if step == failing {
            FinishKind::Failed
        } else {
            FinishKind::Completed
        }
    }
}

/// Drives workflow `id` with every step completing: the steps run in `expected` rounds
/// and the workflow ends completed.
async fn completes_in_rounds(db: &TestDb, id: Uuid, expected: &[&[&str]]) {
    let (rounds, _) = drive(db, |_| FinishKind::Completed).await;
    assert_eq!(rounds, expected);
    assert_eq!(workflow_state(db, id).await, "completed");
}

/// Workflow `id` with its steps, as the store reads it.
async fn workflow(db: &TestDb, id: Uuid) -> workflows::Workflow {
    workflows::get(&db.pool, id)
        .await
        .expect("the workflow exists")
}

/// The state of workflow `id`: running, completed, failed or cancelled.
async fn workflow_state(db: &TestDb, id: Uuid) -> String {
    workflow(db, id).await.summary.state
}

fn states(w: &workflows::Workflow) -> BTreeMap<String, String> {
    w.jobs
        .iter()
        .map(|s| (s.name.clone(), s.state.clone()))
        .collect()
}

fn job(name: &str, deps: Value) -> Value {
    json!({"name": name, "queue": "q", "kind": "k", "depends_on": deps})
}

fn diamond() -> Value {
    json!({"name": "diamond", "jobs": [
        job("a", json!([])), job("b", json!(["a"])), job("c", json!(["a"])), job("d", json!(["b", "c"])),
    ]})
}

#[tokio::test]
async fn a_diamond_runs_in_dependency_order_and_the_join_reads_both_outputs() {
    let (db, id) = submitted(diamond()).await;
    // Only the root is a live job; the others wait outside due_work, visibly.
    assert_eq!(db.live_jobs().await, 1);
    let w = workflow(&db, id).await;
    assert_eq!(w.summary.state, "running");
    assert_eq!(states(&w)["d"], "waiting");
    assert_eq!(w.jobs.iter().find(|s| s.name == "d").unwrap().pending, 2);

    let (rounds, payloads) = drive(&db, |_| FinishKind::Completed).await;
    assert_eq!(rounds, vec![vec!["a"], vec!["b", "c"], vec!["d"]]);
    let deps = &payloads["d"]["_workflow"]["deps"];
    assert_eq!(deps["b"]["output"], json!({"from": "b"}));
    assert_eq!(deps["c"]["output"], json!({"from": "c"}));
    assert_eq!(deps["c"]["state"], "completed");
    assert_eq!(payloads["d"]["_workflow"]["id"], json!(id));

    let w = workflow(&db, id).await;
    assert_eq!(w.summary.state, "completed");
    assert!(w.summary.finished_at.is_some());
    assert!(states(&w).values().all(|s| s == "completed"));
}

#[tokio::test]
async fn failure_policies_cancel_ignore_and_cleanup() {
    let (db, id) = submitted(
        json!({"name": "policies", "jobs": [
            job("a", json!([])),
            job("cancelled", json!(["a"])),
            job("after_cancelled", json!(["cancelled"])),
            job("ignores", json!([{"name": "a", "on_failure": "ignore"}])),
            {"name": "cleanup", "queue": "q", "kind": "k", "on_failure": "cleanup", "depends_on": ["a"]},
        ]}),
    )
    .await;
    let (_, payloads) = drive(&db, only_fails("a")).await;
    let w = workflow(&db, id).await;
    let s = states(&w);
    assert_eq!(s["a"], "failed");
    assert_eq!(s["cancelled"], "cancelled");
    assert_eq!(s["after_cancelled"], "cancelled");
    assert_eq!(s["ignores"], "completed");
    assert_eq!(s["cleanup"], "completed");
    assert_eq!(
        payloads["cleanup"]["_workflow"]["deps"]["a"]["state"],
        "failed"
    );
    assert_eq!(w.summary.state, "failed");

    // Nothing failed: the cleanup step is skipped, and the workflow completed.
    let id = submit(
        &db,
        json!({"name": "clean", "jobs": [
            job("a", json!([])),
            {"name": "cleanup", "queue": "q", "kind": "k", "on_failure": "cleanup", "depends_on": ["a"]},
            job("after_cleanup", json!(["cleanup"])),
        ]}),
    )
    .await;
    drive(&db, |_| FinishKind::Completed).await;
    let w = workflow(&db, id).await;
    let s = states(&w);
    assert_eq!(s["cleanup"], "skipped");
    assert_eq!(s["after_cleanup"], "completed");
    assert_eq!(w.summary.state, "completed");
}

#[tokio::test]
async fn a_workflow_wide_policy_applies_to_every_edge() {
    let db = TestDb::new().await;
    let mut spec = diamond();
    spec["on_failure"] = json!("ignore");
    let id = submit(&db, spec).await;
    drive(&db, only_fails("b")).await;
    let s = states(&workflow(&db, id).await);
    assert_eq!(s["d"], "completed");
}

/// Random graphs, policies and outcomes: every step ends, in the state the rules give.
#[tokio::test]
async fn no_step_is_ever_left_waiting_random_graphs() {
    let db = TestDb::new().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    for round in 0..40 {
        let n = rng.random_range(1..12);
        let mut jobs = Vec::new();
        let mut deps_of: Vec<Vec<(usize, &str)>> = Vec::new();
        let mut outcome: Vec<FinishKind> = Vec::new();
        for i in 0..n {
            let mut deps = Vec::new();
            for p in 0..i {
                if rng.random_bool(0.3) {
                    let pol = ["cancel", "ignore", "cleanup"][rng.random_range(0..3)];
                    deps.push((p, pol));
                }
            }
            let o = match rng.random_range(0..10) {
                0..=5 => FinishKind::Completed,
                6..=8 => FinishKind::Failed,
                _ => FinishKind::Cancelled,
            };
            jobs.push(json!({"name": format!("s{i}"), "queue": "q", "kind": "k",
                "depends_on": deps.iter().map(|(p, pol)| json!({"name": format!("s{p}"), "on_failure": pol})).collect::<Vec<_>>()}));
            deps_of.push(deps);
            outcome.push(o);
        }
        let id = submit(
            &db,
            json!({"name": format!("random-{round}"), "jobs": jobs}),
        )
        .await;
        drive(&db, |s| outcome[s[1..].parse::<usize>().unwrap()]).await;

        // The oracle, in topological (index) order.
        let mut expect: Vec<&str> = Vec::new();
        for i in 0..n {
            let bad = |p: usize| matches!(expect[p], "failed" | "cancelled");
            let deps = &deps_of[i];
            let state = if deps.iter().any(|&(p, pol)| pol == "cancel" && bad(p)) {
                "cancelled"
            } else if deps.iter().any(|&(_, pol)| pol == "cleanup")
                && !deps.iter().any(|&(p, pol)| pol == "cleanup" && bad(p))
            {
                "skipped"
            } else {
                outcome[i].as_str()
            };
            expect.push(state);
        }
        let w = workflow(&db, id).await;
        for (i, want) in expect.iter().enumerate() {
            assert_eq!(
                states(&w)[&format!("s{i}")],
                *want,
                "round {round}, step s{i}, graph {deps_of:?}, outcomes {outcome:?}"
            );
        }
        let want = if expect.contains(&"failed") {
            "failed"
        } else if expect.contains(&"cancelled") {
            "cancelled"
        } else {
            "completed"
        };
        assert_eq!(w.summary.state, want, "round {round}");
    }
    assert_eq!(db.live_jobs().await, 0);
    db.assert_rows("workflow_steps WHERE state IN ('waiting', 'enqueued')", 0)
        .await;
}

#[tokio::test]
async fn retry_runs_the_failed_step_and_its_cancelled_dependents_again() {
    let (db, id) = submitted(diamond()).await;
    drive(&db, only_fails("c")).await;
    let w = workflow(&db, id).await;
    assert_eq!(states(&w)["d"], "cancelled");
    assert_eq!(w.summary.state, "failed");

    assert_eq!(workflows::retry(&db.pool, id).await.unwrap(), 1);
    let w = workflow(&db, id).await;
    assert_eq!(w.summary.state, "running");
    assert_eq!(states(&w)["d"], "waiting");
    completes_in_rounds(&db, id, &[&["c"], &["d"]]).await;

    // `jobs retry` of one step does the same.
    let id = submit(&db, diamond()).await;
    drive(&db, only_fails("b")).await;
    let b = workflow(&db, id).await.jobs[1].clone();
    assert_eq!(b.name, "b");
    due_work::retry(&db.pool, b.job_id).await.unwrap();
    completes_in_rounds(&db, id, &[&["b"], &["d"]]).await;
}

#[tokio::test]
async fn cancel_stops_waiting_and_running_steps_and_retry_resumes_it() {
    let (db, id) = submitted(json!({"name": "c", "jobs": [
        job("a", json!([])), job("b", json!([])), job("c", json!(["a", "b"])),
    ]}))
    .await;
    // a is running, b is available, c waits.
    let worker = Uuid::now_v7();
    let claimed = claim(&db.pool, 1, worker).await;
    assert_eq!(claimed.len(), 1);
    workflows::cancel(&db.pool, id).await.unwrap();
    let w = workflow(&db, id).await;
    let s = states(&w);
    let running = step_of(&claimed[0].payload);
    let other = if running == "a" { "b" } else { "a" };
    assert_eq!(s[other], "cancelled");
    assert_eq!(s["c"], "cancelled");
    assert_eq!(
        s[&running], "enqueued",
        "a running step ends when its worker stops it"
    );
    let flagged: bool = sqlx::query_scalar("SELECT cancel_requested FROM due_work WHERE id = $1")
        .bind(claimed[0].id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(flagged);
    // The worker reports the stop: the workflow is cancelled, nothing is available.
    let stopped = Finish {
        error: Some("cancelled".into()),
        ..outcome(claimed[0].id, claimed[0].attempt, FinishKind::Cancelled)
    };
    finish(&db.pool, worker, &[stopped]).await;
    assert_eq!(workflow_state(&db, id).await, "cancelled");
    assert_eq!(db.live_jobs().await, 0);
    // Appending to a cancelled workflow is refused.
    let err = workflows::append(&db.pool, id, &json!([job("late", json!([]))]), 4)
        .await
        .unwrap_err();
    assert!(matches!(err, db::Error::Conflict(_)), "{err}");

    // Retry: both roots run again, then c.
    assert_eq!(workflows::retry(&db.pool, id).await.unwrap(), 2);
    completes_in_rounds(&db, id, &[&["a", "b"], &["c"]]).await;
}

#[tokio::test]
async fn a_running_step_appends_a_fan_out_and_a_join() {
    let (db, id) = submitted(json!({"name": "dyn", "jobs": [job("split", json!([]))]})).await;
    let worker = Uuid::now_v7();
    let split = claim(&db.pool, 10, worker).await.remove(0);
    // While split runs, it adds five parts after itself and a join after them.
    let mut jobs: Vec<Value> = (0..5)
        .map(|i| job(&format!("part-{i}"), json!(["split"])))
        .collect();
    jobs.push(job(
        "join",
        json!((0..5).map(|i| format!("part-{i}")).collect::<Vec<_>>()),
    ));
    let refs = workflows::append(&db.pool, id, &Value::Array(jobs), 4)
        .await
        .unwrap();
    assert_eq!(refs.len(), 6);
    assert_eq!(db.live_jobs().await, 1);
    finish(
        &db.pool,
        worker,
        &[outcome(split.id, split.attempt, FinishKind::Completed)],
    )
    .await;
    let (rounds, payloads) = drive(&db, |_| FinishKind::Completed).await;
    assert_eq!(rounds.len(), 2);
    assert_eq!(rounds[0].len(), 5);
    assert_eq!(rounds[1], vec!["join"]);
    assert_eq!(
        payloads["join"]["_workflow"]["deps"]
            .as_object()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(workflow_state(&db, id).await, "completed");
    // A finished workflow takes no more steps.
    let err = workflows::append(&db.pool, id, &json!([job("late", json!([]))]), 4)
        .await
        .unwrap_err();
    assert!(matches!(err, db::Error::Conflict(_)), "{err}");
}

#[tokio::test]
async fn the_chord_shorthand_calls_back_with_every_outcome() {
    let (db, id) = submitted(
        json!({"name": "chord",
               "group": [{"queue": "q", "kind": "k"}, {"queue": "q", "kind": "k"}, {"queue": "q", "kind": "k"}],
               "callback": {"queue": "q", "kind": "k"}}),
    )
    .await;
    let (rounds, payloads) = drive(&db, only_fails("group-1")).await;
    assert_eq!(rounds[1], vec!["callback"]);
    let deps = &payloads["callback"]["_workflow"]["deps"];
    assert_eq!(deps["group-0"]["state"], "completed");
    assert_eq!(deps["group-1"]["state"], "failed");
    assert_eq!(deps["group-2"]["output"], json!({"from": "group-2"}));
    let w = workflow(&db, id).await;
    assert_eq!(states(&w)["callback"], "completed");
}

#[tokio::test]
async fn sql_submit_belongs_to_the_callers_transaction() {
    let db = TestDb::new().await;
    let mut tx = db.pool.begin().await.unwrap();
    workflows::submit_on(&mut tx, &diamond(), 4).await.unwrap();
    tx.rollback().await.unwrap();
    db.assert_rows("workflows", 0).await;
    assert_eq!(db.live_jobs().await, 0);

    let mut tx = db.pool.begin().await.unwrap();
    let id: Uuid = sqlx::query_scalar("SELECT ordinaut_enqueue_workflow($1)")
        .bind(diamond())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(workflow(&db, id).await.jobs.len(), 4);
}

/// The SQL error carries the field and the problem apart (COLUMN and DETAIL, migration
/// 0023): neither is cut out of the message.
#[tokio::test]
async fn a_bad_workflow_names_the_field_and_the_problem_apart() {
    let db = TestDb::new().await;
    let cases = [
        (
            json!({"name": "w", "jobs": [job("a", json!(["nope"]))]}),
            ("jobs[0].depends_on", "no step named nope in this workflow"),
        ),
        (
            json!({"name": "w", "jobs": [job("a", json!(["b"])), job("b", json!(["a"]))]}),
            ("depends_on", "a cycle runs through a, b"),
        ),
    ];
    for (spec, want) in cases {
        match workflows::submit(&db.pool, &spec, 4).await {
            Err(db::Error::Invalid { field, reason }) => {
                assert_eq!((field.as_str(), reason.as_str()), want, "{spec}")
            }
            other => panic!("{spec}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_workflows_are_refused_with_the_problem_named() {
    let db = TestDb::new().await;
    let cases = [
        (
            json!({"name": "w", "jobs": [job("a", json!(["b"])), job("b", json!(["a"]))]}),
            "a cycle runs through a, b",
        ),
        (
            json!({"name": "w", "jobs": [job("a", json!(["nope"]))]}),
            "no step named nope",
        ),
        (
            json!({"name": "w", "jobs": [job("a", json!([])), job("a", json!([]))]}),
            "already has a step named a",
        ),
        (
            json!({"name": "w", "jobs": [job("a", json!(["a"]))]}),
            "cannot depend on itself",
        ),
        (
            json!({"name": "w", "jobs": [{"name": "a", "queue": "q", "kind": "k", "unique_key": "x"}]}),
            "unknown field(s) unique_key",
        ),
        (
            json!({"name": "w", "jobs": [{"name": "a", "queue": "q", "kind": "k", "payload": [1]}]}),
            "must be a JSON object",
        ),
        (json!({"name": "w", "jobs": []}), "non-empty array"),
        (json!({"jobs": [job("a", json!([]))]}), "name: required"),
        (
            json!({"name": "w", "jobs": [{"name": "a", "queue": "q", "kind": "k", "on_failure": "maybe"}]}),
            "must be cancel, ignore or cleanup",
        ),
    ];
    for (spec, want) in cases {
        let err = workflows::submit(&db.pool, &spec, 4).await.unwrap_err();
        assert!(
            matches!(err, db::Error::Invalid { .. }) && err.to_string().contains(want),
            "{spec}: {err}"
        );
    }
    db.assert_rows("workflow_steps", 0).await;
}

#[tokio::test]
async fn rescue_and_keep_completed_false_settle_dependents_too() {
    let db = TestDb::new().await;
    db.exec("INSERT INTO queues (name, keep_completed) VALUES ('q', false)")
        .await;
    let id = submit(
        &db,
        json!({"name": "r", "jobs": [
            {"name": "a", "queue": "q", "kind": "k", "max_attempts": 1},
            job("b", json!(["a"])),
            job("ok", json!([])),
            job("after_ok", json!(["ok"])),
        ]}),
    )
    .await;
    let dead = Uuid::now_v7();
    let claimed = claim(&db.pool, 10, dead).await;
    let ok = claimed
        .iter()
        .find(|j| step_of(&j.payload) == "ok")
        .unwrap();
    let done = Finish {
        output: Some(json!(1)),
        ..outcome(ok.id, ok.attempt, FinishKind::Completed)
    };
    finish(&db.pool, dead, &[done]).await;
    // The worker dies with a; the rescue fails it (no attempts left).
    let rescued = due_work::rescue_many(
        &db.pool,
        &[dead],
        ordinaut::model::Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(10),
        },
        100,
    )
    .await
    .unwrap();
    assert_eq!(rescued.failed, 1);
    let (_, payloads) = drive(&db, |_| FinishKind::Completed).await;
    assert_eq!(
        payloads["after_ok"]["_workflow"]["deps"]["ok"]["output"],
        json!(1)
    );
    let s = states(&workflow(&db, id).await);
    assert_eq!(s["a"], "failed");
    assert_eq!(s["b"], "cancelled");
    assert_eq!(s["after_ok"], "completed");
}

#[tokio::test]
async fn plain_jobs_never_enter_the_workflow_tables() {
    let db = TestDb::new().await;
    let id: Uuid = sqlx::query_scalar("SELECT ordinaut_enqueue('q', 'k')")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    drive_plain(&db).await;
    let wf: Option<Uuid> = sqlx::query_scalar("SELECT workflow_id FROM job_history WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(wf.is_none());
    db.assert_rows("workflows", 0).await;
}

async fn drive_plain(db: &TestDb) {
    let worker = Uuid::now_v7();
    let claimed = claim(&db.pool, 10, worker).await;
    let batch: Vec<Finish> = claimed
        .iter()
        .map(|j| outcome(j.id, j.attempt, FinishKind::Completed))
        .collect();
    finish(&db.pool, worker, &batch).await;
}

#[tokio::test]
async fn retention_deletes_workflows_that_ended_before_the_keep_period_and_no_other() {
    let db = TestDb::new().await;
    let old = submit(&db, diamond()).await;
    let recent = submit(&db, diamond()).await;
    drive(&db, |_| FinishKind::Completed).await;
    // A workflow still running, submitted long ago: never pruned, whatever its age.
    let running = submit(&db, diamond()).await;
    sqlx::query("UPDATE workflows SET finished_at = now() - interval '31 days' WHERE id = $1")
        .bind(old)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE workflows SET created_at = now() - interval '90 days' WHERE id = $1")
        .bind(running)
        .execute(&db.pool)
        .await
        .unwrap();
    let report = schedules::retention_pass(&db.pool).await;
    assert_eq!(report.workflows_pruned, 1);
    let left = |sql: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>(sql)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    let mut want = vec![recent, running];
    want.sort();
    assert_eq!(left("SELECT id FROM workflows ORDER BY 1").await, want);
    assert_eq!(
        left("SELECT DISTINCT workflow_id FROM workflow_steps ORDER BY 1").await,
        want
    );
    assert_eq!(
        left("SELECT DISTINCT workflow_id FROM workflow_edges ORDER BY 1").await,
        want
    );
    assert!(matches!(
        workflows::get(&db.pool, old).await,
        Err(db::Error::NotFound { .. })
    ));
}

/// Cancelling a waiting step while its last dependency finishes on another connection:
/// whichever commits first, the step ends cancelled exactly once (without running, or
/// its freshly activated job cancelled), nothing of it stays live, and the workflow ends.
#[tokio::test]
async fn cancelling_a_waiting_step_races_its_activation_and_always_ends_it_once() {
    let db = TestDb::new().await;
    for round in 0..30 {
        let id = submit(
            &db,
            json!({"name": format!("race-{round}"), "jobs": [job("a", json!([])), job("b", json!(["a"]))]}),
        )
        .await;
        let b = workflow(&db, id).await.jobs[1].job_id;
        let worker = Uuid::now_v7();
        let claimed = claim(&db.pool, 1, worker).await;
        let done = outcome(claimed[0].id, claimed[0].attempt, FinishKind::Completed);
        let pool = db.pool.clone();
        let finishing = tokio::spawn(async move { finish(&pool, worker, &[done]).await });
        let cancelled = due_work::cancel(&db.pool, b).await.expect("cancels");
        finishing.await.unwrap();
        assert_eq!(
            cancelled,
            due_work::CancelResult::Cancelled,
            "round {round}"
        );
        let w = workflow(&db, id).await;
        assert_eq!(states(&w)["b"], "cancelled", "round {round}");
        assert_eq!(w.summary.state, "cancelled", "round {round}");
        let live = db.count(&format!("due_work WHERE id = '{b}'")).await;
        assert_eq!(live, 0, "round {round}");
        let ran: bool = sqlx::query_scalar("SELECT ran FROM workflow_steps WHERE job_id = $1")
            .bind(b)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        let cancelled = format!("job_history WHERE id = '{b}' AND state = 'cancelled'");
        let history = db.count(&cancelled).await;
        // Cancelled while waiting (no job row) or after activation (one history row).
        assert_eq!(history, i64::from(ran), "round {round}");
    }
}

/// The README's worked example (the scan), read from README.md and submitted as written
/// (its queues mapped onto the test's): with every tool passing, the report merges the
/// three outputs, the notification runs and the cleanup is skipped; with a tool failing,
/// the report still runs and sees the failure, and the cleanup runs.
#[tokio::test]
async fn the_readmes_scan_example_runs_as_the_readme_says() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = &readme[readme
        .find("### Chain, fan out, join: workflows")
        .expect("the workflows section")..];
    let start = section.find("```json\n").expect("its JSON example") + "```json\n".len();
    let end = start + section[start..].find("```").expect("the example's end");
    let mut spec: Value = serde_json::from_str(&section[start..end]).expect("valid JSON");
    for j in spec["jobs"].as_array_mut().unwrap() {
        j["queue"] = json!("q");
    }
    let names: Vec<String> = spec["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "clone", "semgrep", "trivy", "gitleaks", "report", "notify", "cleanup"
        ]
    );

    let (db, id) = submitted(spec.clone()).await;
    let (rounds, payloads) = drive(&db, |_| FinishKind::Completed).await;
    assert_eq!(
        rounds,
        vec![
            vec!["clone"],
            vec!["gitleaks", "semgrep", "trivy"],
            vec!["report"],
            vec!["notify"]
        ]
    );
    let deps = &payloads["report"]["_workflow"]["deps"];
    for tool in ["semgrep", "trivy", "gitleaks"] {
        assert_eq!(deps[tool]["output"], json!({ "from": tool }));
    }
    let w = workflow(&db, id).await;
    assert_eq!(states(&w)["cleanup"], "skipped");
    assert_eq!(w.summary.state, "completed");

    let (db, id) = submitted(spec).await;
    let (rounds, payloads) = drive(&db, only_fails("trivy")).await;
    assert_eq!(rounds[2], vec!["report"]);
    assert_eq!(rounds[3], vec!["cleanup", "notify"]);
    assert_eq!(
        payloads["report"]["_workflow"]["deps"]["trivy"]["state"],
        "failed"
    );
    let w = workflow(&db, id).await;
    assert_eq!(states(&w)["cleanup"], "completed");
    assert_eq!(w.summary.state, "failed");
}

/// The job list reads waiting steps only when the filter can match them, and then
/// through the running workflows' partial index and each one's steps by primary key,
/// never by scanning every step kept.
#[tokio::test]
async fn the_job_list_reaches_waiting_steps_through_the_running_workflows_only() {
    use ordinaut::db::history::{JobFilter, JobMatch, explain_list_jobs};
    let db = TestDb::new().await;
    submit(&db, diamond()).await;
    let filter = |state: Option<&str>| JobFilter {
        matching: JobMatch {
            state: state.map(str::to_owned),
            ..Default::default()
        },
        limit: 50,
        ..Default::default()
    };
    for state in [None, Some("waiting")] {
        let plan = explain_list_jobs(&db.pool, &filter(state)).await.unwrap();
        assert!(plan.contains("workflows_running_idx"), "{state:?}: {plan}");
        assert!(plan.contains("workflow_steps_pkey"), "{state:?}: {plan}");
        assert!(
            !plan.contains("Seq Scan on workflow_steps"),
            "{state:?}: {plan}"
        );
    }
    for state in ["available", "failed", "completed"] {
        let plan = explain_list_jobs(&db.pool, &filter(Some(state)))
            .await
            .unwrap();
        assert!(!plan.contains("workflow"), "{state}: {plan}");
    }
}
