-- Job state-change events for the API (`GET /v1/events`, `GET /v1/jobs/{id}?wait=`,
-- pull-model claim waits).
--
-- One NOTIFY on channel `ordinaut_events` per 32 changed rows per statement, never one
-- per row: the triggers are FOR EACH STATEMENT and read the statement's transition
-- table. The payload is a JSON array of [id, queue, state] triples, kept far below
-- Postgres's 8000-byte payload limit (32 x at most ~190 bytes; queue names are cut
-- to 100 characters here so that a name inserted by hand can never make the NOTIFY,
-- and with it the writing statement, fail).
--
-- Cost on the hot path (claim and finish statements): Postgres keeps a copy of the
-- changed rows in a tuplestore for the transition table (memory, spilling to disk
-- only past work_mem), runs this function once, and queues the notifications, which
-- take the cluster-wide notify-queue lock briefly at commit. Enqueue already paid the
-- latter for worker wake-ups. No per-row trigger, no extra index lookup, no extra
-- write to any table. `state` is the effective state: a 'scheduled' row whose run_at
-- has passed is reported as 'available', as the readers do.

CREATE FUNCTION ordinaut_notify_job_events() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    payload text;
BEGIN
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

-- New and re-enqueued (retried) live jobs.
CREATE TRIGGER due_work_notify_events_insert
    AFTER INSERT ON due_work
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION ordinaut_notify_job_events();

-- Claims (-> running), retries and snoozes (-> scheduled), shutdown hand-backs and
-- rescues (-> available/scheduled).
CREATE TRIGGER due_work_notify_events_update
    AFTER UPDATE ON due_work
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION ordinaut_notify_job_events();

-- Terminal states: completed, failed, cancelled. Completed jobs of a queue with
-- keep_completed = false are deleted without a history row and send no event.
CREATE TRIGGER job_history_notify_events_insert
    AFTER INSERT ON job_history
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION ordinaut_notify_job_events();
