-- Cancels the waiting jobs among $1 at once: moved to history as cancelled. Used by
-- due_work::cancel (one id) and bulk::cancel_many. Running ones are left to
-- request_cancel_many.sql.
WITH c AS (
    DELETE FROM due_work WHERE id = ANY($1::uuid[]) AND state <> 'running'
    RETURNING id, queue, kind, payload, priority, attempt, max_attempts, unique_key, schedule_id,
              scheduled_for, metadata, run_at, created_at, attempted_at, concurrency_key, workflow_id
)
INSERT INTO job_history
    (id, queue, kind, payload, priority, state, attempt, max_attempts, unique_key, schedule_id,
     scheduled_for, metadata, output, last_error, run_at, created_at, attempted_at, finished_at,
     concurrency_key, workflow_id)
SELECT id, queue, kind, payload, priority, 'cancelled', attempt, max_attempts, unique_key, schedule_id,
       scheduled_for, metadata, NULL, 'cancelled by operator', run_at, created_at, attempted_at, now(),
       concurrency_key, workflow_id
FROM c
RETURNING id
