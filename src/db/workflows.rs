//! Workflows: jobs submitted together with dependencies (migration 0016).
//!
//! Every operation is one SQL function (`ordinaut_enqueue_workflow`,
//! `ordinaut_workflow_append`, `_cancel`, `_retry`), so the API, the CLI and
//! applications calling SQL in their own transaction share one implementation and one
//! set of validation messages. Dependents are settled by triggers inside the
//! transaction that records a dependency's outcome; nothing here polls.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{Error, Result};

/// A workflow's header and derived state.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WorkflowSummary {
    /// Workflow id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// running, completed, failed or cancelled (derived from its steps).
    pub state: String,
    /// Free-form metadata given at submit.
    pub metadata: Value,
    /// Default failure policy of its edges.
    pub on_failure: String,
    /// True once cancelled (until retried).
    pub cancel_requested: bool,
    /// Submit time.
    pub created_at: DateTime<Utc>,
    /// When its last step ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Steps in all.
    pub steps: i64,
    /// Steps per state, e.g. `{"completed": 3, "waiting": 1}`.
    #[schema(value_type = Object)]
    pub counts: Value,
}

/// One step of a workflow.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Step {
    /// The step's name within its workflow.
    pub name: String,
    /// The id of its job (the same in due_work and job_history, and GET /v1/jobs/{id}).
    pub job_id: Uuid,
    /// waiting (dependencies pending, not claimable), enqueued (its job is live),
    /// completed, failed, cancelled, or skipped (a cleanup step with nothing to clean).
    pub state: String,
    /// The job's live state while enqueued (available, scheduled, running).
    pub job_state: Option<String>,
    /// Dependencies not yet ended.
    pub pending: i32,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// The job's output once completed.
    pub output: Option<Value>,
    /// The job's last error, or why the step ended without running.
    pub error: Option<String>,
    /// Names of the steps it depends on, with their failure policies.
    #[schema(value_type = Vec<Object>)]
    pub depends_on: Value,
    /// When the step ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A workflow with its steps (the graph).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Workflow {
    /// Header and state.
    #[serde(flatten)]
    pub summary: WorkflowSummary,
    /// Steps in submit order.
    pub jobs: Vec<Step>,
}

/// A step created by submit or append.
#[derive(Debug, Clone, serde::Deserialize, Serialize, utoipa::ToSchema)]
pub struct StepRef {
    /// Step name.
    pub name: String,
    /// Its job id.
    pub job_id: Uuid,
}

/// Maps the SQL functions' errors: 22023 a caller's mistake (the field in the error's
/// COLUMN, the problem in its DETAIL: `ordinaut_workflow_invalid`, migration 0023),
/// P0002 not found, 55000 a state conflict.
fn map(e: sqlx::Error, id: Option<Uuid>) -> Error {
    if let sqlx::Error::Database(db) = &e {
        let message = db.message().to_owned();
        match db.code().as_deref() {
            Some("22023") => {
                let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>();
                return Error::Invalid {
                    field: pg.and_then(|p| p.column()).unwrap_or("workflow").to_owned(),
                    reason: pg.and_then(|p| p.detail()).unwrap_or(&message).to_owned(),
                };
            }
            Some("P0002") => {
                return Error::NotFound {
                    what: "workflow",
                    id: id.map(|i| i.to_string()).unwrap_or_default(),
                };
            }
            Some("55000") => return Error::Conflict(message),
            _ => {}
        }
    }
    e.into()
}

