//! The worker in-process against what jobs can throw at it: binary output, values
//! Postgres refuses, panics, absurd delays, endless snoozes, re-claims of its own
//! rescued jobs, claim errors, cancels racing outcomes, and limited queues beside a
//! backlog. Nothing a job produces may wedge the others.

use crate::common::jobs::wait_for_count;
use crate::common::jobs::{Finished, finished, live};
use ordinaut::model::JobState;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ordinaut::config::KindConfig;
use ordinaut::db::due_work::{self, NewJob};
use ordinaut::model::{Backoff, Outcome};
use ordinaut::worker::{Handlers, JobContext};
use serde_json::json;

use crate::common::{TestDb, eventually};
use crate::worker::{command, enqueue, handlers_from, options, start, wait_finished};

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    db.scalar_i64(sql).await
}

/// Waits for each of `ids` to end, and asserts that it completed.
async fn all_completed(db: &TestDb, ids: Vec<uuid::Uuid>) {
    for id in ids {
        assert_eq!(wait_finished(db, id).await.state, JobState::Completed);
    }
}

/// What a handler that did its work returns.
fn succeeded() -> Outcome {
    Outcome::Succeeded {
        output: None,
        log: None,
    }
}

/// What a handler asking to run again after `after` returns.
fn snoozed(after: Duration, reason: &str) -> Outcome {
    Outcome::Snoozed {
        after,
        reason: reason.to_owned(),
        log: None,
    }
}

#[tokio::test]
async fn command_printing_nul_bytes_does_not_wedge_later_jobs() {
    let db = TestDb::new().await;
    let handlers = handlers_from(&[
        ("nul", command("sh", &["-c", "printf 'a\\0b'"], None)),
        ("nap", KindConfig::Noop(Default::default())),
    ]);
    let w = start(&db, handlers, options());
    let mut nul = Vec::new();
    for _ in 0..2 {
        nul.push(enqueue(&db, NewJob::new("q", "nul", json!({}))).await);
    }
    for id in &nul {
        assert_eq!(wait_finished(&db, *id).await.state, JobState::Completed);
    }
    let mut later = Vec::new();
    for _ in 0..5 {
        later.push(enqueue(&db, NewJob::new("q", "nap", json!({}))).await);
    }
    all_completed(&db, later).await;
    w.shutdown().await;
    let log: String = sqlx::query_scalar("SELECT log FROM job_history WHERE id = $1")
        .bind(nul[0])
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(log.contains("a\u{FFFD}b"), "{log:?}");
}

