-- Re-enqueues the failed or cancelled jobs among $1 with a fresh budget of attempts
-- (attempt + max_attempts: a fresh budget on top of those already spent). Used by
-- due_work::retry (one id) and bulk::retry_many. A unique key held by a live job aborts the
-- statement (due_work_unique_key_idx); the caller then retries one by one.
WITH h AS (
    DELETE FROM job_history WHERE id = ANY($1::uuid[]) AND state IN ('failed', 'cancelled')
    RETURNING id, queue, kind, payload, priority, attempt, max_attempts, unique_key, schedule_id,
              scheduled_for, metadata, last_error, created_at, concurrency_key, workflow_id
)
INSERT INTO due_work
    (id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, unique_key,
     schedule_id, scheduled_for, metadata, last_error, created_at, concurrency_key, workflow_id)
SELECT id, queue, kind, payload, priority, now(), 'available', attempt,
       attempt + max_attempts, unique_key, schedule_id, scheduled_for, metadata, last_error, created_at,
       concurrency_key, workflow_id
FROM h
RETURNING id
