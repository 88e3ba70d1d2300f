-- Several Ordinaut installs in one database (each in its own ORDINAUT_SCHEMA) no longer
-- share the workers' advisory-lock class or the NOTIFY channels.
--
-- Before: every install took its worker locks in the fixed class 0x4F524431 ("ORD1")
-- with keys from its own sequence, so install B could take the key of a dead worker of
-- install A, whose rescuer then saw that worker alive forever; and every install sent
-- and heard `ordinaut_enqueued`, `ordinaut_cancel` and `ordinaut_events`, so A's job
-- events reached B's SSE clients.
--
-- Now both derive from the schema holding the install. The `public` schema keeps the
-- old class and channel names, so a default install stays compatible with processes
-- of the previous release during a rolling upgrade; any other schema gets its own.
-- Ordinaut's Rust code asks these functions instead of spelling names, so its SQL text
-- stays static. `SET search_path FROM CURRENT` pins them (and the trigger functions) to
-- the install's schema whatever the caller's search_path.

CREATE FUNCTION ordinaut_channel(base text) RETURNS text
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT CASE WHEN current_schema() = 'public' THEN base
                ELSE base || '_' || to_hex(hashtext(current_schema())) END
$$;

CREATE FUNCTION ordinaut_worker_lock_class() RETURNS integer
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT CASE WHEN current_schema() = 'public' THEN 1330791473 -- 0x4F524431, "ORD1"
                ELSE hashtext('ordinaut_worker_lock:' || current_schema()) END
$$;

CREATE OR REPLACE FUNCTION ordinaut_notify_enqueued() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    channel text := ordinaut_channel('ordinaut_enqueued');
BEGIN
    PERFORM pg_notify(channel, q.queue)
    FROM (SELECT DISTINCT queue FROM new_rows WHERE state = 'available') AS q;
    RETURN NULL;
END;
$$;

-- As in 0007, with the install's channel.
CREATE OR REPLACE FUNCTION ordinaut_notify_job_events() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    payload text;
    channel text;
BEGIN
    -- Nobody follows events: skip the JSON and the NOTIFYs (see 0007).
    IF NOT EXISTS (SELECT 1 FROM event_subscribers WHERE expires_at > now()) THEN
        RETURN NULL;
    END IF;
    channel := ordinaut_channel('ordinaut_events');
    FOR payload IN
        SELECT json_agg(json_build_array(c.id, left(c.queue, 100), c.state))::text
        FROM (
            SELECT e.id, e.queue,
                   CASE WHEN e.state = 'scheduled' AND e.run_at <= now() THEN 'available'
                        ELSE e.state END AS state,
                   (row_number() OVER () - 1) / 32 AS chunk
            FROM changed e
            -- See 0002: skip lease extensions and cancel requests of running rows.
            WHERE TG_OP = 'INSERT' OR e.state <> 'running' OR e.attempted_at = now()
        ) AS c
        GROUP BY c.chunk
    LOOP
        PERFORM pg_notify(channel, payload);
    END LOOP;
    RETURN NULL;
END;
$$;
