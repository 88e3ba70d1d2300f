//! Actions on every job matching a filter (cancel, retry, delete) and the single-job
//! delete: the store side of `/v1/jobs/bulk` and the dashboard's bulk actions.
//!
//! An action counts its jobs first ([`count_matching`]) and records the newest id it
//! counted; [`run_batch`] then works through the matching ids at or below that bound,
//! newest first, `limit` at a time, each batch one short statement of its own, so a
//! million-row action never holds a long transaction or touches jobs enqueued after
//! the operator saw the count.

use sqlx::postgres::PgArguments;
use sqlx::query::QueryScalar;
use sqlx::{Arguments, PgPool, Postgres};
use uuid::Uuid;

use super::history::JobMatch;
use super::{Error, Result, due_work};

/// The three actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Cancel live jobs: waiting ones at once, running ones by request.
    Cancel,
    /// Re-enqueue failed and cancelled jobs.
    Retry,
    /// Delete finished and waiting jobs with their attempts.
    Delete,
}

impl Action {
    /// The action's name in the API and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Cancel => "cancel",
            Action::Retry => "retry",
            Action::Delete => "delete",
        }
    }

    /// (reads live jobs, reads finished jobs, skips running jobs, finished states allowed)
    fn scope(self) -> (bool, bool, bool, Option<Vec<String>>) {
        match self {
            Action::Cancel => (true, false, false, None),
            Action::Retry => (
                false,
                true,
                false,
                Some(vec!["failed".to_owned(), "cancelled".to_owned()]),
            ),
            Action::Delete => (true, true, true, None),
        }
    }
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Action, String> {
        match s {
            "cancel" => Ok(Action::Cancel),
            "retry" => Ok(Action::Retry),
            "delete" => Ok(Action::Delete),
            other => Err(format!("{other:?} is not cancel, retry or delete")),
        }
    }
}

/// Which jobs; all optional (an empty filter matches every job the action applies to).
#[derive(Debug, Clone, Default)]
pub struct BulkFilter {
    /// Queue, kind, state and creation time.
    pub matching: JobMatch,
    /// Only these jobs (a selection), within the rest of the filter.
    pub ids: Option<Vec<Uuid>>,
}

/// What [`count_matching`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Counted {
    /// Jobs the action would touch now.
    pub matched: i64,
    /// The newest of them: the action keeps to ids at or below it.
    pub newest: Option<Uuid>,
}

/// [`filter_args`]' `$1`..`$5` (queue, kind, state, created at or after, created before,
/// each NULL = any) as a predicate on a live job, whose state is the effective one (a
/// scheduled job that is due reads as available): the one text of the filter in the
/// count and the batches. A macro so that the statements stay `&'static str`.
macro_rules! live_match_sql {
    () => {
        "($1::text IS NULL OR queue = $1)
      AND ($2::text IS NULL OR kind = $2)
      AND ($3::text IS NULL
           OR (CASE WHEN state = 'scheduled' AND run_at <= now() THEN 'available' ELSE state END) = $3)
      AND ($4::timestamptz IS NULL OR created_at >= $4)
      AND ($5::timestamptz IS NULL OR created_at < $5)"
    };
}

/// [`filter_args`]' `$1`..`$5` as a predicate on a finished job (`job_history`).
macro_rules! finished_match_sql {
    () => {
        "($1::text IS NULL OR queue = $1)
      AND ($2::text IS NULL OR kind = $2)
      AND ($3::text IS NULL OR state = $3)
      AND ($4::timestamptz IS NULL OR created_at >= $4)
      AND ($5::timestamptz IS NULL OR created_at < $5)"
    };
}

/// How many jobs an action by filter would touch, and the newest of them (the bound the
/// action then keeps to). `$6`/`$7`: which tables the action reads; `$8`: skip running
/// live jobs; `$9`: allowed finished states (NULL = all); `$10`: only ids at or below it
/// (the bound of an earlier count), NULL = all; `$11`: only these ids (selected jobs),
/// NULL = all.
const COUNT: &str = concat!(
    "\
WITH live AS (
    SELECT id FROM due_work
    WHERE $6
      AND ",
    live_match_sql!(),
    "
      AND (NOT $8 OR state <> 'running')
      AND ($10::uuid IS NULL OR id <= $10)
      AND ($11::uuid[] IS NULL OR id = ANY($11))
),
finished AS (
    SELECT id FROM job_history
    WHERE $7
      AND ",
    finished_match_sql!(),
    "
      AND ($9::text[] IS NULL OR state = ANY($9))
      AND ($10::uuid IS NULL OR id <= $10)
      AND ($11::uuid[] IS NULL OR id = ANY($11))
),
-- uuid has no max() aggregate: the newest id is the first in id order.
jobs AS (
    SELECT id FROM live UNION ALL SELECT id FROM finished
)
SELECT (SELECT count(*) FROM jobs) AS matched,
       (SELECT id FROM jobs ORDER BY id DESC LIMIT 1) AS newest"
);