#[tokio::test]
async fn rust_handler_output_with_nul_and_a_number_beyond_numeric_is_stored() {
    let db = TestDb::new().await;
    let mut handlers = Handlers::default();
    handlers.register("weird", |_ctx| async {
        let output: serde_json::Value =
            serde_json::from_str(r#"{"s": "a\u0000b", "n": 1e999999, "ok": 7}"#)
                .expect("valid JSON");
        Outcome::Succeeded {
            output: Some(output),
            log: Some("x\0y".to_owned()),
        }
    });
    handlers.register("plain", |_ctx| async { succeeded() });
    let w = start(&db, handlers, options());
    let weird = enqueue(&db, NewJob::new("q", "weird", json!({}))).await;
    let plain = enqueue(&db, NewJob::new("q", "plain", json!({}))).await;
    assert_eq!(wait_finished(&db, weird).await.state, JobState::Completed);
    assert_eq!(wait_finished(&db, plain).await.state, JobState::Completed);
    w.shutdown().await;
    let (output, log): (serde_json::Value, String) =
        sqlx::query_as("SELECT output, log FROM job_history WHERE id = $1")
            .bind(weird)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(output["s"], "a\u{FFFD}b");
    assert_eq!(output["ok"], 7);
    assert!(
        output["n"].as_str().is_some_and(|n| n.contains("999999")),
        "{output}"
    );
    assert_eq!(log, "x\u{FFFD}y");
}

#[tokio::test]
async fn panicking_handler_fails_its_attempt_and_frees_its_slot() {
    let db = TestDb::new().await;
    let mut handlers = Handlers::default();
    handlers.register("boom", |ctx: JobContext| async move {
        panic!("kaboom on attempt {}", ctx.job.attempt)
    });
    handlers.register(
        "boom_at_once",
        |_ctx: JobContext| -> std::future::Ready<Outcome> { panic!("no future built") },
    );
    handlers.register("ok", |_ctx| async { succeeded() });
    let mut o = options();
    o.concurrency = 1;
    let w = start(&db, handlers, o);
    let mut boom = NewJob::new("q", "boom", json!({}));
    boom.max_attempts = Some(2);
    let boom = enqueue(&db, boom).await;
    let mut at_once = NewJob::new("q", "boom_at_once", json!({}));
    at_once.max_attempts = Some(1);
    let at_once = enqueue(&db, at_once).await;
    let mut oks = Vec::new();
    for _ in 0..3 {
        oks.push(enqueue(&db, NewJob::new("q", "ok", json!({}))).await);
    }
    let Finished {
        state,
        last_error: error,
        ..
    } = wait_finished(&db, boom).await;
    assert_eq!(state, JobState::Failed);
    assert_eq!(
        error.as_deref(),
        Some("handler panicked: kaboom on attempt 2")
    );
    let Finished {
        state,
        last_error: error,
        ..
    } = wait_finished(&db, at_once).await;
    assert_eq!(state, JobState::Failed);
    assert_eq!(error.as_deref(), Some("handler panicked: no future built"));
    for id in oks {
        assert_eq!(
            wait_finished(&db, id).await.state,
            JobState::Completed,
            "slot freed"
        );
    }
    w.shutdown().await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM all_attempts WHERE outcome = 'retry' AND error = 'handler panicked: kaboom on attempt 1'").await,
        1,
        "a panic is a failed attempt, retried while attempts remain"
    );
}

#[tokio::test]
async fn huge_snooze_delay_is_clamped_not_a_panic() {
    let db = TestDb::new().await;
    let mut handlers = Handlers::default();
    handlers.register("forever", |_ctx| async {
        snoozed(Duration::MAX, "come back never")
    });
    let recorded = "SELECT count(*) FROM all_attempts WHERE outcome = 'snoozed'";
    frees_its_slot_and_waits_a_year(&db, handlers, "forever", recorded).await;
}

/// With one slot, a job of `kind` (whose handler asks for an absurd delay) is followed
/// by one that succeeds, so the slot was freed; once `recorded` counts the absurd
/// outcome once, the first job waits a year (clamped), not forever or a panic.
async fn frees_its_slot_and_waits_a_year(
    db: &TestDb,
    mut handlers: Handlers,
    kind: &str,
    recorded: &'static str,
) {
    handlers.register("ok", |_ctx| async { succeeded() });
    let mut o = options();
    o.concurrency = 1;
    let w = start(db, handlers, o);
    let absurd = enqueue(db, NewJob::new("q", kind, json!({}))).await;
    let ok = enqueue(db, NewJob::new("q", "ok", json!({}))).await;
    assert_eq!(
        wait_finished(db, ok).await.state,
        JobState::Completed,
        "slot freed"
    );
    wait_for_count(&db.pool, recorded, 1, Duration::from_secs(20)).await;
    w.shutdown().await;
    let days = live(&db.pool, absurd).await.run_in / 86400.0;
    let a_year = 364.0..=365.5;
    assert!(a_year.contains(&days), "clamped to a year: {days} days");
}

#[tokio::test]
async fn snooze_shorter_than_the_floor_waits_the_floor() {
    let db = TestDb::new().await;
    let mut o = options();
    o.snooze_min = Duration::from_secs(60);
    let mut handlers = Handlers::default();
    handlers.register("again", |_ctx| async {
        snoozed(Duration::ZERO, "Retry-After: 0")
    });
    let w = start(&db, handlers, o);
    let id = enqueue(&db, NewJob::new("q", "again", json!({}))).await;
    db.wait_rows(
        "all_attempts WHERE outcome = 'snoozed'",
        1,
        Duration::from_secs(20),
    )
    .await;
    w.shutdown().await;
    let wait = live(&db.pool, id).await.run_in;
    assert!(wait > 50.0, "snoozed for the floor, not 0 s: {wait}");
}

