//! Store-level lifecycle: enqueue, claim, finish, rescue, cancel, retry.

use std::time::Duration;

use ordinaut::db::due_work::{self, Finish, FinishKind, NewJob};
use ordinaut::model::Backoff;
use serde_json::json;
use uuid::Uuid;

use crate::common::TestDb;

const LEASE: Duration = Duration::from_secs(60);

fn backoff() -> Backoff {
    Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) }
}

async fn enqueue(db: &TestDb, jobs: Vec<NewJob>) -> Vec<Uuid> {
    due_work::enqueue_many(&db.pool, &jobs, 4).await.expect("enqueue").into_iter().map(|e| e.id).collect()
}

fn done(id: Uuid) -> Finish {
    Finish { id, outcome: FinishKind::Completed, next_run_at: None, error: None, output: Some(json!({"ok": true})), log: None }
}

#[tokio::test]
async fn completed_job_moves_to_history_with_its_attempt() {
    let db = TestDb::new().await;
    let ids = enqueue(&db, vec![NewJob::new("q", "k", json!({"n": 1}))]).await;
    let worker = Uuid::now_v7();
    let claimed = due_work::claim_due(&db.pool, &["q".into()], 10, worker, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempt, 1);
    let applied = due_work::finish_many(&db.pool, worker, &[done(ids[0])]).await.unwrap();
    assert_eq!(applied, ids);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM due_work").await, 0);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM job_history WHERE state = 'completed' AND output = '{\"ok\": true}'").await, 1);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM job_attempts WHERE outcome = 'completed' AND attempt = 1").await, 1);
}
