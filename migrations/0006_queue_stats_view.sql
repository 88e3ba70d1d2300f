-- Per-queue live counts, settings and flow-control use: the view behind `ordinaut
-- queues` and GET /v1/queues, public surface for psql (`SELECT * FROM queue_stats`).
CREATE VIEW queue_stats AS
WITH live AS (
    SELECT queue,
           count(*) FILTER (WHERE state <> 'running' AND run_at <= now()) AS available,
           count(*) FILTER (WHERE state <> 'running' AND run_at > now()) AS scheduled,
           count(*) FILTER (WHERE state = 'running') AS running,
           extract(epoch FROM now() - min(run_at) FILTER (WHERE state <> 'running' AND run_at <= now()))::float8
               AS oldest_wait_seconds
    FROM due_work GROUP BY queue
),
failed AS (
    SELECT queue, count(*) AS failed_recently
    FROM job_history
    WHERE state = 'failed' AND finished_at > now() - interval '24 hours'
    GROUP BY queue
),
names AS (
    SELECT queue AS name FROM live UNION SELECT queue FROM failed UNION SELECT name FROM queues
)
SELECT n.name,
       coalesce(q.paused, false) AS paused,
       coalesce(l.available, 0) AS available,
       coalesce(l.scheduled, 0) AS scheduled,
       coalesce(l.running, 0) AS running,
       coalesce(f.failed_recently, 0) AS failed_recently,
       l.oldest_wait_seconds,
       q.max_attempts, q.timeout_ms, q.backoff_base_ms, q.backoff_max_ms,
       coalesce(q.keep_completed, true) AS keep_completed,
       q.concurrency_limit, q.rate_limit, coalesce(q.rate_period_ms, 1000) AS rate_period_ms, q.rate_burst,
       CASE WHEN q.rate_limit IS NOT NULL THEN
           least(coalesce(q.rate_burst, q.rate_limit)::float8,
                 coalesce(q.rate_tokens, coalesce(q.rate_burst, q.rate_limit)::float8)
                 + extract(epoch FROM clock_timestamp() - coalesce(q.rate_updated_at, clock_timestamp()))
                   * 1000.0 * q.rate_limit / q.rate_period_ms)
       END AS rate_tokens,
       q.key_concurrency
FROM names n
LEFT JOIN live l ON l.queue = n.name
LEFT JOIN failed f ON f.queue = n.name
LEFT JOIN queues q ON q.name = n.name
ORDER BY n.name;
