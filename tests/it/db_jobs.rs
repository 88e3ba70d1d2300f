//! Store-level lifecycle: enqueue, claim, finish, rescue, cancel, retry.

use std::time::Duration;

use ordinaut::db::due_work::{self, Finish, FinishKind, NewJob, Rescued};
use ordinaut::model::{Backoff, JobState};
use serde_json::json;
use uuid::Uuid;

use crate::common::TestDb;
use crate::common::jobs::{
    LEASE, claim, completed, finish, finished, jobs, live, only_attempt, outcome,
};

fn backoff() -> Backoff {
    Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
    }
}

/// Enqueues `n` jobs on queue `q` and claims them all: their ids and the worker
/// holding them.
async fn claimed_jobs(db: &TestDb, n: usize) -> (Vec<Uuid>, Uuid) {
    let ids = jobs("q", "k").enqueue_n(&db.pool, n).await;
    let worker = Uuid::now_v7();
    assert_eq!(claim(&db.pool, n, worker).await.len(), n);
    (ids, worker)
}

/// Enqueues one job on queue `q` and claims it: its id and the worker holding it.
async fn claimed_job(db: &TestDb) -> (Uuid, Uuid) {
    let (ids, worker) = claimed_jobs(db, 1).await;
    (ids[0], worker)
}

/// Ends every live lease now, as time passing would.
async fn expire_leases(db: &TestDb) {
    db.exec("UPDATE due_work SET lease_expires_at = now() - interval '1 second'")
        .await;
}

/// Rescues the jobs of expired leases and of the `dead` workers, with [`backoff`].
async fn rescue(db: &TestDb, dead: &[Uuid]) -> Rescued {
    due_work::rescue_many(&db.pool, dead, backoff(), 100)
        .await
        .expect("rescue")
}

async fn enqueue(db: &TestDb, jobs: Vec<NewJob>) -> Vec<Uuid> {
    due_work::enqueue_many(&db.pool, &jobs, 4)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect()
}

#[tokio::test]
async fn completed_job_moves_to_history_with_its_attempt() {
    let db = TestDb::new().await;
    let ids = enqueue(&db, vec![NewJob::new("q", "k", json!({"n": 1}))]).await;
    let worker = Uuid::now_v7();
    let claimed = claim(&db.pool, 10, worker).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempt, 1);
    let applied = finish(&db.pool, worker, &[completed(ids[0])]).await;
    assert_eq!(applied.iter().map(|a| a.id).collect::<Vec<_>>(), ids);
    assert_eq!(db.live_jobs().await, 0);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM job_history WHERE state = 'completed' AND output = '{\"ok\": true}'").await, 1);
    let a = only_attempt(&db.pool, ids[0]).await;
    assert_eq!((a.attempt, a.outcome.as_str()), (1, "completed"));
}

#[tokio::test]
async fn batch_enqueue_is_one_statement_and_all_or_nothing() {
    let db = TestDb::new().await;
    let mut jobs: Vec<NewJob> = (0..5000)
        .map(|i| NewJob::new("q", "k", json!({ "i": i })))
        .collect();
    enqueue(&db, jobs.clone()).await;
    assert_eq!(db.live_jobs().await, 5000);
    // One bad row (priority outside the check constraint) refuses the whole batch.
    for j in &mut jobs {
        j.id = Uuid::now_v7();
    }
    jobs[4321].priority = 500;
    let err = due_work::enqueue_many(&db.pool, &jobs, 4)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("priority"), "{err}");
    assert_eq!(db.live_jobs().await, 5000);
}

#[tokio::test]
async fn duplicate_unique_key_returns_the_live_job() {
    let db = TestDb::new().await;
    let a = jobs("q", "k").unique("scan:example.org");
    let b = jobs("q", "k")
        .payload(json!({"other": true}))
        .unique("scan:example.org");
    let first = due_work::enqueue_many(&db.pool, &[a], 4).await.unwrap();
    let second = due_work::enqueue_many(&db.pool, &[b], 4).await.unwrap();
    assert!(!first[0].duplicate);
    assert!(second[0].duplicate);
    assert_eq!(second[0].id, first[0].id);
    // Duplicates within one batch resolve to the same job too.
    let c = jobs("q", "k").unique("k2");
    let mut d = c.clone();
    d.id = Uuid::now_v7();
    let r = due_work::enqueue_many(&db.pool, &[c, d], 4).await.unwrap();
    assert_eq!(r[0].id, r[1].id);
    assert_eq!(db.live_jobs().await, 2);
}

