//! Jobs for tests: a factory that enqueues jobs of one queue and kind with the test's
//! defaults, and typed reads of what became of them (state, attempts, output), so tests
//! assert on Rust values instead of SQL text with escaped JSON.

use std::time::Duration;

use ordinaut::db::due_work::{self, Applied, Finish, FinishKind, NewJob};
use ordinaut::model::{ClaimedJob, JobState};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::{TestDb, eventually};

/// Enqueues jobs of one queue and kind with shared defaults.
#[derive(Clone)]
pub struct JobFactory {
    queue: String,
    kind: String,
    payload: Value,
    max_attempts: Option<i32>,
}

/// Jobs of `kind` on `queue`, payload `{}`, the queue's attempts.
pub fn jobs(queue: &str, kind: &str) -> JobFactory {
    JobFactory {
        queue: queue.to_owned(),
        kind: kind.to_owned(),
        payload: Value::Object(Default::default()),
        max_attempts: None,
    }
}

impl JobFactory {
    /// The payload of every job this builds (unless given per job).
    pub fn payload(mut self, payload: Value) -> JobFactory {
        self.payload = payload;
        self
    }

    /// Attempts per job.
    pub fn max_attempts(mut self, n: i32) -> JobFactory {
        self.max_attempts = Some(n);
        self
    }

    /// One job with the defaults, to adjust before enqueueing.
    pub fn build(&self) -> NewJob {
        self.with_payload(self.payload.clone())
    }

    /// One job with the defaults and unique key `key`.
    pub fn unique(&self, key: &str) -> NewJob {
        let mut job = self.build();
        job.unique_key = Some(key.to_owned());
        job
    }

    /// One job with the defaults and `payload`.
    pub fn with_payload(&self, payload: Value) -> NewJob {
        let mut job = NewJob::new(&self.queue, &self.kind, payload);
        job.max_attempts = self.max_attempts;
        job
    }

    /// Enqueues one job; its id.
    pub async fn enqueue(&self, pool: &PgPool) -> Uuid {
        enqueue_all(pool, vec![self.build()]).await[0]
    }

    /// Enqueues `n` jobs; their ids.
    pub async fn enqueue_n(&self, pool: &PgPool, n: usize) -> Vec<Uuid> {
        enqueue_all(pool, (0..n).map(|_| self.build()).collect()).await
    }

    /// Enqueues one job per payload; their ids, in order.
    pub async fn enqueue_payloads(
        &self,
        pool: &PgPool,
        payloads: impl IntoIterator<Item = Value>,
    ) -> Vec<Uuid> {
        enqueue_all(
            pool,
            payloads.into_iter().map(|p| self.with_payload(p)).collect(),
        )
        .await
    }
}

/// The outcome a worker reports for job `id` whose first attempt completed with
/// `{"ok": true}`.
pub fn completed(id: Uuid) -> Finish {
    Finish {
        output: Some(serde_json::json!({"ok": true})),
        ..outcome(id, 1, FinishKind::Completed)
    }
}

/// Attempt `attempt` of job `id` ending in `kind`, with no next run, error, output or
/// log (set them on the result).
pub fn outcome(id: Uuid, attempt: i32, kind: FinishKind) -> Finish {
    Finish {
        id,
        attempt,
        outcome: kind,
        next_run_at: None,
        error: None,
        output: None,
        log: None,
    }
}

/// The lease of a test's claims: longer than any test, so it ends only where a test
/// expires it on purpose.
pub const LEASE: Duration = Duration::from_secs(60);

/// Claims up to `n` due jobs of queue `q` for `worker`, with [`LEASE`].
pub async fn claim(pool: &PgPool, n: usize, worker: Uuid) -> Vec<ClaimedJob> {
    due_work::claim_due(pool, &["q".to_owned()], n, worker, LEASE)
        .await
        .expect("claim due jobs")
}

/// Reports `batch` as `worker`'s outcomes (up to 100 snoozes a job); those applied.
pub async fn finish(pool: &PgPool, worker: Uuid, batch: &[Finish]) -> Vec<Applied> {
    due_work::finish_many(pool, worker, 100, batch)
        .await
        .expect("finish claimed jobs")
}

/// Enqueues `jobs` in statements of 5,000; their ids, in order.
pub async fn enqueue_all(pool: &PgPool, jobs: Vec<NewJob>) -> Vec<Uuid> {
    for chunk in jobs.chunks(5000) {
        due_work::enqueue_many(pool, chunk, 4)
            .await
            .expect("enqueue test jobs");
    }
    jobs.iter().map(|j| j.id).collect()
}

/// A job in `job_history`: how it ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// `completed`, `failed` or `cancelled`.
    pub state: JobState,
    /// The error of its last failed attempt.
    pub last_error: Option<String>,
    /// Attempts it took.
    pub attempt: i32,
    /// What its handler returned.
    pub output: Option<Value>,
    /// Its last attempt's captured log.
    pub log: Option<String>,
    /// Its metadata (request id, trace context, …).
    pub metadata: Option<Value>,
}

/// state, last_error, attempt, output, log, metadata.
type HistoryRow = (
    String,
    Option<String>,
    i32,
    Option<Value>,
    Option<String>,
    Option<Value>,
);

