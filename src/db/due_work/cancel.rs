//! Cancelling a live job and retrying a finished one; their statements are shared with
//! `bulk`.

use sqlx::PgPool;
use uuid::Uuid;

use crate::db::{Error, Result};
use crate::model::JobState;

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelResult {
    /// The job was waiting and is now cancelled (in history).
    Cancelled,
    /// The job is running; its worker was told to stop it.
    Requested,
    /// The job had already finished in this state.
    AlreadyFinished(JobState),
}

const LOCK_LIVE: &str = "SELECT state FROM due_work WHERE id = $1 FOR UPDATE";

/// Moves the waiting (not running) jobs among `$1` to history as cancelled; returns
/// their ids. Shared by [`cancel`] and `bulk::cancel_many`.
pub(in crate::db) const CANCEL_WAITING_MANY: &str = include_str!("../sql/cancel_waiting_many.sql");

/// Flags the running jobs among `$1` and notifies their workers (`$2`: notify those
/// already flagged again). Shared by [`cancel`] and `bulk::cancel_many`.
pub(in crate::db) const REQUEST_CANCEL_MANY: &str = include_str!("../sql/request_cancel_many.sql");

const HISTORY_STATE: &str = "SELECT state FROM job_history WHERE id = $1 LIMIT 1";

/// Cancels a job: a waiting one at once (moved to history), a running one by flagging it
/// and notifying the install's `ordinaut_cancel` so its worker stops it within a second;
/// a workflow step still waiting for its dependencies ends cancelled without running
/// (its dependents follow their edges' policies, as for a live step's job).
///
/// Locks the live row first (FOR UPDATE, by primary key) and then branches on its
/// state, so a concurrent rescue or finish cannot move it between the checks: a live
/// job is always cancelled or flagged, never reported as missing. The rescuer skips the
/// locked row (SKIP LOCKED); a finish waits for this short transaction. A waiting step
/// activated between the reads is found live on the next round (a step is activated
/// once, so two rounds suffice).
#[tracing::instrument(skip(pool))]
pub async fn cancel(pool: &PgPool, id: Uuid) -> Result<CancelResult> {
    for _ in 0..3 {
        let mut tx = pool.begin().await?;
        let live: Option<String> = sqlx::query_scalar(LOCK_LIVE)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        match live.as_deref() {
            Some("running") => {
                sqlx::query_scalar::<_, String>(REQUEST_CANCEL_MANY)
                    .bind([id].as_slice())
                    .bind(true)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(CancelResult::Requested);
            }
            Some(_) => {
                sqlx::query_scalar::<_, Uuid>(CANCEL_WAITING_MANY)
                    .bind([id].as_slice())
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(CancelResult::Cancelled);
            }
            None => {}
        }
        // Not live: finished (its history row committed before our read), a workflow
        // step waiting or ended without running, or unknown.
        let state: Option<String> = sqlx::query_scalar(HISTORY_STATE)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(state) = state.and_then(|s| s.parse::<JobState>().ok()) {
            tx.commit().await?;
            return Ok(CancelResult::AlreadyFinished(state));
        }
        let step = crate::db::workflows::cancel_waiting_step(&mut tx, id).await?;
        tx.commit().await?;
        match step.as_ref().map(|(c, s)| (*c, s.as_str())) {
            Some((true, _)) => return Ok(CancelResult::Cancelled),
            // Activated meanwhile: its job is live now.
            Some((false, "enqueued" | "waiting")) => continue,
            Some((false, "completed")) => {
                return Ok(CancelResult::AlreadyFinished(JobState::Completed));
            }
            Some((false, "failed")) => return Ok(CancelResult::AlreadyFinished(JobState::Failed)),
            // Cancelled or skipped without running.
            Some((false, _)) => return Ok(CancelResult::AlreadyFinished(JobState::Cancelled)),
            None => {
                return Err(Error::NotFound {
                    what: "job",
                    id: id.to_string(),
                });
            }
        }
    }
    Err(Error::Conflict(format!(
        "job {id} kept changing state; cancel again"
    )))
}

/// Re-enqueues the failed and cancelled jobs among `$1` with a fresh budget of
/// attempts; returns their ids. Shared by [`retry`] and `bulk::retry_many`.
pub(in crate::db) const RETRY_MANY: &str = include_str!("../sql/retry_many.sql");

/// Re-enqueues a failed or cancelled job with a fresh budget of attempts. Its attempt
/// records stay. Refused if another live job holds its unique key.
#[tracing::instrument(skip(pool))]
pub async fn retry(pool: &PgPool, id: Uuid) -> Result<()> {
    let mut tx = pool.begin().await?;
    let result = sqlx::query_scalar::<_, Uuid>(RETRY_MANY)
        .bind([id].as_slice())
        .fetch_optional(&mut *tx)
        .await;
    match result {
        Ok(Some(_)) => {
            tx.commit().await?;
            Ok(())
        }
        Ok(None) => {
            let live: Option<String> =
                sqlx::query_scalar("SELECT state FROM due_work WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let finished: Option<String> = sqlx::query_scalar(HISTORY_STATE)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            match (live, finished) {
                (Some(state), _) => Err(Error::Conflict(format!(
                    "job {id} is still live ({state}); only failed or cancelled jobs can be retried"
                ))),
                (None, Some(state)) => Err(Error::Conflict(format!(
                    "job {id} is {state}; only failed or cancelled jobs can be retried"
                ))),
                (None, None) => Err(match crate::db::workflows::step_of_job(pool, id).await? {
                    Some(step) if step.state == "waiting" => Error::Conflict(format!(
                        "job {id} is waiting: step {} of workflow {} has dependencies that have \
                         not ended; only failed or cancelled jobs can be retried",
                        step.step, step.workflow_id
                    )),
                    Some(step) => Error::Conflict(format!(
                        "job {id} never ran: step {} of workflow {} ended {} without running; \
                         retry the workflow to run it",
                        step.step, step.workflow_id, step.state
                    )),
                    None => Error::NotFound {
                        what: "job",
                        id: id.to_string(),
                    },
                }),
            }
        }
        Err(sqlx::Error::Database(db)) if db.constraint() == Some("due_work_unique_key_idx") => {
            Err(Error::Conflict(format!(
                "job {id} cannot be retried: another live job holds its unique key"
            )))
        }
        Err(e) => Err(e.into()),
    }
}