/// Counts the jobs `action` would touch (at or below `bound` when given). Scans due_work and the job_history partitions
/// with the filter (sequentially without a queue/kind index; see docs/ARCHITECTURE.md).
pub async fn count_matching(
    pool: &PgPool,
    action: Action,
    f: &BulkFilter,
    bound: Option<Uuid>,
) -> Result<Counted> {
    let (live, finished, skip_running, states) = action.scope();
    Ok(sqlx::query_as_with(COUNT, filter_args(f)?)
        .bind(live)
        .bind(finished)
        .bind(skip_running)
        .bind(states)
        .bind(bound)
        .bind(&f.ids)
        .fetch_one(pool)
        .await?)
}

/// Where a bulk action is: on each side, ids below `after` are still to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Live jobs (due_work).
    pub live: Side,
    /// Finished jobs (job_history).
    pub finished: Side,
}

/// Where a bulk action is on one side, live or finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Side {
    /// Jobs below this id remain (None: from the bound); none when `done`.
    pub after: Option<Uuid>,
    /// All jobs of this side are done.
    pub done: bool,
}

impl Cursor {
    /// Nothing done yet.
    pub fn start() -> Cursor {
        Cursor::default()
    }

    /// Every matching job has been handled.
    pub fn is_done(&self) -> bool {
        self.live.done && self.finished.done
    }
}

/// A batch of one side's jobs matching the filter, newest first: at or below the newest
/// id counted when the action was confirmed (`$6`), so jobs enqueued after the count are
/// never touched, below the side's keyset cursor (`$7`), among the selected ids (`$10`,
/// NULL = all), at most `$9`; `$8` is the side's own restriction. Both sides are this
/// one statement over their own table and filter.
macro_rules! batch_sql {
    (FROM $table:literal WHERE $matching:ident AND $only:literal) => {
        concat!(
            "SELECT id FROM ",
            $table,
            "
    WHERE ",
            $matching!(),
            "
      AND ",
            $only,
            "
      AND id <= $6
      AND ($7::uuid IS NULL OR id < $7)
      AND ($10::uuid[] IS NULL OR id = ANY($10))
ORDER BY id DESC
LIMIT $9"
        )
    };
}

/// A batch of live jobs; `$8`: skip running jobs.
const LIVE_IDS: &str =
    batch_sql!(FROM "due_work" WHERE live_match_sql AND "(NOT $8 OR state <> 'running')");

/// A batch of finished jobs; `$8`: the states allowed (retry takes failed and cancelled
/// only), NULL = all.
const FINISHED_IDS: &str = batch_sql!(
    FROM "job_history" WHERE finished_match_sql AND "($8::text[] IS NULL OR state = ANY($8))"
);

/// Runs one batch of up to `limit` jobs of `action` over `f`, at or below `bound`.
/// Returns how many jobs it changed and where to go on from.
#[tracing::instrument(skip_all, fields(action = action.as_str(), limit))]
pub async fn run_batch(
    pool: &PgPool,
    action: Action,
    f: &BulkFilter,
    bound: Uuid,
    cursor: Cursor,
    limit: i64,
) -> Result<(u64, Cursor)> {
    let (live, finished, skip_running, states) = action.scope();
    let mut next = cursor;
    next.live.done |= !live;
    next.finished.done |= !finished;
    let batch = Batch {
        pool,
        action,
        limit,
        selected: &f.ids,
    };
    if !next.live.done {
        let ids = side_ids(LIVE_IDS, f, bound, next.live)?;
        let changed = batch.run(ids.bind(skip_running), &mut next.live).await?;
        return Ok((changed, next));
    }
    if !next.finished.done {
        let ids = side_ids(FINISHED_IDS, f, bound, next.finished)?;
        let changed = batch.run(ids.bind(states), &mut next.finished).await?;
        return Ok((changed, next));
    }
    Ok((0, next))
}

/// The filter as the first parameters of every bulk statement (`$1`..`$5`: queue,
/// kind, state, created after, created before; see `live_match_sql!`); the caller
/// binds the rest.
fn filter_args(f: &BulkFilter) -> Result<PgArguments> {
    let mut args = PgArguments::default();
    Arguments::add(&mut args, &f.matching.queue).map_err(sqlx::Error::Encode)?;
    Arguments::add(&mut args, &f.matching.kind).map_err(sqlx::Error::Encode)?;
    Arguments::add(&mut args, &f.matching.state).map_err(sqlx::Error::Encode)?;
    Arguments::add(&mut args, f.matching.created_after).map_err(sqlx::Error::Encode)?;
    Arguments::add(&mut args, f.matching.created_before).map_err(sqlx::Error::Encode)?;
    Ok(args)
}

/// One side's id statement with the filter, the bound and the side's cursor bound
/// (`$1`..`$7`, the same in [`LIVE_IDS`] and [`FINISHED_IDS`]); the caller
/// binds `$8`.
fn side_ids<'q>(
    sql: &'static str,
    f: &BulkFilter,
    bound: Uuid,
    side: Side,
) -> Result<QueryScalar<'q, Postgres, Uuid, PgArguments>> {
    Ok(sqlx::query_scalar_with(sql, filter_args(f)?)
        .bind(bound)
        .bind(side.after))
}

