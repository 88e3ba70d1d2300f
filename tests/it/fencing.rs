//! Fencing and poison-proof completion at the store and pull-API level: every outcome
//! is accepted only for the attempt it belongs to, a batch Postgres refuses is split,
//! and a cancel is never lost.

use std::time::Duration;

use ordinaut::db::due_work::{self, CancelResult, Finish, FinishKind, NewJob};
use ordinaut::model::Backoff;
use serde_json::json;
use uuid::Uuid;

use crate::api::App;
use crate::common::jobs::live;
use crate::common::{TestDb, eventually};

const LEASE: Duration = Duration::from_secs(60);

fn quick() -> Backoff {
    Backoff {
        base: Duration::from_millis(1),
        max: Duration::from_millis(1),
    }
}

fn outcome(id: Uuid, attempt: i32, kind: FinishKind) -> Finish {
    Finish {
        id,
        attempt,
        outcome: kind,
        next_run_at: None,
        error: Some(format!("attempt {attempt}")),
        output: None,
        log: None,
    }
}

async fn enqueue(pool: &sqlx::PgPool, n: usize) -> Vec<Uuid> {
    let jobs: Vec<NewJob> = (0..n).map(|_| NewJob::new("q", "k", json!({}))).collect();
    due_work::enqueue_many(pool, &jobs, 4)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect()
}

/// Lets every running lease run out and runs the real rescuer over them.
async fn expire_and_rescue(pool: &sqlx::PgPool) {
    sqlx::query("UPDATE due_work SET lease_expires_at = now() - interval '1 second' WHERE state = 'running'")
        .execute(pool)
        .await
        .expect("expire leases");
    let r = due_work::rescue_many(pool, &[], quick(), 100)
        .await
        .expect("rescue");
    assert!(r.retried > 0, "the rescuer handed the job back");
}

/// Claims `id` again for `worker` once the rescue's backoff has passed.
async fn reclaim(pool: &sqlx::PgPool, worker: Uuid) -> i32 {
    eventually(
        Duration::from_secs(10),
        "the job to be claimable again",
        || async {
            due_work::claim_due(pool, &["q".into()], 1, worker, LEASE)
                .await
                .expect("claim")
                .first()
                .map(|j| j.attempt)
        },
    )
    .await
}

#[tokio::test]
async fn finish_and_extend_for_a_stale_attempt_are_no_ops() {
    let db = TestDb::new().await;
    let id = enqueue(&db.pool, 1).await[0];
    let w = Uuid::now_v7();
    due_work::claim_due(&db.pool, &["q".into()], 1, w, LEASE)
        .await
        .unwrap();
    expire_and_rescue(&db.pool).await;
    // The same worker claims its own rescued job again: attempt 2, same owner.
    assert_eq!(reclaim(&db.pool, w).await, 2);

    let mut conn = db.pool.acquire().await.unwrap();
    let stale = due_work::extend_leases(&mut conn, w, &[(id, 1)], LEASE)
        .await
        .unwrap();
    assert!(stale.is_empty(), "attempt 1's lease is gone");
    let current = due_work::extend_leases(&mut conn, w, &[(id, 2)], LEASE)
        .await
        .unwrap();
    assert_eq!(current.len(), 1);
    drop(conn);

    let applied = due_work::finish_many(&db.pool, w, 100, &[outcome(id, 1, FinishKind::Completed)])
        .await
        .unwrap();
    assert!(applied.is_empty(), "attempt 1's outcome is refused");
    let job = live(&db.pool, id).await;
    let now = (job.state.as_str(), job.attempt, job.lease_owner);
    assert_eq!(now, ("running", 2, Some(w)));
    assert_eq!(db.ended_jobs().await, 0);
    assert_eq!(
        db.count("job_attempts WHERE outcome <> 'lost'").await,
        0,
        "no attempt record for the refused outcome"
    );

    let applied = due_work::finish_many(&db.pool, w, 100, &[outcome(id, 2, FinishKind::Completed)])
        .await
        .unwrap();
    assert_eq!(applied.len(), 1);
    db.assert_rows("job_history WHERE state = 'completed' AND attempt = 2", 1)
        .await;
}