/// How job `id` ended, if it has.
pub async fn finished(pool: &PgPool, id: Uuid) -> Option<Finished> {
    let row: Option<HistoryRow> = sqlx::query_as(
        "SELECT state, last_error, attempt, output, log, metadata FROM job_history WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .expect("read job_history");
    row.map(
        |(state, last_error, attempt, output, log, metadata)| Finished {
            state: state.parse().expect("a job state"),
            last_error,
            attempt,
            output,
            log,
            metadata,
        },
    )
}

/// Waits up to `limit` for job `id` to end.
pub async fn wait_finished(pool: &PgPool, id: Uuid, limit: Duration) -> Finished {
    eventually(limit, "job to finish", || finished(pool, id)).await
}

/// A live job as `due_work` holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Live {
    /// `waiting`, `scheduled`, `available` or `running`.
    pub state: String,
    /// Attempts spent.
    pub attempt: i32,
    pub max_attempts: i32,
    /// The error of its last failed attempt.
    pub last_error: Option<String>,
    /// The worker that holds its lease.
    pub lease_owner: Option<Uuid>,
    /// Seconds until it may run (negative once it is due).
    pub run_in: f64,
}

/// Job `id` as it stands in `due_work`; it must be live.
pub async fn live(pool: &PgPool, id: Uuid) -> Live {
    sqlx::query_as(
        "SELECT state, attempt, max_attempts, last_error, lease_owner, \
         extract(epoch FROM run_at - now())::float8 AS run_in FROM due_work WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("a live job")
}

/// One attempt of a job, live or finished.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Attempt {
    /// 1, 2, …
    pub attempt: i32,
    /// `completed`, `retry`, `failed`, `snoozed`, `cancelled`, `lost`, …
    pub outcome: String,
    /// Its error.
    pub error: Option<String>,
    /// Its captured output.
    pub log: Option<String>,
}

/// Every attempt of job `id`, in order.
pub async fn attempts(pool: &PgPool, id: Uuid) -> Vec<Attempt> {
    sqlx::query_as(
        "SELECT attempt, outcome, error, log FROM all_attempts WHERE job_id = $1 \
         ORDER BY attempt, started_at",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .expect("read all_attempts")
}

/// The one attempt job `id` has made (it must have made exactly one).
pub async fn only_attempt(pool: &PgPool, id: Uuid) -> Attempt {
    let mut all = attempts(pool, id).await;
    assert_eq!(all.len(), 1, "attempts of job {id}: {all:?}");
    all.remove(0)
}

/// A count, or -1 while the database does not answer (faults tests poll through
/// outages). Errors go through the store's error type, as every product query does, so
/// the pool sees the fault and moves.
pub async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .map_err(ordinaut::db::Error::from)
        .unwrap_or(-1)
}

/// Waits until nothing is left in `due_work` (every job terminal).
pub async fn drained(pool: &PgPool, limit: Duration) {
    eventually(limit, "every job terminal", || async {
        (count(pool, "SELECT count(*) FROM due_work").await == 0).then_some(())
    })
    .await;
}

/// Waits until at least `n` jobs are completed.
pub async fn completed_at_least(pool: &PgPool, n: i64, limit: Duration) {
    eventually(limit, "all jobs completed", || async {
        (count(
            pool,
            "SELECT count(*) FROM job_history WHERE state = 'completed'",
        )
        .await
            >= n)
            .then_some(())
    })
    .await;
}

/// Waits up to `limit` until the count `sql` returns is `expected`.
pub async fn wait_for_count(pool: &PgPool, sql: &'static str, expected: i64, limit: Duration) {
    let what = format!("{sql} to return {expected}");
    eventually(limit, &what, || async {
        (count(pool, sql).await == expected).then_some(())
    })
    .await;
}

impl TestDb {
    /// Waits up to `limit` until `from` (as for [`TestDb::count`]) has `n` rows.
    pub async fn wait_rows(&self, from: &str, n: i64, limit: Duration) {
        let what = format!("{n} rows of {from}");
        eventually(limit, &what, || async {
            (self.count(from).await == n).then_some(())
        })
        .await;
    }
}

/// Waits up to `limit` until exactly `n` jobs are running.
pub async fn wait_running(pool: &PgPool, n: i64, limit: Duration) {
    let sql = "SELECT count(*) FROM due_work WHERE state = 'running'";
    wait_for_count(pool, sql, n, limit).await;
}

/// Waits up to `limit` until exactly `n` jobs have completed.
pub async fn wait_completed(pool: &PgPool, n: i64, limit: Duration) {
    let sql = "SELECT count(*) FROM job_history WHERE state = 'completed'";
    wait_for_count(pool, sql, n, limit).await;
}

/// Counts of what became of the jobs, each one question a test asks of the store.
impl TestDb {
    /// Jobs still live: waiting, scheduled or running (rows of `due_work`).
    pub async fn live_jobs(&self) -> i64 {
        self.count("due_work").await
    }

    /// Jobs running now.
    pub async fn running_jobs(&self) -> i64 {
        self.count("due_work WHERE state = 'running'").await
    }

    /// Jobs that have ended, in any state (rows of `job_history`).
    pub async fn ended_jobs(&self) -> i64 {
        self.count("job_history").await
    }

    /// Jobs that ended in `state`: `completed`, `failed` or `cancelled` (a literal: it
    /// goes into the SQL text).
    pub async fn ended_in(&self, state: &'static str) -> i64 {
        self.count(&format!("job_history WHERE state = '{state}'"))
            .await
    }

    /// Attempts of every job, live or finished.
    pub async fn all_attempts(&self) -> i64 {
        self.count("all_attempts").await
    }

    /// Attempts, live or finished, whose outcome is `outcome` (`retry`, `lost`, …; a
    /// literal: it goes into the SQL text).
    pub async fn attempts_ending(&self, outcome: &'static str) -> i64 {
        self.count(&format!("all_attempts WHERE outcome = '{outcome}'"))
            .await
    }

    /// Registered workers.
    pub async fn workers(&self) -> i64 {
        self.count("workers").await
    }
}