/// Rewrites the `timeout` strings of a spec's jobs ("60s") into the SQL functions'
/// `timeout_ms`, so files and API bodies take the same durations as `jobs enqueue`.
pub fn normalize_spec(spec: &mut Value) -> std::result::Result<(), Error> {
    fn job(job: &mut Value, at: &str) -> std::result::Result<(), Error> {
        let Some(obj) = job.as_object_mut() else {
            return Ok(());
        };
        if let Some(t) = obj.remove("timeout") {
            let text = t.as_str().ok_or_else(|| Error::Invalid {
                field: format!("{at}.timeout"),
                reason: "must be a duration string such as \"60s\"".to_owned(),
            })?;
            let d = crate::model::parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| Error::Invalid {
                    field: format!("{at}.timeout"),
                    reason: format!("{text:?} is not a positive duration (60s, 5m)"),
                })?;
            obj.insert("timeout_ms".to_owned(), Value::from(d.as_millis() as u64));
        }
        Ok(())
    }
    for key in ["jobs", "group"] {
        if let Some(Value::Array(jobs)) = spec.get_mut(key) {
            for (i, j) in jobs.iter_mut().enumerate() {
                job(j, &format!("{key}[{i}]"))?;
            }
        }
    }
    if let Some(cb) = spec.get_mut("callback") {
        job(cb, "callback")?;
    }
    Ok(())
}

/// Submits a workflow inside `conn`'s transaction (or on its own); returns its id.
pub async fn submit_on(
    conn: &mut PgConnection,
    spec: &Value,
    default_max_attempts: i32,
) -> Result<Uuid> {
    sqlx::query_scalar("SELECT ordinaut_enqueue_workflow($1, $2)")
        .bind(spec)
        .bind(default_max_attempts)
        .fetch_one(conn)
        .await
        .map_err(|e| map(e, None))
}

/// Submits a workflow, all or nothing; returns its id.
#[tracing::instrument(skip_all)]
pub async fn submit(pool: &PgPool, spec: &Value, default_max_attempts: i32) -> Result<Uuid> {
    let mut conn = pool.acquire().await?;
    submit_on(&mut conn, spec, default_max_attempts).await
}

/// Appends steps to a running workflow (they may depend on any of its steps).
#[tracing::instrument(skip(pool, jobs))]
pub async fn append(
    pool: &PgPool,
    id: Uuid,
    jobs: &Value,
    default_max_attempts: i32,
) -> Result<Vec<StepRef>> {
    let refs: Value = sqlx::query_scalar("SELECT ordinaut_workflow_append($1, $2, $3)")
        .bind(id)
        .bind(jobs)
        .bind(default_max_attempts)
        .fetch_one(pool)
        .await
        .map_err(|e| map(e, Some(id)))?;
    serde_json::from_value(refs).map_err(|e| Error::Conflict(format!("append returned {e}")))
}

/// Cancels a workflow: waiting steps and jobs at once, running jobs are stopped by
/// their workers. A job being claimed or finished at this very moment is skipped by
/// the statement (it cannot wait for it without risking a deadlock), so this repeats
/// until none is left.
#[tracing::instrument(skip(pool))]
pub async fn cancel(pool: &PgPool, id: Uuid) -> Result<()> {
    for _ in 0..100 {
        let skipped: i32 = sqlx::query_scalar("SELECT ordinaut_workflow_cancel($1)")
            .bind(id)
            .fetch_one(pool)
            .await
            .map_err(|e| map(e, Some(id)))?;
        if skipped == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(Error::Conflict(format!(
        "workflow {id}: some jobs stayed locked; cancel again"
    )))
}

/// Retries a workflow's failed and cancelled steps; the steps cancelled or skipped
/// because of them wait again. Returns how many jobs were re-enqueued.
#[tracing::instrument(skip(pool))]
pub async fn retry(pool: &PgPool, id: Uuid) -> Result<i32> {
    sqlx::query_scalar("SELECT ordinaut_workflow_retry($1)")
        .bind(id)
        .fetch_one(pool)
        .await
        .map_err(|e| map(e, Some(id)))
}

/// The workflow step a job belongs to, with what it waits on.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StepOfJob {
    /// Its workflow's id.
    pub workflow_id: Uuid,
    /// Its workflow's name.
    pub workflow_name: String,
    /// The step's name within the workflow.
    pub step: String,
    /// The step's state (waiting, enqueued, completed, failed, cancelled, skipped).
    pub state: String,
    /// Dependencies not yet ended.
    pub pending: i32,
    /// The steps it depends on, each `{"name", "state", "on_failure"}`.
    #[schema(value_type = Vec<Object>)]
    pub depends_on: Value,
}