#[tokio::test]
async fn snoozes_past_the_budget_count_as_attempts_then_fail() {
    let db = TestDb::new().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let mut handlers = Handlers::default();
    handlers.register("busy", move |_ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { snoozed(Duration::ZERO, "HTTP 503 with Retry-After") }
    });
    let mut o = options();
    o.snooze_min = Duration::from_millis(10);
    o.max_snoozes = 3;
    let w = start(&db, handlers, o);
    let mut job = NewJob::new("q", "busy", json!({}));
    job.max_attempts = Some(2);
    let id = enqueue(&db, job).await;
    let done = wait_finished(&db, id).await;
    w.shutdown().await;
    let (state, error) = (done.state, done.last_error);
    assert_eq!(state, JobState::Failed);
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.starts_with("snooze budget of 3 spent and no attempts left")),
        "{error:?}"
    );
    let by_end = format!(
        "SELECT attempt, outcome FROM all_attempts WHERE job_id = '{id}' ORDER BY finished_at"
    );
    let outcomes: Vec<(i32, String)> = db.rows(&by_end).await;
    let want: Vec<(i32, String)> = [
        (1, "snoozed"),
        (1, "snoozed"),
        (1, "snoozed"),
        (1, "retry"),
        (2, "failed"),
    ]
    .iter()
    .map(|(a, o)| (*a, (*o).to_owned()))
    .collect();
    assert_eq!(outcomes, want);
    assert_eq!(runs.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn worker_that_reclaims_its_own_rescued_job_never_runs_it_twice_at_once() {
    let db = TestDb::new().await;
    let live = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (l, m) = (live.clone(), most.clone());
    let mut handlers = Handlers::default();
    handlers.register("long", move |ctx: JobContext| {
        let (live, most) = (l.clone(), m.clone());
        async move {
            let now = live.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            if ctx.job.attempt == 1 {
                // Runs until stopped (its lease is lost), or for a long while.
                tokio::select! {
                    _ = ctx.stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
                live.fetch_sub(1, Ordering::SeqCst);
                return Outcome::Retry {
                    error: "attempt 1 stopped".to_owned(),
                    log: None,
                };
            }
            live.fetch_sub(1, Ordering::SeqCst);
            Outcome::Succeeded {
                output: Some(json!({"attempt": ctx.job.attempt})),
                log: None,
            }
        }
    });
    let w = start(&db, handlers, options());
    let id = enqueue(&db, NewJob::new("q", "long", json!({}))).await;
    eventually(Duration::from_secs(10), "attempt 1 to run", || async {
        (live.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    // The lease runs out (as when the lock connection hangs) and the real rescuer
    // hands the job back; this same worker is the only one to claim it again.
    let quick = Backoff {
        base: Duration::from_millis(1),
        max: Duration::from_millis(1),
    };
    eventually(
        Duration::from_secs(10),
        "the rescuer to take the job",
        || async {
            let expired = "UPDATE due_work SET lease_expires_at = now() - interval '1 second'";
            db.exec(&format!("{expired} WHERE id = '{id}'")).await;
            let r = due_work::rescue_many(&db.pool, &[], quick, 10)
                .await
                .unwrap();
            (r.retried == 1).then_some(())
        },
    )
    .await;
    let Finished { state, .. } = wait_finished(&db, id).await;
    w.shutdown().await;
    assert_eq!(state, JobState::Completed);
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "never two executions at once"
    );
    let done = finished(&db.pool, id).await.expect("ended");
    assert_eq!(
        (done.attempt, done.output),
        (2, Some(json!({"attempt": 2})))
    );
    let attempts: Vec<(i32, String)> = sqlx::query_as(
        "SELECT attempt, outcome FROM all_attempts WHERE job_id = $1 ORDER BY attempt",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        attempts,
        vec![(1, "lost".to_owned()), (2, "completed".to_owned())],
        "the stale attempt's outcome was refused"
    );
}

#[tokio::test]
async fn jobs_claimed_before_a_failing_claim_statement_still_run() {
    let db = TestDb::new().await;
    db.exec("INSERT INTO queues (name, concurrency_limit) VALUES ('lim', 10)")
        .await;
    // Every claim of the unlimited queue `boom` fails inside Postgres, after the
    // limited queue's claim of the same round has committed.
    sqlx::raw_sql(
        "CREATE FUNCTION test_refuse_claim() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'claim refused for the test'; END $$;
         CREATE TRIGGER test_refuse_claim BEFORE UPDATE ON due_work FOR EACH ROW
         WHEN (NEW.queue = 'boom' AND NEW.state = 'running') EXECUTE FUNCTION test_refuse_claim();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let handlers = handlers_from(&[("nap", KindConfig::Noop(Default::default()))]);
    let mut o = options();
    o.queues = vec!["lim".into(), "boom".into()];
    let w = start(&db, handlers, o);
    enqueue(&db, NewJob::new("boom", "nap", json!({}))).await;
    let mut limited = Vec::new();
    for _ in 0..3 {
        limited.push(enqueue(&db, NewJob::new("lim", "nap", json!({}))).await);
    }
    all_completed(&db, limited).await;
    w.shutdown().await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM all_attempts WHERE outcome = 'lost'"
        )
        .await,
        0,
        "nothing waited for its lease to expire"
    );
}

#[tokio::test]
async fn cancel_landing_as_the_handler_returns_retry_ends_cancelled_and_never_reruns() {
    let db = TestDb::new().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let pool = db.pool.clone();
    let mut handlers = Handlers::default();
    handlers.register("flaky", move |ctx: JobContext| {
        let (counter, pool) = (counter.clone(), pool.clone());
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            // The operator's cancel commits just as the attempt fails: the outcome
            // wins the race against the cancel notification.
            let r = due_work::cancel(&pool, ctx.job.id).await;
            assert!(matches!(r, Ok(due_work::CancelResult::Requested)), "{r:?}");
            Outcome::Retry {
                error: "flaky".to_owned(),
                log: None,
            }
        }
    });
    let w = start(&db, handlers, options());
    let mut job = NewJob::new("q", "flaky", json!({}));
    job.max_attempts = Some(3);
    let id = enqueue(&db, job).await;
    let Finished {
        state,
        last_error: error,
        ..
    } = wait_finished(&db, id).await;
    w.shutdown().await;
    assert_eq!(state, JobState::Cancelled, "{error:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "not run again");
    assert_eq!(count(&db, "SELECT count(*) FROM due_work").await, 0);
}

#[tokio::test]
async fn limited_queue_progresses_beside_an_unlimited_backlog() {
    let db = TestDb::new().await;
    db.exec("INSERT INTO queues (name, concurrency_limit) VALUES ('lim', 5)")
        .await;
    let handlers = handlers_from(&[("nap", KindConfig::Noop(Default::default()))]);
    let backlog: Vec<NewJob> = (0..300)
        .map(|_| NewJob::new("default", "nap", json!({"sleep_ms": 50})))
        .collect();
    due_work::enqueue_many(&db.pool, &backlog, 4).await.unwrap();
    let limited = enqueue(&db, NewJob::new("lim", "nap", json!({}))).await;
    let mut o = options();
    o.queues = vec!["default".into(), "lim".into()];
    o.concurrency = 2;
    let w = start(&db, handlers, o);
    assert_eq!(wait_finished(&db, limited).await.state, JobState::Completed);
    let left = count(&db, "SELECT count(*) FROM due_work WHERE queue = 'default'").await;
    w.shutdown().await;
    assert!(
        left > 0,
        "the limited job ran while the unlimited backlog was still there"
    );
}

#[tokio::test]
async fn retry_delay_beyond_the_clock_is_clamped_not_a_panic() {
    let db = TestDb::new().await;
    // A queue backoff of millions of years (the column allows any positive bigint).
    db.exec("INSERT INTO queues (name, backoff_base_ms, backoff_max_ms) VALUES ('q', 4611686018427387903, 4611686018427387903)").await;
    let mut handlers = Handlers::default();
    handlers.register("flaky", |_ctx| async {
        Outcome::Retry {
            error: "try again".to_owned(),
            log: None,
        }
    });
    let recorded = "SELECT count(*) FROM all_attempts WHERE outcome = 'retry'";
    frees_its_slot_and_waits_a_year(&db, handlers, "flaky", recorded).await;
}
