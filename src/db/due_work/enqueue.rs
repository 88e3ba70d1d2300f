//! Enqueueing: one statement inserts a batch, resolving unique-key conflicts to the
//! live job that holds the key.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::db::{Error, Result, map_constraint};

/// A job to insert. `id` is chosen by the caller (UUIDv7).
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Job id.
    pub id: Uuid,
    /// Queue name (validated).
    pub queue: String,
    /// Kind name (validated).
    pub kind: String,
    /// JSON payload.
    pub payload: serde_json::Value,
    /// Lower runs first.
    pub priority: i16,
    /// Not before; None = now.
    pub run_at: Option<DateTime<Utc>>,
    /// None = queue default, else config default.
    pub max_attempts: Option<i32>,
    /// Idempotency key among live jobs.
    pub unique_key: Option<String>,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
    /// Free-form metadata (request id, correlation).
    pub metadata: serde_json::Value,
    /// Schedule that fired it.
    pub schedule_id: Option<Uuid>,
    /// Intended fire time of that schedule.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Jobs sharing a key are limited by their queue's key_concurrency.
    pub concurrency_key: Option<String>,
}

impl NewJob {
    /// A job with defaults for everything but queue, kind and payload.
    pub fn new(
        queue: impl Into<String>,
        kind: impl Into<String>,
        payload: serde_json::Value,
    ) -> NewJob {
        NewJob {
            id: Uuid::now_v7(),
            queue: queue.into(),
            kind: kind.into(),
            payload,
            priority: 0,
            run_at: None,
            max_attempts: None,
            unique_key: None,
            timeout: None,
            metadata: serde_json::Value::Object(Default::default()),
            schedule_id: None,
            scheduled_for: None,
            concurrency_key: None,
        }
    }
}

/// What an enqueue did for one input job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id: the new one, or the existing live job's for a duplicate unique key.
    pub id: Uuid,
    /// True when an existing live job was returned instead of inserting.
    pub duplicate: bool,
}

const ENQUEUE_MANY: &str = include_str!("../sql/enqueue_many.sql");

const FIND_BY_UNIQUE_KEYS: &str =
    "SELECT unique_key, id FROM due_work WHERE unique_key = ANY($1::text[])";

/// Inserts `jobs` in one statement, all or nothing, and returns one result per input in
/// input order.
///
/// Takes row locks on the inserted rows only; conflicts on `due_work_unique_key_idx` are
/// resolved to the existing live job. Batches with unique keys run in a transaction so
/// that the follow-up lookup and any re-insert stay all or nothing.
#[tracing::instrument(skip_all, fields(jobs = jobs.len()))]
pub async fn enqueue_many(
    pool: &PgPool,
    jobs: &[NewJob],
    default_max_attempts: i32,
) -> Result<Vec<Enqueued>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    if jobs.iter().all(|j| j.unique_key.is_none()) {
        let mut conn = pool.acquire().await?;
        insert_jobs(&mut conn, jobs, default_max_attempts).await?;
        return Ok(jobs
            .iter()
            .map(|j| Enqueued {
                id: j.id,
                duplicate: false,
            })
            .collect());
    }
    let mut tx = pool.begin().await?;
    let mut results: Vec<Option<Enqueued>> = vec![None; jobs.len()];
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    // A conflicting live job can finish between the insert and the lookup; then its key
    // is free again and the next round inserts ours. Bounded: each round either resolves
    // a job or observes one finishing. Sets and maps keep each round linear in the
    // batch (a Vec lookup per job made a 100,000-job batch quadratic).
    for _ in 0..16 {
        let batch: Vec<NewJob> = pending.iter().map(|&i| jobs[i].clone()).collect();
        let inserted: std::collections::HashSet<Uuid> =
            insert_jobs(&mut tx, &batch, default_max_attempts)
                .await?
                .into_iter()
                .collect();
        let keys: Vec<&str> = pending
            .iter()
            .filter(|&&i| !inserted.contains(&jobs[i].id))
            .filter_map(|&i| jobs[i].unique_key.as_deref())
            .collect();
        let existing: std::collections::HashMap<String, Uuid> = if keys.is_empty() {
            Default::default()
        } else {
            sqlx::query_as::<_, (String, Uuid)>(FIND_BY_UNIQUE_KEYS)
                .bind(&keys)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect()
        };
        let mut still = Vec::new();
        for &i in &pending {
            let job = &jobs[i];
            if inserted.contains(&job.id) {
                results[i] = Some(Enqueued {
                    id: job.id,
                    duplicate: false,
                });
            } else if let Some(id) = job.unique_key.as_ref().and_then(|k| existing.get(k)) {
                results[i] = Some(Enqueued {
                    id: *id,
                    duplicate: true,
                });
            } else {
                still.push(i);
            }
        }
        pending = still;
        if pending.is_empty() {
            tx.commit().await?;
            return Ok(results
                .into_iter()
                .map(|r| r.expect("every pending job was resolved"))
                .collect());
        }
    }
    Err(Error::Conflict(
        "unique keys kept changing while enqueueing; try again".to_owned(),
    ))
}

pub(crate) async fn insert_jobs(
    conn: &mut PgConnection,
    jobs: &[NewJob],
    default_max_attempts: i32,
) -> Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    let kinds: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = jobs.iter().map(|j| &j.payload).collect();
    let priorities: Vec<i16> = jobs.iter().map(|j| j.priority).collect();
    let run_ats: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.run_at).collect();
    let max_attempts: Vec<Option<i32>> = jobs.iter().map(|j| j.max_attempts).collect();
    let unique_keys: Vec<Option<&str>> = jobs.iter().map(|j| j.unique_key.as_deref()).collect();
    let timeouts: Vec<Option<i64>> = jobs
        .iter()
        .map(|j| j.timeout.map(|t| t.as_millis().max(1) as i64))
        .collect();
    let metadata: Vec<&serde_json::Value> = jobs.iter().map(|j| &j.metadata).collect();
    let schedule_ids: Vec<Option<Uuid>> = jobs.iter().map(|j| j.schedule_id).collect();
    let scheduled_for: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.scheduled_for).collect();
    let keys: Vec<Option<&str>> = jobs.iter().map(|j| j.concurrency_key.as_deref()).collect();
    sqlx::query_scalar(ENQUEUE_MANY)
        .bind(&ids)
        .bind(&queues)
        .bind(&kinds)
        .bind(&payloads)
        .bind(&priorities)
        .bind(&run_ats)
        .bind(&max_attempts)
        .bind(&unique_keys)
        .bind(&timeouts)
        .bind(&metadata)
        .bind(&schedule_ids)
        .bind(default_max_attempts)
        .bind(&scheduled_for)
        .bind(&keys)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_constraint)
}
