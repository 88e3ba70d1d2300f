//! Maintenance and load limits at store level: rescue backoff bounds, unique-key
//! resolution of large batches, partition rotation under locks, declared schedules,
//! indexed job lists.

use std::time::Duration;

use ordinaut::db::due_work::{self, NewJob};
use ordinaut::model::Backoff;
use serde_json::json;
use uuid::Uuid;

use crate::common::jobs::{completed, live};
use crate::common::{TestDb, schedules};

#[tokio::test]
async fn rescue_survives_a_huge_attempt_number_and_queue_backoff() {
    let db = TestDb::new().await;
    // The largest backoff the API accepts (999999 h), and an attempt far past float8's
    // 2^1024: both made the whole rescue statement fail before the exponent was clamped.
    db.exec("INSERT INTO queues (name, backoff_base_ms, backoff_max_ms) VALUES ('huge', 3599996400000, 3599996400000)").await;
    let mut a = NewJob::new("huge", "k", json!({}));
    a.max_attempts = Some(1000);
    let b = NewJob::new("q", "k", json!({}));
    let ids = [a.id, b.id];
    due_work::enqueue_many(&db.pool, &[a, b], 4).await.unwrap();
    sqlx::query(
        "UPDATE due_work SET state = 'running', lease_owner = $1, attempt = CASE WHEN queue = 'huge' THEN 1100 ELSE 1 END,
                max_attempts = CASE WHEN queue = 'huge' THEN 5000 ELSE 4 END,
                lease_expires_at = now() - interval '1 second', attempted_at = now()",
    )
    .bind(Uuid::now_v7())
    .execute(&db.pool)
    .await
    .unwrap();
    let backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };
    let r = due_work::rescue_many(&db.pool, &[], backoff, 100)
        .await
        .expect("the rescue statement must not overflow");
    assert_eq!(r.retried, 2, "both jobs were handed back");
    let delay = live(&db.pool, ids[0]).await.run_in;
    let backoff_max = 3_599_996_000.0..=3_599_996_400.0;
    assert!(
        backoff_max.contains(&delay),
        "capped at backoff_max: {delay}"
    );
}

#[tokio::test]
async fn a_large_batch_of_unique_keys_resolves_every_duplicate() {
    let db = TestDb::new().await;
    // 2,000 keys already live, then one batch of 20,000 jobs over 4,000 keys (each five
    // times), half of them the live ones.
    let live: Vec<NewJob> = (0..2000)
        .map(|i| {
            let mut j = NewJob::new("q", "k", json!({}));
            j.unique_key = Some(format!("key-{i}"));
            j
        })
        .collect();
    let live_ids = due_work::enqueue_many(&db.pool, &live, 4).await.unwrap();
    let batch: Vec<NewJob> = (0..20_000)
        .map(|i| {
            let mut j = NewJob::new("q", "k", json!({}));
            j.unique_key = Some(format!("key-{}", i % 4000));
            j
        })
        .collect();
    let results = due_work::enqueue_many(&db.pool, &batch, 4).await.unwrap();
    assert_eq!(results.len(), batch.len());
    let mut by_key = std::collections::HashMap::new();
    for (job, r) in batch.iter().zip(&results) {
        let key = job.unique_key.clone().unwrap();
        let first = *by_key.entry(key.clone()).or_insert(r.id);
        assert_eq!(first, r.id, "every job with {key} resolved to one job");
        let n: usize = key.trim_start_matches("key-").parse().unwrap();
        if n < 2000 {
            assert!(r.duplicate, "{key} was live");
            assert_eq!(r.id, live_ids[n].id);
        }
    }
    assert_eq!(by_key.len(), 4000);
    assert_eq!(db.live_jobs().await, 4000, "one row per key");
    assert_eq!(results.iter().filter(|r| !r.duplicate).count(), 2000);
}

