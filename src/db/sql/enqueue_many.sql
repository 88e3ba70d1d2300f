-- Inserts a batch of jobs in one statement (arrays + unnest). Rows whose unique_key
-- matches a live job are skipped (ON CONFLICT on due_work_unique_key_idx); the caller
-- looks those up. max_attempts: the job's, else its queue's, else $12 (config).
-- The statement-level trigger sends one NOTIFY per queue with runnable work.
INSERT INTO due_work AS d
    (id, queue, kind, payload, priority, run_at, state, max_attempts, unique_key,
     timeout_ms, metadata, schedule_id, scheduled_for, concurrency_key)
SELECT i.id, i.queue, i.kind, i.payload, i.priority,
       coalesce(i.run_at, now()),
       CASE WHEN i.run_at > now() THEN 'scheduled' ELSE 'available' END,
       coalesce(i.max_attempts, q.max_attempts, $12),
       i.unique_key, i.timeout_ms, i.metadata, i.schedule_id, i.scheduled_for, i.concurrency_key
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int2[], $6::timestamptz[],
            $7::int4[], $8::text[], $9::int8[], $10::jsonb[], $11::uuid[], $13::timestamptz[],
            $14::text[])
     AS i(id, queue, kind, payload, priority, run_at, max_attempts, unique_key, timeout_ms,
          metadata, schedule_id, scheduled_for, concurrency_key)
LEFT JOIN queues q ON q.name = i.queue
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
RETURNING d.id
