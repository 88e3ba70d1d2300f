-- Claims up to $2 due jobs from the queues in $1 for worker $3, skipping paused queues
-- and queues with flow-control limits (those are claimed by ordinaut_claim_limited),
-- leasing them for $4 seconds. One statement: pick with FOR UPDATE SKIP LOCKED so
-- concurrent claimers never wait on each other, then flip the picked rows to running.
-- Per queue, an ordered scan of due_work_claim_idx (queue, priority, run_at, id); the
-- LATERAL keeps each scan ordered even when a worker serves several queues, where a
-- plain `queue = ANY(...)` would sort every waiting row of those queues.
-- Several queues: a LATERAL ... FOR UPDATE per queue locks every row it returns, so
-- asking each queue for $2 locked up to $2 rows per queue (a 4,096-job claim over
-- 1,000 queues of 100 jobs: 100,000 row locks, 5.4 MB of WAL, 150 ms). So first, without
-- locking, find how many of the $2 best due jobs each queue holds (`quota`), then lock
-- only that many per queue. The best $2 over all queues, exactly, with few reads:
-- every busy queue's first ceil($2 / busy queues) rows (`head`); `cut`, the $2-th best
-- of those (or +infinity when there are fewer); then, from each queue whose head
-- ended before the cut, its next rows up to the cut (`tail`): a job among the best $2
-- is in its queue's head or its tail, and the tail of a queue needs at most $2 minus
-- the head's rows. One queue skips all of this: its quota is $2.
-- The update finds the locked rows by ctid (a TID scan): joining on id let the planner
-- hash the whole of due_work instead, a sequential scan per claim that cost 91 ms of a
-- 182 ms claim of 4,096 jobs with 300,000 waiting. A locked row's ctid cannot change
-- before this statement's own update.
-- A claim that returns jobs commits synchronously (set_config is local to this
-- statement's transaction and read at its commit), although the worker's pool commits
-- asynchronously: a claim lost in a server crash would hand back a job that is already
-- running, and a second worker would run it at the same time.
WITH wanted AS (
    SELECT w.name
    FROM unnest($1::text[]) AS w(name)
    WHERE NOT EXISTS (
        SELECT 1 FROM queues q
        WHERE q.name = w.name
          AND (q.paused OR q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL
               OR q.key_concurrency IS NOT NULL))
),
-- The served queues with a due job (several queues only); ORDER BY keeps the probe an
-- index scan (with LIMIT 1 alone the planner chose a sequential scan).
busy AS (
    SELECT wanted.name
    FROM wanted
    CROSS JOIN LATERAL (
        SELECT 1 FROM due_work d
        WHERE d.queue = wanted.name AND d.state <> 'running' AND d.run_at <= now()
        ORDER BY d.priority, d.run_at, d.id
        LIMIT 1
    ) AS due
    WHERE cardinality($1::text[]) > 1
),
share AS (
    SELECT ceil($2::float8 / greatest(count(*), 1))::int8 AS n FROM busy
),
head AS (
    SELECT busy.name AS queue, c.priority, c.run_at, c.id, c.rank
    FROM busy
    CROSS JOIN share
    CROSS JOIN LATERAL (
        SELECT d.priority, d.run_at, d.id,
               row_number() OVER (ORDER BY d.priority, d.run_at, d.id) AS rank
        FROM due_work d
        WHERE d.queue = busy.name
          AND d.state <> 'running'
          AND d.run_at <= now()
        ORDER BY d.priority, d.run_at, d.id
        LIMIT share.n
    ) AS c
),
-- Materialized: inlined, it was re-sorted for every row of `tail`.
cut AS MATERIALIZED (
    SELECT coalesce(k.priority, 32767::int2) AS priority,
           coalesce(k.run_at, 'infinity'::timestamptz) AS run_at,
           coalesce(k.id, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid) AS id
    FROM (VALUES (1)) AS one (x)
    LEFT JOIN (SELECT priority, run_at, id FROM head ORDER BY priority, run_at, id OFFSET $2 - 1 LIMIT 1) AS k ON true
),
tail AS (
    SELECT l.queue, t.priority, t.run_at, t.id
    FROM head l
    CROSS JOIN share
    CROSS JOIN cut
    CROSS JOIN LATERAL (
        SELECT d.priority, d.run_at, d.id
        FROM due_work d
        WHERE d.queue = l.queue
          AND d.state <> 'running'
          AND d.run_at <= now()
          AND (d.priority, d.run_at, d.id) > (l.priority, l.run_at, l.id)
          AND (d.priority, d.run_at, d.id) <= (cut.priority, cut.run_at, cut.id)
        ORDER BY d.priority, d.run_at, d.id
        LIMIT $2 - share.n
    ) AS t
    WHERE l.rank = share.n
      AND (l.priority, l.run_at, l.id) < (cut.priority, cut.run_at, cut.id)
),
quota AS (
    SELECT name, $2::int8 AS n FROM wanted WHERE cardinality($1::text[]) = 1
    UNION ALL
    SELECT queue, count(*)
    FROM (SELECT queue, priority, run_at, id FROM head
          UNION ALL
          SELECT queue, priority, run_at, id FROM tail
          ORDER BY priority, run_at, id
          LIMIT $2) AS f
    GROUP BY queue
),
-- Rows another claimer holds are skipped and the scan walks on in that queue for its
-- quota, as with one queue.
candidates AS (
    SELECT c.ctid, c.id, c.priority, c.run_at
    FROM quota
    CROSS JOIN LATERAL (
        SELECT d.ctid, d.id, d.priority, d.run_at
        FROM due_work d
        WHERE d.queue = quota.name
          AND d.state <> 'running'
          AND d.run_at <= now()
        ORDER BY d.priority, d.run_at, d.id
        LIMIT quota.n
        FOR UPDATE SKIP LOCKED
    ) AS c
),
picked AS (
    SELECT ctid FROM candidates ORDER BY priority, run_at, id LIMIT $2
)
UPDATE due_work d
SET state = 'running',
    attempt = d.attempt + 1,
    lease_owner = $3,
    lease_expires_at = now() + make_interval(secs => $4),
    attempted_at = now()
WHERE d.ctid = ANY(ARRAY(SELECT ctid FROM picked))
RETURNING d.id, d.queue, d.kind, d.payload, d.attempt, d.max_attempts, d.timeout_ms,
          d.metadata, d.schedule_id, d.run_at, d.attempted_at,
          set_config('synchronous_commit', 'on', true) AS durable