#[tokio::test]
async fn partition_rotation_behind_a_reader_defers_and_never_stalls_finishing() {
    let db = TestDb::new().await;
    // An old day to drop and a missing day ahead to create, for both tables.
    db.exec("SELECT ordinaut_ensure_partitions(current_date - 40, current_date - 40)")
        .await;
    for parent in ["job_history", "job_attempts"] {
        sqlx::query(
            "SELECT ordinaut_drop_partition($1 || '_p' || to_char(current_date + 7, 'YYYYMMDD'))",
        )
        .bind(parent)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let job = NewJob::new("q", "k", json!({}));
    let id = job.id;
    due_work::enqueue_many(&db.pool, &[job], 4).await.unwrap();
    let worker = Uuid::now_v7();
    due_work::claim_due(&db.pool, &["q".into()], 1, worker, Duration::from_secs(60))
        .await
        .unwrap();
    // What pg_dump (or a long GET /v1/jobs) holds: ACCESS SHARE on job_history and every
    // one of its partitions, for as long as it runs.
    let reader = db.hold("LOCK job_history IN ACCESS SHARE MODE").await;
    let retention = ordinaut::scheduler::Retention::new(db.pool.clone(), 30);
    let rotation = tokio::spawn(async move { retention.run_once().await });
    crate::common::eventually(
        Duration::from_secs(20),
        "the rotation to wait for a lock (or be done)",
        || async {
            let waiting: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted)")
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            (waiting || rotation.is_finished()).then_some(())
        },
    )
    .await;
    let finished = tokio::time::timeout(
        Duration::from_secs(30),
        due_work::finish_many(&db.pool, worker, 100, &[completed(id)]),
    )
    .await
    .expect("finish_many must not queue behind partition DDL waiting on a reader")
    .unwrap();
    assert_eq!(finished.iter().map(|a| a.id).collect::<Vec<_>>(), vec![id]);
    let report = tokio::time::timeout(Duration::from_secs(30), rotation)
        .await
        .expect("the rotation gives up on a held lock instead of waiting")
        .unwrap()
        .unwrap();
    assert_eq!(
        (report.created, report.dropped, report.deferred),
        (1, 1, 2),
        "job_attempts rotated; job_history's create and drop deferred: {report:?}"
    );
    reader.commit().await.unwrap();
    let again = schedules::retention_pass(&db.pool).await;
    assert_eq!((again.created, again.dropped, again.deferred), (1, 1, 0));
    assert_eq!(db.ended_in("completed").await, 1);
}

