-- Workflow functions plan once per session (issue 19: submit and activation cost).
--
-- PL/pgSQL caches a plan per statement, but a statement whose parameters are arrays
-- (unnest(wfs, names), id = ANY(wfs)) gets custom plans: the planner estimates the
-- array's length from its value, so every custom plan looks cheaper than the generic
-- one and the statement is planned again on every call, about 1 ms each for the joins
-- of decide, propagate and the history trigger. A four-step diamond paid that some ten
-- times on its way through. These functions only look rows up by key, so the generic
-- plan is the right one: force it. A generic plan made while the tables are small (a
-- fresh install; autovacuum's next ANALYZE may be a minute away) could pick sequential
-- scans and keep them as the tables grow, so they are also ruled out here: every lookup
-- these functions make has an index.
--
-- ordinaut_workflow_refresh was a LANGUAGE sql function (planned on every call) whose
-- UPDATE joined workflows by hash on the grouped steps, reading the whole workflows
-- table on every submit and every finish of a workflow job. It is now PL/pgSQL, and the
-- UPDATE names the workflows it may touch, so it reads them by primary key.

CREATE OR REPLACE FUNCTION ordinaut_workflow_refresh(wfs uuid[]) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    -- Per named workflow, its steps by the primary key's prefix; HAVING keeps a
    -- workflow without steps (none exists: a submit needs one) untouched, as before.
    UPDATE workflows w
    SET state = d.state, finished_at = CASE WHEN d.state = 'running' THEN NULL ELSE now() END
    FROM unnest(wfs) AS u(id)
    CROSS JOIN LATERAL (
        SELECT CASE WHEN bool_or(s.state IN ('waiting', 'enqueued')) THEN 'running'
                    WHEN bool_or(s.state = 'failed') THEN 'failed'
                    WHEN bool_or(s.state = 'cancelled') THEN 'cancelled'
                    ELSE 'completed' END AS state
        FROM workflow_steps s WHERE s.workflow_id = u.id HAVING count(*) > 0
    ) d
    WHERE w.id = u.id AND w.state IS DISTINCT FROM d.state;
END;
$$;

ALTER FUNCTION ordinaut_workflow_refresh(uuid[]) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ordinaut_workflow_decide(uuid[], text[]) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ordinaut_workflow_propagate(uuid[], text[]) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ordinaut_workflow_add_steps(uuid, jsonb, text, integer) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ordinaut_enqueue_workflow(jsonb, integer) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ordinaut_workflow_append(uuid, jsonb, integer) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ordinaut_workflow_cancel(uuid) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ordinaut_workflow_retry(uuid) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ordinaut_workflow_revive(uuid, text) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ordinaut_workflow_cancel_step(uuid) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ordinaut_workflow_on_history() SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;
ALTER FUNCTION ordinaut_workflow_on_requeue() SET plan_cache_mode = force_generic_plan SET enable_seqscan = off;

-- A step row is updated about three times after its insert (enqueued, its dependencies
-- counted off, its outcome) and a workflow row once or twice; with room left on the
-- page those updates are HOT and write no index entries.
ALTER TABLE workflow_steps SET (fillfactor = 70);
ALTER TABLE workflows SET (fillfactor = 80);