/// The step whose job is `job_id`, if that job belongs to a workflow: one lookup by the
/// steps' job index. Callers ask only for jobs with a workflow_id (or none found).
pub async fn step_of_job(pool: &PgPool, job_id: Uuid) -> Result<Option<StepOfJob>> {
    Ok(sqlx::query_as(
        "SELECT s.workflow_id, w.name AS workflow_name, s.name AS step, s.state, s.pending,
                coalesce((SELECT jsonb_agg(jsonb_build_object('name', p.name, 'state', p.state,
                                                              'on_failure', e.on_failure)
                                           ORDER BY p.seq)
                          FROM workflow_edges e
                          JOIN workflow_steps p ON p.workflow_id = e.workflow_id AND p.name = e.parent
                          WHERE e.workflow_id = s.workflow_id AND e.child = s.name),
                         '[]'::jsonb) AS depends_on
         FROM workflow_steps s JOIN workflows w ON w.id = s.workflow_id
         WHERE s.job_id = $1",
    )
    .bind(job_id)
    .fetch_optional(pool)
    .await?)
}

/// Cancels the workflow step whose job is `job_id` if it is still waiting for its
/// dependencies (migration 0021): it ends cancelled without running and its dependents
/// follow their edges' policies, as when a live step's job is cancelled. Returns
/// (cancelled by this call, the step's state), or None when no step has this job id.
pub async fn cancel_waiting_step(
    conn: &mut PgConnection,
    job_id: Uuid,
) -> Result<Option<(bool, String)>> {
    let (cancelled, state): (bool, Option<String>) =
        sqlx::query_as("SELECT * FROM ordinaut_workflow_cancel_step($1)")
            .bind(job_id)
            .fetch_one(conn)
            .await?;
    Ok(state.map(|s| (cancelled, s)))
}

/// The summary columns; a macro so that the statements stay `&'static str`.
macro_rules! summary_sql {
    () => {
        "SELECT w.id, w.name, w.state, w.metadata, w.on_failure, w.cancel_requested, w.created_at,
       w.finished_at,
       (SELECT count(*) FROM workflow_steps s WHERE s.workflow_id = w.id) AS steps,
       coalesce((SELECT jsonb_object_agg(c.state, c.n)
                 FROM (SELECT s.state, count(*) AS n FROM workflow_steps s
                       WHERE s.workflow_id = w.id GROUP BY s.state) c), '{}'::jsonb) AS counts
FROM workflows w"
    };
}

