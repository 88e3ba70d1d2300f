-- Trace context for SQL enqueues (issue 18). A job's W3C trace context lives in its
-- metadata under the keys `traceparent` and `tracestate` (documented in docs/API.md):
-- it travels to job_history with the row and costs no column or index.
--
-- ordinaut_enqueue gains `traceparent` and `tracestate` arguments. Without them it reads
-- the session settings `ordinaut.traceparent` / `ordinaut.tracestate`, so an
-- instrumented driver can set the context once per transaction
-- (SET LOCAL ordinaut.traceparent = '00-...'). A malformed argument is refused; a
-- malformed setting is ignored (tracing never stops an enqueue it did not ask for).
-- The old signature is dropped: every existing call, positional or named, resolves to
-- the new one through the defaults.

CREATE FUNCTION ordinaut_valid_traceparent(value text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
  SELECT value ~ '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
     AND substr(value, 1, 2) <> 'ff'
     AND substr(value, 4, 32) <> repeat('0', 32)
     AND substr(value, 37, 16) <> repeat('0', 16)
$$;

DROP FUNCTION ordinaut_enqueue(text, text, jsonb, timestamptz, smallint, integer, text, interval);

CREATE FUNCTION ordinaut_enqueue(
    queue        text,
    kind         text,
    payload      jsonb DEFAULT '{}'::jsonb,
    run_at       timestamptz DEFAULT NULL,
    priority     smallint DEFAULT 0,
    max_attempts integer DEFAULT NULL,
    unique_key   text DEFAULT NULL,
    timeout      interval DEFAULT NULL,
    traceparent  text DEFAULT NULL,
    tracestate   text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    new_id   uuid := ordinaut_uuid_v7();
    found_id uuid;
    parent   text := traceparent;
    trace_state text := tracestate;
    meta     jsonb := '{}'::jsonb;
BEGIN
    IF queue IS NULL OR queue !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' THEN
        RAISE EXCEPTION 'ordinaut_enqueue: invalid queue name %', coalesce(queue, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF kind IS NULL OR kind !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' THEN
        RAISE EXCEPTION 'ordinaut_enqueue: invalid kind %', coalesce(kind, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF parent IS NOT NULL THEN
        parent := lower(btrim(parent));
        IF NOT ordinaut_valid_traceparent(parent) THEN
            RAISE EXCEPTION 'ordinaut_enqueue: traceparent % is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)', ordinaut_enqueue.traceparent USING ERRCODE = '22023';
        END IF;
    ELSE
        parent := lower(btrim(nullif(current_setting('ordinaut.traceparent', true), '')));
        trace_state := nullif(current_setting('ordinaut.tracestate', true), '');
        IF parent IS NOT NULL AND NOT ordinaut_valid_traceparent(parent) THEN
            parent := NULL;
        END IF;
    END IF;
    IF parent IS NOT NULL THEN
        meta := jsonb_build_object('traceparent', parent);
        IF nullif(btrim(trace_state), '') IS NOT NULL THEN
            meta := meta || jsonb_build_object('tracestate', btrim(trace_state));
        END IF;
    END IF;
    LOOP
        INSERT INTO due_work AS d (id, queue, kind, payload, priority, run_at, state, max_attempts, unique_key, timeout_ms, metadata)
        VALUES (new_id, queue, kind, coalesce(payload, '{}'::jsonb), coalesce(priority, 0),
                coalesce(run_at, now()),
                CASE WHEN run_at > now() THEN 'scheduled' ELSE 'available' END,
                coalesce(max_attempts, (SELECT q.max_attempts FROM queues q WHERE q.name = queue), 4),
                unique_key,
                (extract(epoch FROM timeout) * 1000)::bigint,
                meta)
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING;
        IF FOUND THEN
            RETURN new_id;
        END IF;
        SELECT d.id INTO found_id FROM due_work d WHERE d.unique_key = ordinaut_enqueue.unique_key;
        IF found_id IS NOT NULL THEN
            RETURN found_id;
        END IF;
        -- The conflicting job finished between the two statements: try again.
    END LOOP;
END;
$$;
