-- Records the outcome of a batch of attempts by worker $1, in one statement:
--   completed / failed / cancelled: the row moves from due_work to job_history
--     (completed rows are dropped instead when the queue has keep_completed = false);
--   retry: back to 'scheduled' at next_run_at, the attempt spent;
--   snoozed: back to 'scheduled' at next_run_at, the attempt given back while the job
--     has snoozed fewer than $9 times; past that budget a snooze counts as a failed
--     attempt ('retry', or 'failed' when no attempts remain), so a target that always
--     asks to come back later is not called forever;
--   interrupted (shutdown): back to 'available' now, the attempt given back.
-- A job whose cancel was requested is never requeued: a retry, snooze or interrupted
-- attempt of it moves to job_history as 'cancelled' (as the rescuer does), so a cancel
-- that lands while the attempt is ending is not lost.
-- Fencing: every transition is guarded by lease_owner = $1 AND attempt = the attempt
-- the outcome belongs to (due_work_lease_consistent makes a non-null lease_owner mean
-- state = 'running'). A job whose lease was lost (rescued, cancelled) or that was
-- claimed again since (a newer attempt, even by the same owner) is not touched and is
-- missing from the result.
-- The guard deliberately does not repeat state = 'running': that predicate matches
-- due_work_running_idx, and the planner then scanned every running row once per input
-- row (1,000-job batch: 293 ms) instead of one primary-key lookup per input row (4 ms).
-- Completed, failed and cancelled outcomes cost one primary-key lookup each (`ended`);
-- retry, snoozed and interrupted ones two (`requeued` and `stopped`), which is why the
-- deletes are split by the input's outcome: the hot completed path pays nothing extra.
-- One job_attempts row per attempt is written in the same statement, except for a
-- completed attempt, which its job_history row (worker_id, attempted_at, log) records.
-- Returns each applied (id, attempt) with the outcome actually stored.
WITH input AS (
    SELECT *
    FROM unnest($2::uuid[], $3::int4[], $4::text[], $5::timestamptz[], $6::text[], $7::jsonb[], $8::text[])
         AS i(id, attempt, outcome, next_run_at, error, output, log)
),
requeued AS (
    UPDATE due_work d
    SET state = CASE WHEN i.outcome = 'interrupted' THEN 'available' ELSE 'scheduled' END,
        run_at = coalesce(i.next_run_at, now()),
        -- d.snoozes here is the value before this update.
        attempt = CASE WHEN i.outcome = 'interrupted' OR (i.outcome = 'snoozed' AND d.snoozes < $9::int4)
                       THEN d.attempt - 1 ELSE d.attempt END,
        snoozes = d.snoozes + CASE WHEN i.outcome = 'snoozed' THEN 1 ELSE 0 END,
        lease_owner = NULL,
        lease_expires_at = NULL,
        last_error = coalesce(CASE WHEN i.outcome = 'snoozed' AND d.snoozes >= $9::int4
                                   THEN 'snooze budget of ' || $9::int4::text || ' spent; counted as a failed attempt: ' || i.error
                                   ELSE i.error END,
                              d.last_error)
    FROM input i
    WHERE d.id = i.id
      AND i.outcome IN ('retry', 'snoozed', 'interrupted')
      AND d.lease_owner = $1
      AND d.attempt = i.attempt
      AND NOT d.cancel_requested
      AND NOT (i.outcome = 'snoozed' AND d.snoozes >= $9::int4 AND d.attempt >= d.max_attempts)
    -- In RETURNING, d is the updated row: an over-budget snooze kept its attempt.
    RETURNING d.id, i.attempt AS ran_attempt, d.attempted_at,
              CASE WHEN i.outcome = 'snoozed' AND d.attempt = i.attempt THEN 'retry' ELSE i.outcome END AS outcome,
              CASE WHEN i.outcome = 'snoozed' AND d.attempt = i.attempt THEN d.last_error ELSE i.error END AS error,
              i.log
),
ended AS (
    DELETE FROM due_work d
    USING input i
    WHERE d.id = i.id
      AND i.outcome IN ('completed', 'failed', 'cancelled')
      AND d.lease_owner = $1
      AND d.attempt = i.attempt
    RETURNING d.id, d.queue, d.kind, d.payload, d.priority, d.attempt, d.max_attempts,
              d.unique_key, d.schedule_id, d.scheduled_for, d.metadata, d.run_at,
              d.created_at, d.attempted_at, d.last_error, d.concurrency_key, d.workflow_id,
              i.outcome, i.error, i.output, i.log
),
stopped AS (
    -- Retry, snooze or interrupted attempts that end the job: its cancel was
    -- requested, or an over-budget snooze had no attempts left.
    DELETE FROM due_work d
    USING input i
    WHERE d.id = i.id
      AND i.outcome IN ('retry', 'snoozed', 'interrupted')
      AND d.lease_owner = $1
      AND d.attempt = i.attempt
      AND (d.cancel_requested
           OR (i.outcome = 'snoozed' AND d.snoozes >= $9::int4 AND d.attempt >= d.max_attempts))
    RETURNING d.id, d.queue, d.kind, d.payload, d.priority, d.attempt, d.max_attempts,
              d.unique_key, d.schedule_id, d.scheduled_for, d.metadata, d.run_at,
              d.created_at, d.attempted_at, d.last_error, d.concurrency_key, d.workflow_id,
              CASE WHEN d.cancel_requested THEN 'cancelled' ELSE 'failed' END AS outcome,
              CASE WHEN d.cancel_requested
                   THEN 'cancelled by operator (the attempt ended as ' || i.outcome || coalesce(': ' || i.error, '') || ')'
                   ELSE 'snooze budget of ' || $9::int4::text || ' spent and no attempts left: ' || coalesce(i.error, 'snoozed')
              END AS error,
              NULL::jsonb AS output, i.log
),
finished AS (
    SELECT * FROM ended
    UNION ALL
    SELECT * FROM stopped
),
history AS (
    INSERT INTO job_history
        (id, queue, kind, payload, priority, state, attempt, max_attempts, unique_key,
         schedule_id, scheduled_for, metadata, output, last_error, run_at, created_at,
         attempted_at, finished_at, worker_id, log, concurrency_key, workflow_id)
    SELECT f.id, f.queue, f.kind, f.payload, f.priority, f.outcome, f.attempt, f.max_attempts,
           f.unique_key, f.schedule_id, f.scheduled_for, f.metadata, f.output,
           CASE WHEN f.outcome = 'completed' THEN NULL ELSE coalesce(f.error, f.last_error) END,
           f.run_at, f.created_at, f.attempted_at, now(), $1,
           CASE WHEN f.outcome = 'completed' THEN f.log END, f.concurrency_key, f.workflow_id
    FROM finished f
    WHERE f.outcome <> 'completed'
       -- A workflow step's completion is always recorded: it settles its dependents
       -- (migration 0016's trigger on job_history).
       OR f.workflow_id IS NOT NULL
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
SELECT id, attempt, outcome FROM finished
UNION ALL
SELECT id, ran_attempt, outcome FROM requeued
