//! Maintenance and load limits at store level: rescue backoff bounds, unique-key
//! resolution of large batches, partition rotation under locks, declared schedules,
//! indexed job lists.

use std::time::Duration;

use ordinaut::db::due_work::{self, NewJob};
use ordinaut::model::Backoff;
use serde_json::json;
use uuid::Uuid;

use crate::common::TestDb;

#[tokio::test]
async fn rescue_survives_a_huge_attempt_number_and_queue_backoff() {
    let db = TestDb::new().await;
    // The largest backoff the API accepts (999999 h), and an attempt far past float8's
    // 2^1024: both made the whole rescue statement fail before the exponent was clamped.
    sqlx::query("INSERT INTO queues (name, backoff_base_ms, backoff_max_ms) VALUES ('huge', 3599996400000, 3599996400000)")
        .execute(&db.pool)
        .await
        .unwrap();
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
    let delay: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM run_at - now())::float8 FROM due_work WHERE id = $1",
    )
    .bind(ids[0])
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        (3_599_996_000.0..=3_599_996_400.0).contains(&delay),
        "capped at the queue's backoff_max: {delay}"
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
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM due_work").await,
        4000,
        "one row per key"
    );
    assert_eq!(results.iter().filter(|r| !r.duplicate).count(), 2000);
}
