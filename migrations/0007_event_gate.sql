-- Job events cost nothing while nobody follows them.
--
-- The statement triggers of 0002 built a JSON payload from every changed row and sent
-- one NOTIFY per 32 rows on every claim, finish and enqueue, whether or not any API
-- process was listening: about 10% of burn-down throughput and a fifth of bulk enqueue
-- speed (docs/BENCHMARKS.md). Now an API process that has someone waiting on events
-- (an SSE client, a `?wait=`, a pull-model claim wait) keeps a row here, renewed while
-- they stay and deleted when they leave; the trigger function returns at once when no
-- row is current. A process that dies leaves a row that simply expires.

CREATE TABLE event_subscribers (
    -- One API process.
    id         uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE OR REPLACE FUNCTION ordinaut_notify_job_events() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    payload text;
BEGIN
    -- Nobody follows events: skip the JSON and the NOTIFYs (see above).
    IF NOT EXISTS (SELECT 1 FROM event_subscribers WHERE expires_at > now()) THEN
        RETURN NULL;
    END IF;
    FOR payload IN
        SELECT json_agg(json_build_array(c.id, left(c.queue, 100), c.state))::text
        FROM (
            SELECT e.id, e.queue,
                   CASE WHEN e.state = 'scheduled' AND e.run_at <= now() THEN 'available'
                        ELSE e.state END AS state,
                   (row_number() OVER () - 1) / 32 AS chunk
            FROM changed e
            -- A heartbeat (lease extension) or a cancel request rewrites running rows
            -- without changing their state: skip them. A row claimed by this very
            -- statement has attempted_at = now() (the claim sets it so, and now() is
            -- fixed for the transaction), a heartbeated one an older attempted_at.
            -- Inserts (due_work, job_history) always report.
            WHERE TG_OP = 'INSERT' OR e.state <> 'running' OR e.attempted_at = now()
        ) AS c
        GROUP BY c.chunk
    LOOP
        PERFORM pg_notify('ordinaut_events', payload);
    END LOOP;
    RETURN NULL;
END;
$$;
