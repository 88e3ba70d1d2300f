-- Flow control: per-queue concurrency limit, rate limit (token bucket) and per-key
-- concurrency, enforced inside the claim, cluster-wide.

ALTER TABLE queues
    ADD COLUMN concurrency_limit integer CONSTRAINT queues_concurrency_limit_positive CHECK (concurrency_limit > 0),
    ADD COLUMN rate_limit        integer CONSTRAINT queues_rate_limit_positive CHECK (rate_limit > 0),
    ADD COLUMN rate_period_ms    bigint NOT NULL DEFAULT 1000 CONSTRAINT queues_rate_period_positive CHECK (rate_period_ms > 0),
    ADD COLUMN rate_burst        integer CONSTRAINT queues_rate_burst_positive CHECK (rate_burst > 0),
    ADD COLUMN key_concurrency   integer CONSTRAINT queues_key_concurrency_positive CHECK (key_concurrency > 0),
    -- Token bucket state, only meaningful while rate_limit is set.
    ADD COLUMN rate_tokens       double precision,
    ADD COLUMN rate_updated_at   timestamptz;

ALTER TABLE due_work ADD COLUMN concurrency_key text;
ALTER TABLE job_history ADD COLUMN concurrency_key text;

-- Claims up to p_limit jobs of one limited queue for p_worker. Limited queues are
-- claimed only here (claim_due.sql skips them), one claimer at a time per queue: the
-- FOR UPDATE on the queue row serialises them, so the running count and the token
-- bucket it reads cannot change under it and no limit can be exceeded by a race. A
-- queue with no limits never comes here and pays nothing.
CREATE FUNCTION ordinaut_claim_limited(p_queue text, p_limit integer, p_worker uuid, p_lease_seconds double precision)
RETURNS SETOF due_work
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    q        queues%ROWTYPE;
    room     integer := p_limit;
    running  integer;
    tokens   double precision;
    claimed  integer;
BEGIN
    SELECT * INTO q FROM queues WHERE name = p_queue FOR UPDATE;
    IF NOT FOUND OR q.paused THEN
        RETURN;
    END IF;
    IF q.concurrency_limit IS NOT NULL THEN
        SELECT count(*) INTO running FROM due_work WHERE queue = p_queue AND state = 'running';
        room := least(room, q.concurrency_limit - running);
    END IF;
    IF q.rate_limit IS NOT NULL THEN
        -- Refill at rate_limit per rate_period, up to the burst (default: the rate).
        tokens := least(coalesce(q.rate_burst, q.rate_limit)::float8,
                        coalesce(q.rate_tokens, coalesce(q.rate_burst, q.rate_limit)::float8)
                        + extract(epoch FROM clock_timestamp() - coalesce(q.rate_updated_at, clock_timestamp()))
                          * 1000.0 * q.rate_limit / q.rate_period_ms);
        room := least(room, floor(tokens)::integer);
    END IF;
    IF room <= 0 THEN
        IF q.rate_limit IS NOT NULL THEN
            UPDATE queues SET rate_tokens = tokens, rate_updated_at = clock_timestamp() WHERE name = p_queue;
        END IF;
        RETURN;
    END IF;
    RETURN QUERY
    WITH busy_keys AS (
        SELECT d.concurrency_key, count(*) AS n
        FROM due_work d
        WHERE q.key_concurrency IS NOT NULL
          AND d.queue = p_queue AND d.state = 'running' AND d.concurrency_key IS NOT NULL
        GROUP BY d.concurrency_key
    ),
    candidates AS (
        -- Saturated keys are skipped here, so other keys' jobs are never held up
        -- behind a busy one.
        SELECT d.id, d.concurrency_key, d.priority, d.run_at
        FROM due_work d
        WHERE d.queue = p_queue AND d.state <> 'running' AND d.run_at <= now()
          AND (q.key_concurrency IS NULL OR d.concurrency_key IS NULL
               OR NOT EXISTS (SELECT 1 FROM busy_keys b
                              WHERE b.concurrency_key = d.concurrency_key AND b.n >= q.key_concurrency))
        ORDER BY d.priority, d.run_at, d.id
        LIMIT room * 20 + 100
    ),
    ranked AS (
        SELECT c.*, row_number() OVER (PARTITION BY c.concurrency_key ORDER BY c.priority, c.run_at, c.id) AS rn
        FROM candidates c
    ),
    picked AS (
        SELECT r.id
        FROM ranked r
        LEFT JOIN busy_keys b ON b.concurrency_key = r.concurrency_key
        WHERE q.key_concurrency IS NULL OR r.concurrency_key IS NULL
           OR r.rn + coalesce(b.n, 0) <= q.key_concurrency
        ORDER BY r.priority, r.run_at, r.id
        LIMIT room
    )
    UPDATE due_work d
    SET state = 'running',
        attempt = d.attempt + 1,
        lease_owner = p_worker,
        lease_expires_at = now() + make_interval(secs => p_lease_seconds),
        attempted_at = now()
    FROM picked
    WHERE d.id = picked.id AND d.state <> 'running'
    RETURNING d.*;
    GET DIAGNOSTICS claimed = ROW_COUNT;
    IF q.rate_limit IS NOT NULL THEN
        UPDATE queues SET rate_tokens = tokens - claimed, rate_updated_at = clock_timestamp() WHERE name = p_queue;
    END IF;
END;
$$;