#[tokio::test]
async fn retention_ages_out_old_rows_of_the_default_partitions() {
    let db = TestDb::new().await;
    // Days with no partition (no scheduler ran then) land in the default partitions.
    db.exec("INSERT INTO job_history (id, queue, kind, payload, priority, state, attempt, max_attempts, metadata,
                                  run_at, created_at, finished_at)
         SELECT gen_random_uuid(), 'q', 'k', '{}', 0, 'completed', 1, 4, '{}', t, t, t
         FROM unnest(ARRAY[now() - interval '40 days', now() - interval '35 days', now() - interval '31 days',
                           now() + interval '20 days']) AS t").await;
    db.exec("INSERT INTO job_attempts (job_id, attempt, finished_at, outcome)
         SELECT gen_random_uuid(), 1, t, 'retry'
         FROM unnest(ARRAY[now() - interval '45 days', now() - interval '10 days' - interval '30 days']) AS t").await;
    db.assert_rows("job_history_default", 4).await;
    let report = schedules::retention_pass(&db.pool).await;
    assert_eq!(report.default_rows_deleted, 5);
    assert_eq!(
        db.count("job_history_default WHERE finished_at > now()")
            .await,
        1,
        "rows inside the retention stay"
    );
    assert_eq!(
        db.count("job_history_default").await + db.count("job_attempts_default").await,
        1
    );
}

#[tokio::test]
async fn retention_keeps_the_newest_thousand_fire_records_per_schedule() {
    let db = TestDb::new().await;
    db.exec(
        "INSERT INTO schedules (id, name, cron, timezone, queue, kind, next_run_at)
         VALUES (gen_random_uuid(), 'every-second', '* * * * * *', 'UTC', 'q', 'k', now()),
                (gen_random_uuid(), 'hourly', '@hourly', 'UTC', 'q', 'k', now())",
    )
    .await;
    db.exec(
        "INSERT INTO schedule_fires (schedule_id, fire_time, outcome)
         SELECT s.id, now() - make_interval(secs => g), 'enqueued'
         FROM schedules s, generate_series(1, 1500) g WHERE s.name = 'every-second'
         UNION ALL
         SELECT s.id, now() - make_interval(hours => g), 'enqueued'
         FROM schedules s, generate_series(1, 10) g WHERE s.name = 'hourly'",
    )
    .await;
    let report = schedules::retention_pass(&db.pool).await;
    assert_eq!(report.fires_pruned, 500);
    db.assert_rows("schedule_fires", 1010).await;
    // The newest 1,000 of the per-second schedule: g = 1..=1000.
    db.assert_rows("schedule_fires f JOIN schedules s ON s.id = f.schedule_id
             WHERE s.name = 'every-second'
               AND f.fire_time >= (SELECT max(fire_time) - interval '999 seconds' FROM schedule_fires)", 1000).await;
}

/// The plan of `sql` with `$1` bound to `arg`, as text.
async fn plan(db: &TestDb, sql: &str, arg: &str) -> String {
    let mut conn = db.pool.acquire().await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")))
        .bind(arg)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    rows.join("\n")
}

#[tokio::test]
async fn the_overlap_check_is_an_index_lookup_whatever_the_backlog() {
    let db = TestDb::new().await;
    let jobs: Vec<NewJob> = (0..20_000)
        .map(|_| NewJob::new("q", "k", json!({})))
        .collect();
    due_work::enqueue_many(&db.pool, &jobs, 4).await.unwrap();
    db.exec("ANALYZE due_work").await;
    // The statement of db::schedules::has_live_job.
    let p = plan(
        &db,
        "SELECT EXISTS (SELECT 1 FROM due_work WHERE schedule_id = $1::uuid)",
        &Uuid::now_v7().to_string(),
    )
    .await;
    assert!(p.contains("due_work_schedule_idx"), "{p}");
    assert!(!p.contains("Seq Scan"), "{p}");
}

#[tokio::test]
async fn listing_a_rare_queue_walks_its_index_not_the_whole_history() {
    let db = TestDb::new().await;
    db.exec("INSERT INTO job_history (id, queue, kind, payload, priority, state, attempt, max_attempts, metadata,
                                  run_at, created_at, finished_at)
         SELECT ordinaut_uuid_v7(), CASE WHEN g % 5000 = 0 THEN 'rare' ELSE 'bulk' END,
                CASE WHEN g % 5000 = 0 THEN 'rare-kind' ELSE 'bulk-kind' END,
                '{}', 0, 'completed', 1, 4, '{}', now(), now(), now()
         FROM generate_series(1, 30000) g").await;
    db.exec("ANALYZE job_history").await;
    // The partition holding the rows (the empty ones are scanned for free).
    let full: String =
        sqlx::query_scalar("SELECT tableoid::regclass::text FROM job_history LIMIT 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    for filter in [
        ordinaut::db::history::JobFilter {
            matching: ordinaut::db::history::JobMatch {
                queue: Some("rare".into()),
                ..Default::default()
            },
            limit: 50,
            ..Default::default()
        },
        ordinaut::db::history::JobFilter {
            matching: ordinaut::db::history::JobMatch {
                kind: Some("rare-kind".into()),
                state: Some("completed".into()),
                ..Default::default()
            },
            limit: 50,
            ..Default::default()
        },
    ] {
        let plan = ordinaut::db::history::explain_list_jobs(&db.pool, &filter)
            .await
            .unwrap();
        let index = if filter.matching.queue.is_some() {
            "queue_id_idx"
        } else {
            "kind_id_idx"
        };
        assert!(plan.contains(index), "{filter:?}:\n{plan}");
        assert!(
            plan.contains(&format!("Backward using {full}_{index}")),
            "{filter:?}:\n{plan}"
        );
        assert!(
            !plan.contains(&format!("Seq Scan on {full} ")),
            "{filter:?}:\n{plan}"
        );
        let jobs = ordinaut::db::history::list_jobs(&db.pool, &filter)
            .await
            .unwrap();
        assert_eq!(jobs.len(), 6, "{filter:?}");
    }
}

#[tokio::test]
async fn a_day_already_in_the_default_partition_is_left_there_without_locking_it() {
    let db = TestDb::new().await;
    db.exec(
        "SELECT ordinaut_drop_partition('job_history_p' || to_char(current_date + 7, 'YYYYMMDD'))",
    )
    .await;
    db.exec("INSERT INTO job_history (id, queue, kind, payload, priority, state, attempt, max_attempts, metadata,
                                  run_at, created_at, finished_at)
         VALUES (gen_random_uuid(), 'q', 'k', '{}', 0, 'completed', 1, 4, '{}', now(), now(),
                 (current_date + 7)::timestamptz + interval '1 hour')").await;
    // A reader of the default partition: creating the day would have to wait for it.
    let reader = db
        .hold("LOCK job_history_default IN ACCESS SHARE MODE")
        .await;
    let answer: String =
        sqlx::query_scalar("SELECT ordinaut_create_partition('job_history', current_date + 7)")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(answer, "occupied");
    reader.commit().await.unwrap();
    db.assert_rows("job_history_default", 1).await;
}

/// `due_work`'s vacuum count and dead rows, as the statistics have them.
async fn due_work_vacuums(db: &TestDb) -> (i64, i64) {
    db.rows::<(i64, i64)>(
        "SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables \
         WHERE relid = 'due_work'::regclass",
    )
    .await[0]
}

/// Leaves `n` dead rows in `due_work` (enqueued, then deleted), with the statistics
/// flushed at once rather than within the collector's ten idle seconds.
async fn leave_dead_rows(db: &TestDb, n: i64) {
    let mut tx = db.pool.begin().await.unwrap();
    for sql in [
        format!("SELECT count(ordinaut_enqueue('q', 'k')) FROM generate_series(1, {n})"),
        "DELETE FROM due_work".to_owned(),
        "SELECT pg_stat_force_next_flush()".to_owned(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn due_work_is_vacuumed_when_its_dead_rows_can_go_and_not_while_a_snapshot_holds_them() {
    use ordinaut::scheduler::vacuum::{Decision, MIN_DEAD, MIN_GAP, Vacuumer};
    let db = TestDb::new().await;
    // Only the service under test may vacuum the table.
    db.exec("ALTER TABLE due_work SET (autovacuum_enabled = false)")
        .await;
    let mut vacuumer = Vacuumer::new(db.pool.clone());
    assert_eq!(vacuumer.run_once().await.unwrap().0, Decision::Clean);

    // A snapshot from before the rows die keeps them; the first vacuum cannot know
    // that yet (no vacuum to compare with) and runs, removing nothing.
    let mut holder = db.pool.begin().await.unwrap();
    for sql in [
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "SELECT count(*) FROM due_work",
    ] {
        sqlx::query(sql).execute(&mut *holder).await.unwrap();
    }
    leave_dead_rows(&db, MIN_DEAD + 5_000).await;
    assert_eq!(vacuumer.run_once().await.unwrap().0, Decision::Vacuumed);
    let (count, dead) = due_work_vacuums(&db).await;
    assert_eq!(count, 1);
    assert!(dead >= MIN_DEAD, "the held rows are still there: {dead}");
    assert_eq!(vacuumer.run_once().await.unwrap().0, Decision::TooSoon);
    // That vacuum removed nothing, so the next waits twice as long.
    tokio::time::sleep(MIN_GAP).await;
    assert_eq!(vacuumer.run_once().await.unwrap().0, Decision::TooSoon);
    tokio::time::sleep(MIN_GAP).await;
    assert_eq!(vacuumer.run_once().await.unwrap().0, Decision::Held);
    assert_eq!(
        due_work_vacuums(&db).await.0,
        1,
        "no vacuum in vain while held"
    );

    // The snapshot ends: the next look (once the gap has passed) vacuums and the dead
    // rows are gone.
    holder.rollback().await.unwrap();
    assert_eq!(vacuumer.run_once().await.unwrap().0, Decision::Vacuumed);
    let (count, dead) = due_work_vacuums(&db).await;
    assert_eq!(count, 2);
    assert_eq!(dead, 0, "the vacuum after the snapshot ended removed them");
}