#[tokio::test]
async fn racing_enqueues_with_one_unique_key_create_one_job() {
    let db = TestDb::new().await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let pool = db.pool.clone();
        tasks.push(tokio::spawn(async move {
            let job = jobs("q", "k").unique("race");
            due_work::enqueue_many(&pool, &[job], 4).await.unwrap()[0].id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "all racers got the same id");
    assert_eq!(db.live_jobs().await, 1);
}

#[tokio::test]
async fn unique_key_is_free_again_once_the_job_finished() {
    let db = TestDb::new().await;
    let mut job = jobs("q", "k").unique("once");
    let first = enqueue(&db, vec![job.clone()]).await[0];
    let w = Uuid::now_v7();
    claim(&db.pool, 1, w).await;
    finish(&db.pool, w, &[completed(first)]).await;
    job.id = Uuid::now_v7();
    let second = due_work::enqueue_many(&db.pool, &[job], 4).await.unwrap();
    assert!(!second[0].duplicate);
    assert_ne!(second[0].id, first);
}

#[tokio::test]
async fn future_jobs_wait_for_run_at() {
    let db = TestDb::new().await;
    let mut later = NewJob::new("q", "k", json!({}));
    later.run_at = Some(chrono::Utc::now() + chrono::Duration::seconds(3600));
    enqueue(&db, vec![later]).await;
    db.assert_rows("due_work WHERE state = 'scheduled'", 1)
        .await;
    let claimed = claim(&db.pool, 10, Uuid::now_v7()).await;
    assert!(claimed.is_empty());
    db.exec("UPDATE due_work SET run_at = now() - interval '1 second'")
        .await;
    let claimed = claim(&db.pool, 10, Uuid::now_v7()).await;
    assert_eq!(claimed.len(), 1);
}

#[tokio::test]
async fn claims_follow_priority_then_run_at_across_queues() {
    let db = TestDb::new().await;
    let now = chrono::Utc::now();
    let mut jobs = Vec::new();
    for (queue, priority, age) in [
        ("a", 5, 10),
        ("b", 0, 1),
        ("a", 0, 5),
        ("b", 5, 20),
        ("c", -1, 0),
    ] {
        let mut j = NewJob::new(queue, "k", json!({ "tag": format!("{queue}{priority}") }));
        j.priority = priority;
        j.run_at = Some(now - chrono::Duration::seconds(age));
        jobs.push(j);
    }
    enqueue(&db, jobs).await;
    let claimed = due_work::claim_due(
        &db.pool,
        &["a".into(), "b".into()],
        10,
        Uuid::now_v7(),
        LEASE,
    )
    .await
    .unwrap();
    let tags: Vec<String> = claimed
        .iter()
        .map(|j| j.payload["tag"].as_str().unwrap().to_owned())
        .collect();
    // Queue c is not served. RETURNING order is unspecified, so read back in claim order.
    let running = "SELECT priority::int8, payload->>'tag' FROM due_work \
                   WHERE state = 'running' ORDER BY priority, run_at";
    let rows: Vec<(i64, String)> = db.rows(running).await;
    assert_eq!(tags.len(), 4);
    assert_eq!(
        rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        vec!["a0", "b0", "b5", "a5"]
    );
    // With one slot, the best job across queues wins.
    let db2 = TestDb::new().await;
    let mut low = NewJob::new("a", "k", json!({"tag": "low"}));
    low.priority = 10;
    low.run_at = Some(now - chrono::Duration::seconds(100));
    let mut high = NewJob::new("b", "k", json!({"tag": "high"}));
    high.priority = -10;
    enqueue(&db2, vec![low, high]).await;
    let one = due_work::claim_due(
        &db2.pool,
        &["a".into(), "b".into()],
        1,
        Uuid::now_v7(),
        LEASE,
    )
    .await
    .unwrap();
    assert_eq!(one[0].payload["tag"], "high");
}

#[tokio::test]
async fn paused_queues_are_not_claimed_and_keep_their_jobs() {
    let db = TestDb::new().await;
    jobs("q", "k").enqueue_n(&db.pool, 1).await;
    ordinaut::db::queues::set_paused(&db.pool, "q", true)
        .await
        .unwrap();
    assert!(claim(&db.pool, 10, Uuid::now_v7()).await.is_empty());
    ordinaut::db::queues::set_paused(&db.pool, "q", false)
        .await
        .unwrap();
    assert_eq!(claim(&db.pool, 10, Uuid::now_v7()).await.len(), 1);
}

#[tokio::test]
async fn concurrent_claimers_never_share_a_job() {
    let db = TestDb::new().await;
    enqueue(
        &db,
        (0..2000)
            .map(|_| NewJob::new("q", "k", json!({})))
            .collect(),
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pool = db.pool.clone();
        tasks.push(tokio::spawn(async move {
            let w = Uuid::now_v7();
            let mut mine = Vec::new();
            loop {
                let got = claim(&pool, 37, w).await;
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(n, 2000);
    assert_eq!(all.len(), 2000);
}

#[tokio::test]
async fn retry_outcome_reschedules_and_spends_the_attempt() {
    let db = TestDb::new().await;
    let (id, w) = claimed_job(&db).await;
    let at = chrono::Utc::now() + chrono::Duration::seconds(30);
    let f = Finish {
        next_run_at: Some(at),
        error: Some("boom".into()),
        log: Some("out".into()),
        ..outcome(id, 1, FinishKind::Retry)
    };
    assert_eq!(finish(&db.pool, w, &[f]).await.len(), 1);
    let job = live(&db.pool, id).await;
    assert_eq!(
        (
            job.state.as_str(),
            job.attempt,
            job.last_error.as_deref(),
            job.lease_owner
        ),
        ("scheduled", 1, Some("boom"), None)
    );
    let a = only_attempt(&db.pool, id).await;
    let (error, log) = (a.error.as_deref(), a.log.as_deref());
    assert_eq!(
        (a.outcome.as_str(), error, log),
        ("retry", Some("boom"), Some("out"))
    );
}

#[tokio::test]
async fn snoozed_and_interrupted_attempts_are_given_back() {
    let db = TestDb::new().await;
    let (ids, w) = claimed_jobs(&db, 2).await;
    let later = chrono::Utc::now() + chrono::Duration::seconds(30);
    let batch = [
        Finish {
            next_run_at: Some(later),
            error: Some("429".into()),
            ..outcome(ids[0], 1, FinishKind::Snoozed)
        },
        outcome(ids[1], 1, FinishKind::Interrupted),
    ];
    assert_eq!(finish(&db.pool, w, &batch).await.len(), 2);
    let rows: Vec<(Uuid, String, i32)> =
        sqlx::query_as("SELECT id, state, attempt FROM due_work ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(rows.contains(&(ids[0], "scheduled".into(), 0)));
    assert!(rows.contains(&(ids[1], "available".into(), 0)));
    for (id, given_back) in ids.into_iter().zip(["snoozed", "interrupted"]) {
        let a = only_attempt(&db.pool, id).await;
        assert_eq!((a.attempt, a.outcome.as_str()), (1, given_back));
    }
}

#[tokio::test]
async fn failed_job_goes_to_history_and_can_be_retried_by_hand() {
    let db = TestDb::new().await;
    let (id, w) = claimed_job(&db).await;
    let f = Finish {
        error: Some("bad input".into()),
        ..outcome(id, 1, FinishKind::Failed)
    };
    finish(&db.pool, w, &[f]).await;
    let ended = finished(&db.pool, id).await.expect("the job ended");
    let (state, error) = (ended.state, ended.last_error.as_deref());
    assert_eq!((state, error), (JobState::Failed, Some("bad input")));
    due_work::retry(&db.pool, id).await.unwrap();
    let job = live(&db.pool, id).await;
    let (state, attempt, max) = (job.state.as_str(), job.attempt, job.max_attempts);
    assert_eq!((state, attempt, max), ("available", 1, 5));
    assert_eq!(db.ended_jobs().await, 0);
    // A live job cannot be retried; an unknown one is not found.
    assert!(matches!(
        due_work::retry(&db.pool, id).await,
        Err(ordinaut::db::Error::Conflict(_))
    ));
    assert!(matches!(
        due_work::retry(&db.pool, Uuid::now_v7()).await,
        Err(ordinaut::db::Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn outcome_from_a_worker_that_lost_the_lease_is_ignored() {
    let db = TestDb::new().await;
    let (id, _) = claimed_job(&db).await;
    let applied = finish(&db.pool, Uuid::now_v7(), &[completed(id)]).await;
    assert!(applied.is_empty());
    assert_eq!(db.running_jobs().await, 1);
    assert_eq!(db.ended_jobs().await, 0);
}

#[tokio::test]
async fn expired_lease_is_rescued_as_a_failed_attempt() {
    let db = TestDb::new().await;
    let one_try = jobs("q", "k").max_attempts(1).build();
    let ids = enqueue(&db, vec![NewJob::new("q", "k", json!({})), one_try]).await;
    due_work::claim_due(
        &db.pool,
        &["q".into()],
        2,
        Uuid::now_v7(),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let nothing = rescue(&db, &[]).await;
    assert_eq!(nothing.total(), 0, "live leases are left alone");
    expire_leases(&db).await;
    let r = rescue(&db, &[]).await;
    assert_eq!((r.retried, r.failed), (1, 1));
    let state: String = sqlx::query_scalar("SELECT state FROM due_work WHERE id = $1")
        .bind(ids[0])
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(state, "scheduled");
    assert_eq!(db.ended_in("failed").await, 1);
    assert_eq!(db.attempts_ending("lost").await, 2);
}

#[tokio::test]
async fn retry_delay_follows_backoff_within_jitter() {
    let db = TestDb::new().await;
    let mut job = NewJob::new("q", "k", json!({}));
    job.max_attempts = Some(10);
    enqueue(&db, vec![job]).await;
    let b = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(1000),
    };
    for attempt in 1..=4 {
        db.exec("UPDATE due_work SET run_at = now()").await;
        let claimed = claim(&db.pool, 1, Uuid::now_v7()).await;
        assert_eq!(claimed[0].attempt, attempt);
        expire_leases(&db).await;
        due_work::rescue_many(&db.pool, &[], b, 100).await.unwrap();
        let delay: f64 =
            sqlx::query_scalar("SELECT extract(epoch FROM run_at - now())::float8 FROM due_work")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        let nominal = b.nominal(attempt).as_secs_f64();
        assert!(
            delay >= nominal * 0.75 - 1.0 && delay <= nominal * 1.25 + 0.1,
            "attempt {attempt}: {delay} vs {nominal}"
        );
    }
}

#[tokio::test]
async fn dead_workers_jobs_are_handed_back_through_the_advisory_lock() {
    use ordinaut::db::workers;
    let db = TestDb::new().await;
    jobs("q", "k").enqueue_n(&db.pool, 1).await;
    let reg = workers::Registration {
        id: Uuid::now_v7(),
        hostname: "h".into(),
        pid: 1,
        queues: vec!["q".into()],
        concurrency: 1,
        version: "t".into(),
    };
    let mut lock_conn = db.db_config().connect_one().await.unwrap();
    workers::register(&mut lock_conn, &reg).await.unwrap();
    claim(&db.pool, 1, reg.id).await;
    assert!(
        workers::find_dead(&db.pool, Duration::from_secs(10))
            .await
            .unwrap()
            .is_empty(),
        "a live worker holds its lock"
    );
    drop(lock_conn); // the session ends, as when the process is killed
    let dead =
        crate::common::eventually(Duration::from_secs(10), "the lock to be released", || {
            let pool = db.pool.clone();
            async move {
                Some(
                    workers::find_dead(&pool, Duration::from_secs(10))
                        .await
                        .unwrap(),
                )
                .filter(|d| !d.is_empty())
            }
        })
        .await;
    assert_eq!(dead, vec![reg.id]);
    let r = rescue(&db, &dead).await;
    assert_eq!(r.retried, 1);
    assert_eq!(workers::delete_dead(&db.pool, &dead).await.unwrap(), 1);
    db.assert_rows(
        "all_attempts WHERE outcome = 'lost' AND error LIKE 'worker died%'",
        1,
    )
    .await;
}

#[tokio::test]
async fn cancel_stops_waiting_jobs_at_once_and_flags_running_ones() {
    let db = TestDb::new().await;
    let ids = jobs("q", "k").enqueue_n(&db.pool, 2).await;
    let w = Uuid::now_v7();
    let claimed = claim(&db.pool, 1, w).await;
    let running = claimed[0].id;
    let waiting = if running == ids[0] { ids[1] } else { ids[0] };
    let mut listener = sqlx::postgres::PgListener::connect(&db.url).await.unwrap();
    listener.listen("ordinaut_cancel").await.unwrap();
    assert_eq!(
        due_work::cancel(&db.pool, waiting).await.unwrap(),
        due_work::CancelResult::Cancelled
    );
    assert_eq!(
        due_work::cancel(&db.pool, running).await.unwrap(),
        due_work::CancelResult::Requested
    );
    let note = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note.payload(), running.to_string());
    assert_eq!(
        due_work::cancel(&db.pool, waiting).await.unwrap(),
        due_work::CancelResult::AlreadyFinished(ordinaut::model::JobState::Cancelled)
    );
    assert!(matches!(
        due_work::cancel(&db.pool, Uuid::now_v7()).await,
        Err(ordinaut::db::Error::NotFound { .. })
    ));
    // A cancel-requested job whose worker died is recorded as cancelled, not retried.
    expire_leases(&db).await;
    let r = rescue(&db, &[]).await;
    assert_eq!(r.cancelled, 1);
    assert_eq!(db.ended_in("cancelled").await, 2);
}

#[tokio::test]
async fn sql_enqueue_function_follows_the_callers_transaction() {
    let db = TestDb::new().await;
    let mut tx = db.pool.begin().await.unwrap();
    let _: Uuid = sqlx::query_scalar("SELECT ordinaut_enqueue('q', 'k', '{\"a\":1}')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(db.live_jobs().await, 0);
    let mut tx = db.pool.begin().await.unwrap();
    let id: Uuid =
        sqlx::query_scalar("SELECT ordinaut_enqueue('q', 'k', '{\"a\":1}', unique_key => 'u1')")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    let again: Uuid = sqlx::query_scalar("SELECT ordinaut_enqueue('q', 'k', unique_key => 'u1')")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(id, again);
    let err = sqlx::query("SELECT ordinaut_enqueue('bad queue', 'k')")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid queue name"), "{err}");
    assert_eq!(db.live_jobs().await, 1);
    assert_eq!(id.get_version_num(), 7);
}

#[tokio::test]
async fn one_notify_per_enqueue_statement() {
    let db = TestDb::new().await;
    let mut listener = sqlx::postgres::PgListener::connect(&db.url).await.unwrap();
    listener.listen("ordinaut_enqueued").await.unwrap();
    enqueue(
        &db,
        (0..500).map(|_| NewJob::new("q", "k", json!({}))).collect(),
    )
    .await;
    let first = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.payload(), "q");
    let more = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(
        more.is_err(),
        "a second notification arrived for one statement"
    );
}

#[tokio::test]
async fn queue_without_keep_completed_drops_finished_jobs() {
    let db = TestDb::new().await;
    ordinaut::db::queues::upsert_settings(
        &db.pool,
        "q",
        &ordinaut::db::queues::QueueSettings {
            keep_completed: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (id, w) = claimed_job(&db).await;
    finish(&db.pool, w, &[completed(id)]).await;
    assert_eq!(db.ended_jobs().await, 0);
    assert_eq!(db.live_jobs().await, 0);
}

#[tokio::test]
async fn queue_stats_count_live_work() {
    let db = TestDb::new().await;
    let mut later = NewJob::new("q", "k", json!({}));
    later.run_at = Some(chrono::Utc::now() + chrono::Duration::seconds(600));
    enqueue(
        &db,
        vec![
            NewJob::new("q", "k", json!({})),
            NewJob::new("q", "k", json!({})),
            later,
        ],
    )
    .await;
    claim(&db.pool, 1, Uuid::now_v7()).await;
    let stats = ordinaut::db::queues::queue_stats(&db.pool, None)
        .await
        .unwrap();
    assert_eq!(stats.len(), 1);
    let q = &stats[0];
    assert_eq!(
        (q.available, q.scheduled, q.running, q.paused),
        (1, 1, 1, false)
    );
    assert!(q.oldest_wait_seconds.is_some());
    assert_eq!(db.live_jobs().await, 3, "psql's backlog query");
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let db = TestDb::new().await;
    db.exec("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'future', true, '\\x00', 0)").await;
    let err = ordinaut::db::migrate(&db.db_config()).await.unwrap_err();
    assert!(
        err.to_string().contains("newer than this ordinaut"),
        "{err}"
    );
}

#[tokio::test]
async fn schema_is_configurable() {
    let db = TestDb::new().await;
    let mut cfg = db.db_config();
    cfg.schema = "jobs_here".into();
    ordinaut::db::migrate(&cfg).await.unwrap();
    let pool = cfg.connect().await.unwrap();
    due_work::enqueue_many(&pool, &[NewJob::new("q", "k", json!({}))], 4)
        .await
        .unwrap();
    db.assert_rows("jobs_here.due_work", 1).await;
    db.assert_rows("public.due_work", 0).await;
    // The transactional function works for an application whose search_path lacks the schema.
    let id: Uuid = sqlx::query_scalar("SELECT jobs_here.ordinaut_enqueue('q', 'k')")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(id.get_version_num(), 7);
    db.assert_rows("jobs_here.due_work", 2).await;
}

#[tokio::test]
async fn finished_jobs_land_in_the_daily_partition() {
    let db = TestDb::new().await;
    let (id, w) = claimed_job(&db).await;
    finish(&db.pool, w, &[completed(id)]).await;
    let part: String = db
        .value(&format!(
            "SELECT tableoid::regclass::text FROM job_history WHERE id = '{id}'"
        ))
        .await;
    assert!(part.starts_with("job_history_p"), "{part}");
    // Idempotent, and tolerant of rows already in the default partition.
    sqlx::query("INSERT INTO job_attempts (job_id, attempt, finished_at, outcome) VALUES ($1, 1, now() + interval '30 days', 'completed')")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    let days = |table: &'static str| {
        let pool = db.pool.clone();
        async move {
            let sql = "SELECT count(*) FROM generate_series(current_date - 1, current_date + 40, '1 day') AS d
                       WHERE to_regclass($1 || '_p' || to_char(d, 'YYYYMMDD')) IS NOT NULL";
            sqlx::query_scalar::<_, i64>(sql)
                .bind(table)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let ensure = "SELECT ordinaut_ensure_partitions(current_date - 1, current_date + 40)";
    let created: i32 = sqlx::query_scalar(ensure)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(created > 0);
    assert_eq!(days("job_history").await, 42);
    assert_eq!(
        days("job_attempts").await,
        41,
        "the day with a default-partition row is left alone"
    );
    let again: i32 = sqlx::query_scalar(ensure)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(again, 0);
}

#[tokio::test]
async fn job_events_are_sent_only_while_an_api_process_subscribes() {
    use ordinaut::db::events::{self, Received};
    use ordinaut::db::listen::{Listener, Topics};
    use tokio::sync::broadcast::Receiver;
    let db = TestDb::new().await;
    let source = Listener::new(db.pool.clone(), Topics::EVENTS);
    let mut listener = source.events().subscribe();
    let stop = tokio_util::sync::CancellationToken::new();
    let listening = tokio::spawn(source.run(stop.clone()));
    async fn next(l: &mut Receiver<Received>) -> Option<Received> {
        tokio::time::timeout(Duration::from_millis(500), l.recv())
            .await
            .ok()
            .map(|r| r.unwrap())
    }
    // The listener announces its connection with a resync.
    assert_eq!(next(&mut listener).await, Some(Received::Resync));
    let w = Uuid::now_v7();
    let run_one = |db: &TestDb| {
        let pool = db.pool.clone();
        async move {
            let id = due_work::enqueue_many(&pool, &[NewJob::new("q", "k", json!({}))], 4)
                .await
                .unwrap()[0]
                .id;
            claim(&pool, 1, w).await;
            finish(&pool, w, &[completed(id)]).await;
            id
        }
    };

    // Nobody subscribed: enqueue, claim and finish send nothing.
    run_one(&db).await;
    assert_eq!(next(&mut listener).await, None);

    // An API process subscribes: every transition is reported, in order.
    let api = Uuid::now_v7();
    events::open_gate(&db.pool, api).await.unwrap();
    let id = run_one(&db).await;
    let mut states = Vec::new();
    while let Some(Received::Events(batch)) = next(&mut listener).await {
        states.extend(batch.into_iter().filter(|e| e.id == id).map(|e| e.state));
    }
    assert_eq!(states, ["available", "running", "completed"]);

    // It leaves (or its row expires): silence again.
    events::close_gate(&db.pool, api).await.unwrap();
    run_one(&db).await;
    assert_eq!(next(&mut listener).await, None);
    sqlx::query("INSERT INTO event_subscribers VALUES ($1, now() - interval '1 second')")
        .bind(Uuid::now_v7())
        .execute(&db.pool)
        .await
        .unwrap();
    run_one(&db).await;
    assert_eq!(next(&mut listener).await, None);
    stop.cancel();
    listening.await.unwrap();
}

#[tokio::test]
async fn a_claim_over_many_queues_takes_exactly_the_best_jobs_and_locks_no_other_row() {
    let db = TestDb::new().await;
    let now = chrono::Utc::now();
    // 40 served queues of very different lengths (1 to ~120 jobs: some queues' heads
    // end before the cut, some after), priorities -3..=3 and ages mixed; some jobs not
    // yet due; an unserved and a paused queue that hold better jobs.
    let mut batch = Vec::new();
    for i in 0u64..1_500 {
        let mix = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        let queue = match mix % 100 {
            0..=39 => format!("q{}", mix % 3),
            90..=94 => "unserved".to_owned(),
            95..=99 => "paused".to_owned(),
            _ => format!("q{}", 3 + (mix >> 8) % 37),
        };
        let mut job = NewJob::new(&queue, "k", json!({}));
        job.priority = ((mix >> 20) % 7) as i16 - 3;
        let age = ((mix >> 24) % 5_000) as i64;
        job.run_at = Some(if (mix >> 40) % 10 == 0 {
            now + chrono::Duration::hours(1)
        } else {
            now - chrono::Duration::seconds(age)
        });
        batch.push(job);
    }
    enqueue(&db, batch).await;
    ordinaut::db::queues::set_paused(&db.pool, "paused", true)
        .await
        .unwrap();
    let mut served: Vec<String> = (0..40).map(|q| format!("q{q}")).collect();
    served.extend(["paused".to_owned(), "empty".to_owned()]);
    let best = |limit: usize| {
        format!(
            "SELECT id FROM due_work WHERE state <> 'running' AND run_at <= now() \
             AND queue ~ '^q[0-9]+$' ORDER BY priority, run_at, id LIMIT {limit}"
        )
    };
    for limit in [1, 3, 40, 7, 250, 64, 10_000] {
        let mut expected: Vec<Uuid> = db.column(&best(limit)).await;
        let worker = Uuid::now_v7();
        let mut claimed: Vec<Uuid> = due_work::claim_due(&db.pool, &served, limit, worker, LEASE)
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        expected.sort();
        claimed.sort();
        assert_eq!(claimed, expected, "claim of {limit}");
        // A row a claim locks but does not take keeps the claim's xid in xmax: none may.
        let locked = "SELECT count(*) FROM due_work \
                      WHERE state <> 'running' AND NOT xmax = '0'::xid";
        assert_eq!(
            db.value::<i64>(locked).await,
            0,
            "rows locked by the claim of {limit}"
        );
    }
    let left: Vec<Uuid> = db.column(&best(1)).await;
    assert!(
        left.is_empty(),
        "the last claim left a due job of a served queue"
    );
}

#[tokio::test]
async fn concurrent_claims_over_many_queues_take_every_job_once() {
    let db = TestDb::new().await;
    let queues: Vec<String> = (0..40).map(|q| format!("q{q}")).collect();
    let batch: Vec<NewJob> = (0..2_000)
        .map(|i| NewJob::new(&queues[i % 40], "k", json!({})))
        .collect();
    let mut all = enqueue(&db, batch).await;
    // Eight claimers at once, each asking for an odd number from every queue, until
    // nothing is left: quotas computed from the same rows must still not hand one job
    // to two of them, nor leave one behind.
    let claimers = (0..8).map(|_| {
        let (pool, queues) = (db.pool.clone(), queues.clone());
        tokio::spawn(async move {
            let worker = Uuid::now_v7();
            let mut got = Vec::new();
            let mut empty = 0;
            while empty < 3 {
                let jobs = due_work::claim_due(&pool, &queues, 37, worker, LEASE)
                    .await
                    .unwrap();
                empty = if jobs.is_empty() { empty + 1 } else { 0 };
                got.extend(jobs.into_iter().map(|j| j.id));
            }
            got
        })
    });
    let mut claimed = Vec::new();
    for c in claimers.collect::<Vec<_>>() {
        claimed.extend(c.await.unwrap());
    }
    claimed.sort();
    all.sort();
    assert_eq!(claimed, all, "every job claimed exactly once");
}
