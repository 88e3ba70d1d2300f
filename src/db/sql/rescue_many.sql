-- Hands back running jobs whose worker is dead ($1: worker ids whose advisory lock is
-- gone) or whose lease expired, up to $4 rows per call. Each counts as a failed
-- attempt ('lost'): retried (at once for a dead worker, with backoff, the queue's else
-- $2/$3 ms, for an expired lease) while attempts remain, else moved to job_history as failed; a job whose cancel was requested is
-- moved to history as cancelled. SKIP LOCKED lets several rescuers run at once.
-- Uses due_work_running_idx (running rows only).
WITH victims AS (
    SELECT d.id, d.attempt, d.max_attempts, d.cancel_requested, d.lease_owner,
           d.lease_owner = ANY($1::uuid[]) AS owner_dead,
           coalesce(q.backoff_base_ms, $2)::float8 AS base_ms,
           coalesce(q.backoff_max_ms, $3)::float8 AS max_ms
    FROM due_work d
    LEFT JOIN queues q ON q.name = d.queue
    WHERE d.state = 'running'
      AND (d.lease_owner = ANY($1::uuid[]) OR d.lease_expires_at < now())
    ORDER BY d.id
    LIMIT $4
    FOR UPDATE OF d SKIP LOCKED
),
requeued AS (
    UPDATE due_work d
    -- A dead worker's job runs again at once: the process died, not the job (its
    -- attempt is still spent, so a job that kills its worker cannot loop for ever). An
    -- expired lease may be a job hanging its worker: that one waits out the backoff.
    SET state = CASE WHEN v.owner_dead THEN 'available' ELSE 'scheduled' END,
        lease_owner = NULL,
        lease_expires_at = NULL,
        -- The exponent is clamped: 2^(attempt-1) overflows float8 from attempt 1025
        -- (sooner times a large base), and one such row would make the whole statement,
        -- and so every rescue, fail. 2^60 times any base the API accepts stays finite,
        -- and is far past any cap anyway.
        -- A dead worker's job keeps its place in line (its old run_at): a backlog
        -- must not push it back behind jobs enqueued after it.
        run_at = CASE WHEN v.owner_dead THEN least(d.run_at, now()) ELSE now() + make_interval(secs => least(
            v.base_ms * power(2, least(greatest(v.attempt, 1) - 1, 60)) * (0.75 + random() * 0.5),
            v.max_ms) / 1000.0) END,
        last_error = CASE WHEN v.owner_dead THEN 'worker died while running the job'
                          ELSE 'lease expired (worker stopped heartbeating)' END
    FROM victims v
    WHERE d.id = v.id AND NOT v.cancel_requested AND v.attempt < v.max_attempts
    RETURNING d.id, d.attempt, v.lease_owner AS worker_id, d.attempted_at, d.last_error, 'lost'::text AS outcome
),
finished AS (
    DELETE FROM due_work d
    USING victims v
    WHERE d.id = v.id AND (v.cancel_requested OR v.attempt >= v.max_attempts)
    RETURNING d.id, d.queue, d.kind, d.payload, d.priority, d.attempt, d.max_attempts,
              d.unique_key, d.schedule_id, d.scheduled_for, d.metadata, d.run_at,
              d.created_at, d.attempted_at, d.concurrency_key, d.workflow_id, v.lease_owner AS worker_id,
              CASE WHEN v.cancel_requested THEN 'cancelled' ELSE 'failed' END AS final_state,
              CASE WHEN v.cancel_requested THEN 'cancelled by operator'
                   WHEN v.owner_dead THEN 'worker died while running the job'
                   ELSE 'lease expired (worker stopped heartbeating)' END AS error
),
history AS (
    INSERT INTO job_history
        (id, queue, kind, payload, priority, state, attempt, max_attempts, unique_key,
         schedule_id, scheduled_for, metadata, output, last_error, run_at, created_at,
         attempted_at, finished_at, worker_id, concurrency_key, workflow_id)
    SELECT f.id, f.queue, f.kind, f.payload, f.priority, f.final_state, f.attempt, f.max_attempts,
           f.unique_key, f.schedule_id, f.scheduled_for, f.metadata, NULL, f.error,
           f.run_at, f.created_at, f.attempted_at, now(), f.worker_id, f.concurrency_key, f.workflow_id
    FROM finished f
),
attempts AS (
    INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error, log)
    SELECT f.id, f.attempt, f.worker_id, f.attempted_at, now(),
           CASE WHEN f.final_state = 'cancelled' THEN 'cancelled' ELSE 'lost' END, f.error, NULL
    FROM finished f
    UNION ALL
    SELECT r.id, r.attempt, r.worker_id, r.attempted_at, now(), r.outcome, r.last_error, NULL FROM requeued r
)
SELECT (SELECT count(*) FROM requeued) AS retried,
       (SELECT count(*) FROM finished WHERE final_state = 'failed') AS failed,
       (SELECT count(*) FROM finished WHERE final_state = 'cancelled') AS cancelled