/// Workflows newest first, optionally of one state, before a given id (keyset paging).
#[tracing::instrument(skip(pool))]
pub async fn list(
    pool: &PgPool,
    state: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<WorkflowSummary>> {
    const SQL: &str = concat!(
        summary_sql!(),
        " WHERE ($1::text IS NULL OR w.state = $1) AND ($2::uuid IS NULL OR w.id < $2)",
        " ORDER BY w.id DESC LIMIT $3"
    );
    Ok(sqlx::query_as(SQL)
        .bind(state)
        .bind(before)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

const STEPS: &str = "\
SELECT s.name, s.job_id, s.state,
       CASE WHEN d.state = 'scheduled' AND d.run_at <= now() THEN 'available' ELSE d.state END AS job_state,
       s.pending, s.queue, s.kind, s.output,
       coalesce(s.reason, d.last_error,
                (SELECT h.last_error FROM job_history h WHERE h.id = s.job_id LIMIT 1)) AS error,
       coalesce((SELECT jsonb_agg(jsonb_build_object('name', e.parent, 'on_failure', e.on_failure)
                                  ORDER BY e.parent)
                 FROM workflow_edges e WHERE e.workflow_id = s.workflow_id AND e.child = s.name),
                '[]'::jsonb) AS depends_on,
       s.finished_at
FROM workflow_steps s
LEFT JOIN due_work d ON d.id = s.job_id
WHERE s.workflow_id = $1
ORDER BY s.seq";

/// A workflow with every step, its state and dependencies.
#[tracing::instrument(skip(pool))]
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Workflow> {
    let summary: Option<WorkflowSummary> =
        sqlx::query_as(concat!(summary_sql!(), " WHERE w.id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    let summary = summary.ok_or_else(|| Error::NotFound {
        what: "workflow",
        id: id.to_string(),
    })?;
    let jobs = sqlx::query_as(STEPS).bind(id).fetch_all(pool).await?;
    Ok(Workflow { summary, jobs })
}

/// Bench figures (`ordinaut bench workflows`): the latency from each dependent's last
/// dependency finishing to the dependent's claim, over the workflows named `prefix…`
/// (only the dependents named `step` when given): (p50, p99, max) in ms.
pub async fn activation_percentiles(
    pool: &PgPool,
    prefix: &str,
    step: Option<&str>,
) -> Result<(f64, f64, f64)> {
    // The finish's commit time when the server records commit timestamps
    // (track_commit_timestamp = on): the dependent becomes visible then, not when the
    // finishing transaction started. The claim's now() is its transaction's start,
    // which is after the commit it saw.
    let row: (Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v), percentile_cont(0.99) WITHIN GROUP (ORDER BY v), max(v)
         FROM (SELECT (extract(epoch FROM c.attempted_at - max(
                   CASE WHEN current_setting('track_commit_timestamp') = 'on'
                        THEN coalesce(pg_xact_commit_timestamp(p.xmin), p.finished_at)
                        ELSE p.finished_at END)) * 1000)::float8 AS v
               FROM workflows w
               JOIN workflow_edges e ON e.workflow_id = w.id
               JOIN workflow_steps cs ON cs.workflow_id = e.workflow_id AND cs.name = e.child
               JOIN workflow_steps ps ON ps.workflow_id = e.workflow_id AND ps.name = e.parent
               JOIN job_history c ON c.id = cs.job_id
               JOIN job_history p ON p.id = ps.job_id
               WHERE w.name LIKE $1 || '%' AND ($2::text IS NULL OR cs.name = $2)
               GROUP BY c.id, c.attempted_at) x",
    )
    .bind(prefix)
    .bind(step)
    .fetch_one(pool)
    .await?;
    Ok((
        row.0.unwrap_or(0.0),
        row.1.unwrap_or(0.0),
        row.2.unwrap_or(0.0),
    ))
}

/// Retention: deletes up to `batch` workflows that ended more than `keep_days` days ago,
/// with their steps and edges (their jobs age out of history by the same retention).
/// A workflow retried meanwhile is running again and is left alone.
pub async fn prune_finished(pool: &PgPool, keep_days: i32, batch: i64) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM workflows w
         WHERE w.id IN (SELECT x.id FROM workflows x
                        WHERE x.state <> 'running'
                          AND x.finished_at < now() - make_interval(days => $1)
                        ORDER BY x.finished_at
                        LIMIT $2)
           AND w.state <> 'running'",
    )
    .bind(keep_days)
    .bind(batch)
    .execute(pool)
    .await?
    .rows_affected())
}

/// Bench: submits `specs` (a JSON array of workflow specs) in one statement and one
/// transaction; returns how many were submitted.
pub async fn submit_batch(pool: &PgPool, specs: &Value, default_max_attempts: i32) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT count(ordinaut_enqueue_workflow(s, $2)) FROM jsonb_array_elements($1) AS s",
    )
    .bind(specs)
    .bind(default_max_attempts)
    .fetch_one(pool)
    .await
    .map_err(|e| map(e, None))
}

/// Bench figures: (finished, finished but not completed) workflows named `prefix…`.
pub async fn finished_named(pool: &PgPool, prefix: &str) -> Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state <> 'running'),
                count(*) FILTER (WHERE state NOT IN ('running', 'completed'))
         FROM workflows WHERE name LIKE $1 || '%'",
    )
    .bind(prefix)
    .fetch_one(pool)
    .await?)
}

/// Bench figures: the server's WAL position in bytes.
pub async fn wal_bytes(pool: &PgPool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8")
            .fetch_one(pool)
            .await?,
    )
}
