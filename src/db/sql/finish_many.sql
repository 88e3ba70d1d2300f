-- Records the outcome of a batch of attempts by worker $1, in one statement:
--   completed / failed / cancelled: the row moves from due_work to job_history
--     (completed rows are dropped instead when the queue has keep_completed = false);
--   retry: back to 'scheduled' at next_run_at, the attempt spent;
--   snoozed: back to 'scheduled' at next_run_at, the attempt given back;
--   interrupted (shutdown): back to 'available' now, the attempt given back.
-- Every transition is guarded by lease_owner = $1 (due_work_lease_consistent makes a
-- non-null lease_owner mean state = 'running'): a job whose lease was lost (rescued,
-- cancelled) is not touched and is missing from the result.
-- The guard deliberately does not repeat state = 'running': that predicate matches
-- due_work_running_idx, and the planner then scanned every running row once per input
-- row (1,000-job batch: 293 ms) instead of one primary-key lookup per input row (4 ms).
-- One job_attempts row per attempt is written in the same statement, except for a
-- completed attempt, which its job_history row (worker_id, attempted_at, log) records.
WITH input AS (
    SELECT *
    FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::jsonb[], $7::text[])
         AS i(id, outcome, next_run_at, error, output, log)
),
requeued AS (
    UPDATE due_work d
    SET state = CASE WHEN i.outcome = 'interrupted' THEN 'available' ELSE 'scheduled' END,
        run_at = coalesce(i.next_run_at, now()),
        attempt = CASE WHEN i.outcome IN ('snoozed', 'interrupted') THEN d.attempt - 1 ELSE d.attempt END,
        lease_owner = NULL,
        lease_expires_at = NULL,
        last_error = coalesce(i.error, d.last_error)
    FROM input i
    WHERE d.id = i.id
      AND i.outcome IN ('retry', 'snoozed', 'interrupted')
      AND d.lease_owner = $1
    RETURNING d.id,
              CASE WHEN i.outcome IN ('snoozed', 'interrupted') THEN d.attempt + 1 ELSE d.attempt END AS ran_attempt,
              d.attempted_at, i.outcome, i.error, i.log
),
finished AS (
    DELETE FROM due_work d
    USING input i
    WHERE d.id = i.id
      AND i.outcome IN ('completed', 'failed', 'cancelled')
      AND d.lease_owner = $1
    RETURNING d.id, d.queue, d.kind, d.payload, d.priority, d.attempt, d.max_attempts,
              d.unique_key, d.schedule_id, d.scheduled_for, d.metadata, d.run_at,
              d.created_at, d.attempted_at, d.last_error, d.concurrency_key,
              i.outcome, i.error, i.output, i.log
),
history AS (
    INSERT INTO job_history
        (id, queue, kind, payload, priority, state, attempt, max_attempts, unique_key,
         schedule_id, scheduled_for, metadata, output, last_error, run_at, created_at,
         attempted_at, finished_at, worker_id, log, concurrency_key)
    SELECT f.id, f.queue, f.kind, f.payload, f.priority, f.outcome, f.attempt, f.max_attempts,
           f.unique_key, f.schedule_id, f.scheduled_for, f.metadata, f.output,
           CASE WHEN f.outcome = 'completed' THEN NULL ELSE coalesce(f.error, f.last_error) END,
           f.run_at, f.created_at, f.attempted_at, now(), $1,
           CASE WHEN f.outcome = 'completed' THEN f.log END, f.concurrency_key
    FROM finished f
    WHERE f.outcome <> 'completed'
       OR coalesce((SELECT q.keep_completed FROM queues q WHERE q.name = f.queue), true)
),
attempts AS (
    INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error, log)
    -- A completed attempt is recorded by its job_history row instead.
    SELECT f.id, f.attempt, $1, f.attempted_at, now(), f.outcome, f.error, f.log FROM finished f
    WHERE f.outcome <> 'completed'
    UNION ALL
    SELECT r.id, r.ran_attempt, $1, r.attempted_at, now(), r.outcome, r.error, r.log FROM requeued r
)
SELECT id FROM finished
UNION ALL
SELECT id FROM requeued