#[tokio::test]
async fn batch_with_an_outcome_postgres_refuses_is_split_and_the_rest_recorded() {
    let db = TestDb::new().await;
    let ids = enqueue(&db.pool, 5).await;
    let w = Uuid::now_v7();
    assert_eq!(
        due_work::claim_due(&db.pool, &["q".into()], 5, w, LEASE)
            .await
            .unwrap()
            .len(),
        5
    );
    // Not sanitized on purpose: finish_many is driven directly, and Postgres refuses a
    // NUL in text (22021) and an out-of-range number in jsonb (22003).
    let mut batch: Vec<Finish> = ids
        .iter()
        .map(|id| outcome(*id, 1, FinishKind::Completed))
        .collect();
    batch[1].log = Some("a\0b".into());
    batch[3].output = Some(serde_json::from_str(r#"{"n": 1e999999}"#).unwrap());
    let applied = due_work::finish_many(&db.pool, w, 100, &batch)
        .await
        .expect("a data error is isolated, not returned");
    assert_eq!(applied.len(), 5, "every outcome recorded");
    for (i, id) in ids.iter().enumerate() {
        let got = applied.iter().find(|a| a.id == *id).expect("applied");
        let want = if i == 1 || i == 3 {
            FinishKind::Failed
        } else {
            FinishKind::Completed
        };
        assert_eq!(got.outcome, want, "job {i}");
    }
    assert_eq!(db.ended_in("completed").await, 3);
    db.assert_rows("job_history WHERE state = 'failed' AND last_error LIKE 'the attempt''s completed outcome could not be stored: %'", 2).await;
    assert_eq!(db.live_jobs().await, 0);
}

#[tokio::test]
async fn a_requested_cancel_wins_over_retry_snooze_and_shutdown_outcomes() {
    let db = TestDb::new().await;
    let ids = enqueue(&db.pool, 3).await;
    let w = Uuid::now_v7();
    due_work::claim_due(&db.pool, &["q".into()], 3, w, LEASE)
        .await
        .unwrap();
    for id in &ids {
        assert_eq!(
            due_work::cancel(&db.pool, *id).await.unwrap(),
            CancelResult::Requested
        );
    }
    // The attempts end before the cancel reaches them.
    let later = Some(chrono::Utc::now() + chrono::Duration::seconds(1));
    let mut batch = vec![
        outcome(ids[0], 1, FinishKind::Retry),
        outcome(ids[1], 1, FinishKind::Snoozed),
        outcome(ids[2], 1, FinishKind::Interrupted),
    ];
    batch[0].next_run_at = later;
    batch[1].next_run_at = later;
    let applied = due_work::finish_many(&db.pool, w, 100, &batch)
        .await
        .unwrap();
    assert_eq!(applied.len(), 3);
    assert!(applied.iter().all(|a| a.outcome == FinishKind::Cancelled));
    assert_eq!(db.live_jobs().await, 0, "none runs again");
    assert_eq!(db.ended_in("cancelled").await, 3);
    db.assert_rows("job_attempts WHERE outcome = 'cancelled' AND error LIKE 'cancelled by operator (the attempt ended as %'", 3).await;
}

#[tokio::test]
async fn cancel_racing_a_rescue_cancels_instead_of_answering_not_found() {
    let db = TestDb::new().await;
    let id = enqueue(&db.pool, 1).await[0];
    due_work::claim_due(&db.pool, &["q".into()], 1, Uuid::now_v7(), LEASE)
        .await
        .unwrap();
    // The rescuer's transition (running -> scheduled), caught mid-transaction.
    let mut rescue = db.pool.begin().await.unwrap();
    sqlx::query(
        "UPDATE due_work SET state = 'scheduled', lease_owner = NULL, lease_expires_at = NULL,
                run_at = now() + interval '1 minute' WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *rescue)
    .await
    .unwrap();
    let pool = db.pool.clone();
    let cancel = tokio::spawn(async move { due_work::cancel(&pool, id).await });
    eventually(
        Duration::from_secs(10),
        "the cancel to wait for the row",
        || async { (db.count("pg_locks WHERE NOT granted").await > 0).then_some(()) },
    )
    .await;
    rescue.commit().await.unwrap();
    let result = cancel.await.unwrap();
    assert!(
        matches!(result, Ok(CancelResult::Cancelled)),
        "a live job is cancelled, never 404: {result:?}"
    );
    assert_eq!(db.ended_in("cancelled").await, 1);
}

#[tokio::test]
async fn pull_outcome_for_a_rescued_attempt_is_refused_and_the_new_attempt_wins() {
    let app = App::new().await;
    let three_attempts = json!({"queue": "q", "kind": "k", "max_attempts": 3});
    let id = app.enqueue(three_attempts).await.id();
    let owner = Uuid::now_v7();
    async fn claim(app: &App, owner: Uuid) -> crate::api::Reply {
        app.claim(json!({"queues": ["q"], "lease_owner": owner, "lease_seconds": 2}))
            .await
    }
    let first = claim(&app, owner).await;
    assert_eq!(first.body["jobs"][0]["attempt"], 1, "{}", first.text);
    // Thread A's lease runs out; the rescuer hands the job back; thread B of the same
    // client (same lease_owner) claims it again.
    expire_and_rescue(&app.db.pool).await;
    let second = eventually(
        Duration::from_secs(10),
        "the job to be claimed again",
        || async {
            let c = claim(&app, owner).await;
            (c.body["jobs"].as_array().is_some_and(|j| !j.is_empty())).then_some(c)
        },
    )
    .await;
    assert_eq!(second.body["jobs"][0]["attempt"], 2);

    let hb = app
        .post(
            "/v1/pull/heartbeat",
            json!({"lease_owner": owner, "jobs": [{"id": id, "attempt": 1}]}),
        )
        .await;
    assert_eq!(hb.body["lost"], json!([id]), "{}", hb.text);
    let from_1 = json!({"lease_owner": owner, "attempt": 1, "output": {"from": 1}});
    let stale = app.report(&id, "complete", from_1).await;
    assert_eq!(stale.status, 409, "{}", stale.text);
    assert_eq!(stale.body["error"]["code"], "stale_attempt");
    let stale_fail = app
        .report(
            &id,
            "fail",
            json!({"lease_owner": owner, "attempt": 1, "error": "from 1"}),
        )
        .await;
    assert_eq!(stale_fail.status, 409, "{}", stale_fail.text);
    assert_eq!(
        app.get(&format!("/v1/jobs/{id}")).await.body["state"],
        "running",
        "attempt 2 is untouched"
    );

    let from_2 = json!({"lease_owner": owner, "attempt": 2, "output": {"from": 2}});
    let done = app.report(&id, "complete", from_2).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let job = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(job.body["state"], "completed");
    assert_eq!(job.body["output"], json!({"from": 2}));
    assert_eq!(job.body["attempt"], 2);
}

#[tokio::test]
async fn pull_output_beyond_numeric_range_is_stored_not_a_500() {
    let app = App::new().await;
    app.enqueue(json!({"queue": "q", "kind": "k"})).await;
    let claim = app.claim(json!({"queues": ["q"]})).await;
    let owner = claim.body["lease_owner"].as_str().unwrap().to_owned();
    let id = claim.body["jobs"][0]["id"].as_str().unwrap().to_owned();
    let body: serde_json::Value = serde_json::from_str(&format!(
        r#"{{"lease_owner": "{owner}", "attempt": 1, "output": {{"n": 1e999999}}, "log": "a\u0000b"}}"#
    ))
    .unwrap();
    let done = app.report(&id, "complete", body).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let job = app.get(&format!("/v1/jobs/{id}")).await;
    let n = &job.body["output"]["n"];
    assert!(
        n.as_str().is_some_and(|s| s.contains("999999")),
        "the number is kept as its text: {n}"
    );
}