/// What every batch of one [`run_batch`] call shares.
struct Batch<'a> {
    pool: &'a PgPool,
    action: Action,
    limit: i64,
    selected: &'a Option<Vec<Uuid>>,
}

impl Batch<'_> {
    /// Binds the side statement's last two parameters (`$9` limit, `$10` selected ids),
    /// applies the action to the next batch of ids and moves `side` past it (a short
    /// batch ends the side); the jobs changed.
    async fn run(
        &self,
        ids: QueryScalar<'_, Postgres, Uuid, PgArguments>,
        side: &mut Side,
    ) -> Result<u64> {
        let ids: Vec<Uuid> = ids
            .bind(self.limit)
            .bind(self.selected)
            .fetch_all(self.pool)
            .await?;
        side.done = (ids.len() as i64) < self.limit;
        side.after = ids.last().copied().or(side.after);
        apply(self.pool, self.action, &ids).await
    }
}

async fn apply(pool: &PgPool, action: Action, ids: &[Uuid]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    match action {
        Action::Cancel => cancel_many(pool, ids).await,
        Action::Retry => retry_many(pool, ids).await,
        Action::Delete => delete_many(pool, ids).await,
    }
}

/// Cancels the live jobs among `ids`: waiting ones move to history as cancelled, running
/// ones are flagged and their workers told (as due_work::cancel does for one).
pub async fn cancel_many(pool: &PgPool, ids: &[Uuid]) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let waiting: Vec<Uuid> = sqlx::query_scalar(due_work::CANCEL_WAITING_MANY)
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
    let running: Vec<String> = sqlx::query_scalar(due_work::REQUEST_CANCEL_MANY)
        .bind(ids)
        .bind(false)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((waiting.len() + running.len()) as u64)
}

/// Re-enqueues the failed and cancelled jobs among `ids`. When a live job holds one's
/// unique key the batch falls back to one job at a time, skipping those refused.
pub async fn retry_many(pool: &PgPool, ids: &[Uuid]) -> Result<u64> {
    let result = sqlx::query_scalar::<_, Uuid>(due_work::RETRY_MANY)
        .bind(ids)
        .fetch_all(pool)
        .await;
    match result {
        Ok(done) => Ok(done.len() as u64),
        Err(sqlx::Error::Database(db)) if db.constraint() == Some("due_work_unique_key_idx") => {
            let mut done = 0;
            for id in ids {
                match due_work::retry(pool, *id).await {
                    Ok(()) => done += 1,
                    Err(Error::Conflict(_) | Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(done)
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes the finished and waiting jobs among `ids` with their attempts; running jobs
/// stay.
pub async fn delete_many(pool: &PgPool, ids: &[Uuid]) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(include_str!("sql/delete_many.sql"))
        .bind(ids)
        .fetch_one(pool)
        .await?;
    Ok(n as u64)
}

/// What deleting one job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteResult {
    /// Gone, with its attempts.
    Deleted,
    /// It is running: cancel it first.
    Running,
}

/// Deletes one finished or waiting job with its attempts. A workflow step's job is kept
/// while it is live or waits for its dependencies (its dependents wait for its outcome):
/// refused with a conflict naming the workflow.
pub async fn delete_job(pool: &PgPool, id: Uuid) -> Result<DeleteResult> {
    if delete_many(pool, &[id]).await? == 1 {
        return Ok(DeleteResult::Deleted);
    }
    let live: Option<(String, Option<Uuid>)> =
        sqlx::query_as("SELECT state, workflow_id FROM due_work WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    match live {
        Some((state, Some(wf))) if state != "running" => Err(Error::Conflict(format!(
            "job {id} is a live step of workflow {wf}; cancel it first"
        ))),
        Some(_) => Ok(DeleteResult::Running),
        None => match super::workflows::step_of_job(pool, id).await? {
            Some(step) if step.state == "waiting" => Err(Error::Conflict(format!(
                "job {id} is step {} of workflow {}, waiting for its dependencies; cancel it first",
                step.step, step.workflow_id
            ))),
            Some(step) => Err(Error::Conflict(format!(
                "job {id} is step {} of workflow {}, which ended {} without running: it has no \
                 job to delete and goes with its workflow",
                step.step, step.workflow_id, step.state
            ))),
            None => Err(Error::NotFound {
                what: "job",
                id: id.to_string(),
            }),
        },
    }
}

const RUN_NOW: &str = "\
UPDATE due_work SET run_at = now()
WHERE id = $1 AND state = 'scheduled' AND run_at > now()
RETURNING pg_notify(ordinaut_channel('ordinaut_enqueued'), queue)::text";

/// Makes a job waiting for a future run_at due now, and wakes the queue's workers (the
/// enqueue trigger only fires on insert). Primary-key update; false when the job is not
/// waiting for a future time.
pub async fn run_now(pool: &PgPool, id: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar::<_, String>(RUN_NOW)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .is_some())
}
