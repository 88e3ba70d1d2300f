-- Workflows: jobs submitted together with dependencies between them (docs/ARCHITECTURE.md,
-- "Workflows").
--
-- A step that waits for dependencies is a row of workflow_steps only: it is not in
-- due_work, so the claim index, the claim scan and every plain job pay nothing for it.
-- When its last dependency ends, the step's job is inserted into due_work in the same
-- transaction that recorded that dependency's outcome (a statement-level trigger on
-- job_history, the one table every terminal outcome passes through). No resolver polls.
--
-- Plain jobs carry workflow_id = NULL. The trigger that settles dependents scans the
-- statement's transition table (the events trigger of 0002 already makes Postgres keep
-- it) and returns at once when no row has a workflow; the requeue trigger on due_work is
-- a row trigger whose WHEN clause is false for them.
--
-- Concurrency: every change to a workflow's steps happens under its workflows row lock
-- (FOR UPDATE, taken in id order when one statement touches several workflows), so the
-- last two dependencies finishing at once on two workers are serialised and exactly one
-- of them sees the dependent's pending count reach zero.

ALTER TABLE due_work ADD COLUMN workflow_id uuid;
ALTER TABLE job_history ADD COLUMN workflow_id uuid;

CREATE TABLE workflows (
    id               uuid PRIMARY KEY,
    name             text NOT NULL,
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- The default failure policy of the workflow's edges.
    on_failure       text NOT NULL DEFAULT 'cancel'
                     CONSTRAINT workflows_on_failure_check CHECK (on_failure IN ('cancel', 'ignore', 'cleanup')),
    -- Derived from the steps after every change: running while any step waits or is
    -- enqueued; then failed if any step failed, cancelled if any was cancelled, else
    -- completed.
    state            text NOT NULL DEFAULT 'running'
                     CONSTRAINT workflows_state_check CHECK (state IN ('running', 'completed', 'failed', 'cancelled')),
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX workflows_created_idx ON workflows (id DESC);
CREATE INDEX workflows_running_idx ON workflows (id) WHERE state = 'running';

-- One row per step for the workflow's whole life: the graph, the step's job template
-- while it waits, and the outcome (with output) once it ended.
CREATE TABLE workflow_steps (
    workflow_id     uuid NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    name            text NOT NULL,
    -- Submit order, for display.
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    -- The id the step's job has (or will have) in due_work / job_history.
    job_id          uuid NOT NULL,
    -- waiting: dependencies pending (not claimable, not in due_work); enqueued: its job
    -- is live in due_work; completed/failed/cancelled: its job's outcome, or cancelled
    -- without running (a dependency failed, the workflow was cancelled); skipped: a
    -- cleanup step with nothing to clean up.
    state           text NOT NULL
                    CONSTRAINT workflow_steps_state_check
                    CHECK (state IN ('waiting', 'enqueued', 'completed', 'failed', 'cancelled', 'skipped')),
    -- Dependencies that have not ended yet.
    pending         integer NOT NULL DEFAULT 0,
    -- The step has an edge with on_failure = cleanup: it runs only if such a dependency
    -- failed or was cancelled (triggered), else it is skipped.
    cleanup         boolean NOT NULL DEFAULT false,
    triggered       boolean NOT NULL DEFAULT false,
    -- Its job was inserted into due_work at least once (it can be retried).
    ran             boolean NOT NULL DEFAULT false,
    queue           text NOT NULL,
    kind            text NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}'::jsonb,
    priority        smallint NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    timeout_ms      bigint,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    concurrency_key text,
    output          jsonb,
    -- Why a step ended without running.
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    PRIMARY KEY (workflow_id, name)
);
CREATE UNIQUE INDEX workflow_steps_job_idx ON workflow_steps (job_id);

-- child depends on parent. on_failure: what a failed or cancelled parent means for the
-- child: cancel it (default), ignore it (the child runs anyway), or cleanup (the child
-- runs only when such a parent failed).
CREATE TABLE workflow_edges (
    workflow_id uuid NOT NULL,
    parent      text NOT NULL,
    child       text NOT NULL,
    on_failure  text NOT NULL
                CONSTRAINT workflow_edges_on_failure_check CHECK (on_failure IN ('cancel', 'ignore', 'cleanup')),
    PRIMARY KEY (workflow_id, parent, child),
    FOREIGN KEY (workflow_id, child) REFERENCES workflow_steps (workflow_id, name) ON DELETE CASCADE
);
CREATE INDEX workflow_edges_child_idx ON workflow_edges (workflow_id, child);

-- Raises a 22023 (invalid_parameter_value) naming the problem: the API maps it to 400.
CREATE FUNCTION ordinaut_workflow_invalid(msg text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', msg USING ERRCODE = '22023';
END;
$$;

-- The derived state of the given workflows, written only when it changed.
CREATE FUNCTION ordinaut_workflow_refresh(wfs uuid[]) RETURNS void
LANGUAGE sql SET search_path FROM CURRENT AS $$
    UPDATE workflows w
    SET state = x.state,
        finished_at = CASE WHEN x.state = 'running' THEN NULL ELSE now() END
    FROM (
        SELECT s.workflow_id,
               CASE WHEN bool_or(s.state IN ('waiting', 'enqueued')) THEN 'running'
                    WHEN bool_or(s.state = 'failed') THEN 'failed'
                    WHEN bool_or(s.state = 'cancelled') THEN 'cancelled'
                    ELSE 'completed' END AS state
        FROM workflow_steps s
        WHERE s.workflow_id = ANY(wfs)
        GROUP BY s.workflow_id
    ) x
    WHERE w.id = x.workflow_id AND w.state IS DISTINCT FROM x.state
$$;

-- Steps among (wfs[i], names[i]) that are waiting with no dependency pending: each is
-- enqueued (its job inserted into due_work, with its dependencies' outcomes in
-- payload._workflow.deps), or skipped (a cleanup step whose cleanup dependencies all
-- succeeded), or cancelled (its workflow was cancelled). Returns the steps that ended
-- without running, for propagation.
CREATE FUNCTION ordinaut_workflow_decide(wfs uuid[], names text[], OUT done_wfs uuid[], OUT done_names text[])
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    go_wfs   uuid[];
    go_names text[];
BEGIN
    WITH c AS (
        SELECT * FROM unnest(wfs, names) AS c(workflow_id, name)
    ),
    decided AS (
        UPDATE workflow_steps s
        SET state = CASE WHEN w.cancel_requested THEN 'cancelled'
                         WHEN s.cleanup AND NOT s.triggered THEN 'skipped'
                         ELSE 'enqueued' END,
            reason = CASE WHEN w.cancel_requested THEN 'workflow cancelled'
                          WHEN s.cleanup AND NOT s.triggered THEN 'cleanup step: no dependency failed'
                          END,
            ran = s.ran OR NOT (w.cancel_requested OR (s.cleanup AND NOT s.triggered)),
            finished_at = CASE WHEN w.cancel_requested OR (s.cleanup AND NOT s.triggered) THEN now() END
        FROM c, workflows w
        WHERE s.workflow_id = c.workflow_id AND s.name = c.name AND w.id = s.workflow_id
          AND s.state = 'waiting' AND s.pending = 0
        RETURNING s.workflow_id, s.name, s.state
    )
    SELECT array_agg(workflow_id) FILTER (WHERE state <> 'enqueued'),
           array_agg(name) FILTER (WHERE state <> 'enqueued'),
           array_agg(workflow_id) FILTER (WHERE state = 'enqueued'),
           array_agg(name) FILTER (WHERE state = 'enqueued')
    INTO done_wfs, done_names, go_wfs, go_names
    FROM decided;

    IF go_wfs IS NOT NULL THEN
        INSERT INTO due_work
            (id, queue, kind, payload, priority, run_at, state, max_attempts, timeout_ms,
             metadata, concurrency_key, workflow_id)
        SELECT s.job_id, s.queue, s.kind,
               s.payload || jsonb_build_object('_workflow', jsonb_build_object(
                   'id', s.workflow_id, 'step', s.name,
                   'deps', coalesce((
                       SELECT jsonb_object_agg(p.name, jsonb_build_object(
                                  'state', p.state, 'job_id', p.job_id, 'output', p.output))
                       FROM workflow_edges e
                       JOIN workflow_steps p ON p.workflow_id = e.workflow_id AND p.name = e.parent
                       WHERE e.workflow_id = s.workflow_id AND e.child = s.name), '{}'::jsonb))),
               s.priority, now(), 'available', s.max_attempts, s.timeout_ms,
               s.metadata, s.concurrency_key, s.workflow_id
        FROM unnest(go_wfs, go_names) AS g(workflow_id, name)
        JOIN workflow_steps s ON s.workflow_id = g.workflow_id AND s.name = g.name;
    END IF;
END;
$$;

-- The steps (wfs[i], names[i]) have just ended (completed, failed, cancelled or
-- skipped): count them off their dependents, cancel the dependents of a failed or
-- cancelled step over `cancel` edges at once, mark `cleanup` dependents triggered, and
-- decide the dependents that have nothing left pending. Repeats for the steps this ends
-- without running, until nothing more ends: every path reaches a terminal state.
CREATE FUNCTION ordinaut_workflow_propagate(wfs uuid[], names text[]) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    ready_wfs    uuid[];
    ready_names  text[];
    killed_wfs   uuid[];
    killed_names text[];
    dec          record;
BEGIN
    WHILE wfs IS NOT NULL AND cardinality(wfs) > 0 LOOP
        WITH ended AS (
            SELECT * FROM unnest(wfs, names) AS e(workflow_id, name)
        ),
        arrivals AS (
            SELECT e.workflow_id, e.child, count(*)::int AS n,
                   bool_or(p.state IN ('failed', 'cancelled') AND e.on_failure = 'cancel') AS kill,
                   bool_or(p.state IN ('failed', 'cancelled') AND e.on_failure = 'cleanup') AS trig
            FROM ended x
            JOIN workflow_edges e ON e.workflow_id = x.workflow_id AND e.parent = x.name
            JOIN workflow_steps p ON p.workflow_id = x.workflow_id AND p.name = x.name
            GROUP BY e.workflow_id, e.child
        ),
        counted AS (
            UPDATE workflow_steps s
            SET pending = s.pending - a.n,
                triggered = s.triggered OR a.trig,
                state = CASE WHEN a.kill THEN 'cancelled' ELSE s.state END,
                reason = CASE WHEN a.kill THEN 'a dependency failed or was cancelled' ELSE s.reason END,
                finished_at = CASE WHEN a.kill THEN now() ELSE s.finished_at END
            FROM arrivals a
            WHERE s.workflow_id = a.workflow_id AND s.name = a.child AND s.state = 'waiting'
            RETURNING s.workflow_id, s.name, s.state, s.pending
        )
        SELECT array_agg(workflow_id) FILTER (WHERE state = 'waiting' AND pending = 0),
               array_agg(name) FILTER (WHERE state = 'waiting' AND pending = 0),
               array_agg(workflow_id) FILTER (WHERE state = 'cancelled'),
               array_agg(name) FILTER (WHERE state = 'cancelled')
        INTO ready_wfs, ready_names, killed_wfs, killed_names
        FROM counted;

        SELECT * INTO dec FROM ordinaut_workflow_decide(ready_wfs, ready_names);
        wfs := coalesce(killed_wfs, '{}') || coalesce(dec.done_wfs, '{}');
        names := coalesce(killed_names, '{}') || coalesce(dec.done_names, '{}');
    END LOOP;
END;
$$;

-- Adds the steps in `jobs` (a JSON array) to workflow wf, which the caller has locked.
-- Dependencies may name steps of the same array or steps already in the workflow
-- (whatever state they are in). Returns [{name, job_id}] in input order.
CREATE FUNCTION ordinaut_workflow_add_steps(wf uuid, jobs jsonb, policy text, default_max_attempts integer)
RETURNS jsonb
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    j        record;
    dep      record;
    dep_name text;
    dep_pol  text;
    bad      text;
    n        integer;
    m        integer;
    idx      jsonb;
    ep       integer[];
    ec       integer[];
    indeg    integer[];
    first    integer[];
    stack    integer[];
    top      integer;
    v        integer;
    seen     integer := 0;
    k        integer;
    names    text[];
    dec      record;
    result   jsonb;
    name_re  constant text := '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$';
BEGIN
    IF jobs IS NULL OR jsonb_typeof(jobs) <> 'array' OR jsonb_array_length(jobs) = 0 THEN
        PERFORM ordinaut_workflow_invalid('jobs: must be a non-empty array of jobs');
    END IF;
    n := jsonb_array_length(jobs);
    IF n > 10000 THEN
        PERFORM ordinaut_workflow_invalid(format('jobs: %s jobs exceed the limit of 10000 per call', n));
    END IF;

    FOR j IN SELECT e.value AS job, e.ord FROM jsonb_array_elements(jobs) WITH ORDINALITY AS e(value, ord) LOOP
        IF jsonb_typeof(j.job) <> 'object' THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s]: must be an object', j.ord - 1));
        END IF;
        SELECT string_agg(key, ', ') INTO bad FROM jsonb_object_keys(j.job) AS key
        WHERE key NOT IN ('name', 'queue', 'kind', 'payload', 'priority', 'max_attempts', 'timeout_ms',
                          'metadata', 'concurrency_key', 'depends_on', 'on_failure');
        IF bad IS NOT NULL THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s]: unknown field(s) %s', j.ord - 1, bad));
        END IF;
        IF jsonb_typeof(j.job->'name') IS DISTINCT FROM 'string' OR j.job->>'name' !~ name_re THEN
            PERFORM ordinaut_workflow_invalid(format(
                'jobs[%s].name: required, 1-128 letters, digits or _.:- starting with a letter or digit', j.ord - 1));
        END IF;
        IF jsonb_typeof(j.job->'queue') IS DISTINCT FROM 'string' OR j.job->>'queue' !~ name_re THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s].queue: invalid queue name', j.ord - 1));
        END IF;
        IF jsonb_typeof(j.job->'kind') IS DISTINCT FROM 'string' OR j.job->>'kind' !~ name_re THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s].kind: invalid kind', j.ord - 1));
        END IF;
        IF j.job ? 'payload' AND jsonb_typeof(j.job->'payload') <> 'object' THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s].payload: a workflow step''s payload must be a JSON object', j.ord - 1));
        END IF;
        IF j.job->'payload' ? '_workflow' THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s].payload: the key _workflow is reserved (dependencies'' outcomes)', j.ord - 1));
        END IF;
        IF j.job ? 'metadata' AND jsonb_typeof(j.job->'metadata') <> 'object' THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s].metadata: must be an object', j.ord - 1));
        END IF;
        IF j.job ? 'priority' AND (jsonb_typeof(j.job->'priority') <> 'number'
                                   OR (j.job->>'priority')::numeric NOT BETWEEN -100 AND 100
                                   OR (j.job->>'priority')::numeric % 1 <> 0) THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s].priority: must be an integer in -100..100', j.ord - 1));
        END IF;
        IF j.job ? 'max_attempts' AND (jsonb_typeof(j.job->'max_attempts') <> 'number'
                                       OR (j.job->>'max_attempts')::numeric NOT BETWEEN 1 AND 1000
                                       OR (j.job->>'max_attempts')::numeric % 1 <> 0) THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s].max_attempts: must be an integer in 1..1000', j.ord - 1));
        END IF;
        IF j.job ? 'timeout_ms' AND (jsonb_typeof(j.job->'timeout_ms') <> 'number'
                                     OR (j.job->>'timeout_ms')::numeric NOT BETWEEN 1 AND 9007199254740991
                                     OR (j.job->>'timeout_ms')::numeric % 1 <> 0) THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s].timeout_ms: must be a positive integer', j.ord - 1));
        END IF;
        IF j.job ? 'concurrency_key' AND (jsonb_typeof(j.job->'concurrency_key') <> 'string'
                                          OR length(j.job->>'concurrency_key') NOT BETWEEN 1 AND 512) THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s].concurrency_key: must be a string of 1-512 characters', j.ord - 1));
        END IF;
        IF j.job ? 'on_failure' AND (j.job->>'on_failure') NOT IN ('cancel', 'ignore', 'cleanup') THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s].on_failure: must be cancel, ignore or cleanup', j.ord - 1));
        END IF;
        IF j.job ? 'depends_on' AND jsonb_typeof(j.job->'depends_on') <> 'array' THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s].depends_on: must be an array of step names', j.ord - 1));
        END IF;
        IF EXISTS (SELECT 1 FROM workflow_steps s WHERE s.workflow_id = wf AND s.name = j.job->>'name') THEN
            PERFORM ordinaut_workflow_invalid(format('jobs[%s].name: the workflow already has a step named %s',
                                                     j.ord - 1, j.job->>'name'));
        END IF;
        INSERT INTO workflow_steps
            (workflow_id, name, job_id, state, queue, kind, payload, priority, max_attempts,
             timeout_ms, metadata, concurrency_key)
        VALUES (wf, j.job->>'name', ordinaut_uuid_v7(), 'waiting', j.job->>'queue', j.job->>'kind',
                coalesce(j.job->'payload', '{}'::jsonb), coalesce((j.job->>'priority')::smallint, 0),
                coalesce((j.job->>'max_attempts')::integer,
                         (SELECT q.max_attempts FROM queues q WHERE q.name = j.job->>'queue'),
                         default_max_attempts),
                (j.job->>'timeout_ms')::bigint, coalesce(j.job->'metadata', '{}'::jsonb),
                j.job->>'concurrency_key');
    END LOOP;

    -- Edges, once every new step exists (a dependency may come later in the array).
    FOR j IN SELECT e.value AS job, e.ord FROM jsonb_array_elements(jobs) WITH ORDINALITY AS e(value, ord)
             WHERE e.value ? 'depends_on' LOOP
        FOR dep IN SELECT d.value, d.ord FROM jsonb_array_elements(j.job->'depends_on') WITH ORDINALITY AS d(value, ord) LOOP
            IF jsonb_typeof(dep.value) = 'string' THEN
                dep_name := dep.value #>> '{}';
                dep_pol := coalesce(j.job->>'on_failure', policy);
            ELSIF jsonb_typeof(dep.value) = 'object' AND jsonb_typeof(dep.value->'name') = 'string'
                  AND NOT EXISTS (SELECT 1 FROM jsonb_object_keys(dep.value) AS dk(key) WHERE dk.key NOT IN ('name', 'on_failure')) THEN
                dep_name := dep.value->>'name';
                dep_pol := coalesce(dep.value->>'on_failure', j.job->>'on_failure', policy);
                IF dep_pol NOT IN ('cancel', 'ignore', 'cleanup') THEN
                    PERFORM ordinaut_workflow_invalid(format('jobs[%s].depends_on[%s].on_failure: must be cancel, ignore or cleanup',
                                                             j.ord - 1, dep.ord - 1));
                END IF;
            ELSE
                PERFORM ordinaut_workflow_invalid(format(
                    'jobs[%s].depends_on[%s]: must be a step name or {"name": ..., "on_failure": ...}', j.ord - 1, dep.ord - 1));
            END IF;
            IF dep_name = j.job->>'name' THEN
                PERFORM ordinaut_workflow_invalid(format('jobs[%s].depends_on: %s cannot depend on itself', j.ord - 1, dep_name));
            END IF;
            IF NOT EXISTS (SELECT 1 FROM workflow_steps s WHERE s.workflow_id = wf AND s.name = dep_name) THEN
                PERFORM ordinaut_workflow_invalid(format('jobs[%s].depends_on: no step named %s in this workflow',
                                                         j.ord - 1, dep_name));
            END IF;
            INSERT INTO workflow_edges (workflow_id, parent, child, on_failure)
            VALUES (wf, dep_name, j.job->>'name', dep_pol)
            ON CONFLICT (workflow_id, parent, child) DO NOTHING;
        END LOOP;
    END LOOP;

    -- Cycles can only run through the new steps (an existing step never gains a
    -- dependency). Kahn's algorithm over them, O(steps + edges): a step left with
    -- unmet dependencies is on or behind a cycle.
    SELECT jsonb_object_agg(e.value->>'name', e.ord) INTO idx
    FROM jsonb_array_elements(jobs) WITH ORDINALITY AS e(value, ord);
    SELECT array_agg((idx->>x.parent)::int ORDER BY (idx->>x.parent)::int),
           array_agg((idx->>x.child)::int ORDER BY (idx->>x.parent)::int)
    INTO ep, ec
    FROM workflow_edges x
    WHERE x.workflow_id = wf AND idx ? x.parent AND idx ? x.child;
    m := coalesce(cardinality(ep), 0);
    IF m > 0 THEN
        indeg := array_fill(0, ARRAY[n]);
        first := array_fill(0, ARRAY[n + 1]);
        FOR k IN 1..m LOOP
            indeg[ec[k]] := indeg[ec[k]] + 1;
            first[ep[k] + 1] := first[ep[k] + 1] + 1;
        END LOOP;
        FOR k IN 2..n + 1 LOOP
            first[k] := first[k] + first[k - 1];
        END LOOP;
        -- Edges of parent v are ep/ec[first[v] + 1 .. first[v + 1]].
        stack := array_fill(0, ARRAY[n]);
        top := 0;
        FOR k IN 1..n LOOP
            IF indeg[k] = 0 THEN
                top := top + 1;
                stack[top] := k;
            END IF;
        END LOOP;
        WHILE top > 0 LOOP
            v := stack[top];
            top := top - 1;
            seen := seen + 1;
            FOR k IN first[v] + 1 .. first[v + 1] LOOP
                indeg[ec[k]] := indeg[ec[k]] - 1;
                IF indeg[ec[k]] = 0 THEN
                    top := top + 1;
                    stack[top] := ec[k];
                END IF;
            END LOOP;
        END LOOP;
        IF seen < n THEN
            SELECT string_agg(e.value->>'name', ', ' ORDER BY e.ord) INTO bad
            FROM jsonb_array_elements(jobs) WITH ORDINALITY AS e(value, ord)
            WHERE indeg[e.ord] > 0;
            PERFORM ordinaut_workflow_invalid('depends_on: a cycle runs through ' || bad);
        END IF;
    END IF;

    -- Pending counts: dependencies not yet ended. Dependencies that already ended
    -- (possible when appending) count at once, policies included.
    WITH news AS (
        SELECT e.value->>'name' AS name FROM jsonb_array_elements(jobs) AS e(value)
    ),
    deps AS (
        SELECT x.child,
               count(*) FILTER (WHERE p.state IN ('waiting', 'enqueued'))::int AS pending,
               bool_or(x.on_failure = 'cleanup') AS cleanup,
               bool_or(p.state IN ('failed', 'cancelled') AND x.on_failure = 'cleanup') AS trig,
               bool_or(p.state IN ('failed', 'cancelled') AND x.on_failure = 'cancel') AS kill
        FROM workflow_edges x
        JOIN news ON news.name = x.child
        JOIN workflow_steps p ON p.workflow_id = x.workflow_id AND p.name = x.parent
        WHERE x.workflow_id = wf
        GROUP BY x.child
    )
    UPDATE workflow_steps s
    SET pending = d.pending, cleanup = d.cleanup, triggered = d.trig,
        state = CASE WHEN d.kill THEN 'cancelled' ELSE 'waiting' END,
        reason = CASE WHEN d.kill THEN 'a dependency failed or was cancelled' END,
        finished_at = CASE WHEN d.kill THEN now() END
    FROM deps d
    WHERE s.workflow_id = wf AND s.name = d.child;

    PERFORM ordinaut_workflow_propagate(array_agg(wf), array_agg(s.name))
    FROM workflow_steps s
    WHERE s.workflow_id = wf AND s.state = 'cancelled'
      AND s.name IN (SELECT e.value->>'name' FROM jsonb_array_elements(jobs) AS e(value))
    HAVING count(*) > 0;

    SELECT array_agg(e.value->>'name') INTO names FROM jsonb_array_elements(jobs) AS e(value);
    SELECT * INTO dec FROM ordinaut_workflow_decide(array_fill(wf, ARRAY[n]), names);
    PERFORM ordinaut_workflow_propagate(dec.done_wfs, dec.done_names);

    SELECT jsonb_agg(jsonb_build_object('name', s.name, 'job_id', s.job_id) ORDER BY e.ord) INTO result
    FROM jsonb_array_elements(jobs) WITH ORDINALITY AS e(value, ord)
    JOIN workflow_steps s ON s.workflow_id = wf AND s.name = e.value->>'name';
    RETURN result;
END;
$$;

-- Submits a workflow, all or nothing, inside the caller's transaction. spec:
--   {"name": "scan", "metadata": {...}, "on_failure": "cancel"|"ignore"|"cleanup",
--    "jobs": [{"name", "queue", "kind", "payload", "priority", "max_attempts",
--              "timeout_ms", "metadata", "concurrency_key", "on_failure",
--              "depends_on": ["a", {"name": "b", "on_failure": "ignore"}]}, ...]}
-- or the batch shorthand {"name", "group": [jobs...], "callback": job}: the callback
-- depends on every job of the group with on_failure = ignore and reads their outcomes.
-- Returns the workflow id.
CREATE FUNCTION ordinaut_enqueue_workflow(spec jsonb, default_max_attempts integer DEFAULT 4)
RETURNS uuid
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    wf   uuid := ordinaut_uuid_v7();
    jobs jsonb;
    bad  text;
    pol  text;
BEGIN
    IF spec IS NULL OR jsonb_typeof(spec) <> 'object' THEN
        PERFORM ordinaut_workflow_invalid('workflow: must be a JSON object');
    END IF;
    SELECT string_agg(key, ', ') INTO bad FROM jsonb_object_keys(spec) AS key
    WHERE key NOT IN ('name', 'metadata', 'on_failure', 'jobs', 'group', 'callback');
    IF bad IS NOT NULL THEN
        PERFORM ordinaut_workflow_invalid('workflow: unknown field(s) ' || bad);
    END IF;
    IF jsonb_typeof(spec->'name') IS DISTINCT FROM 'string' OR length(spec->>'name') NOT BETWEEN 1 AND 200 THEN
        PERFORM ordinaut_workflow_invalid('name: required, a string of 1-200 characters');
    END IF;
    IF spec ? 'metadata' AND jsonb_typeof(spec->'metadata') <> 'object' THEN
        PERFORM ordinaut_workflow_invalid('metadata: must be an object');
    END IF;
    pol := coalesce(spec->>'on_failure', 'cancel');
    IF pol NOT IN ('cancel', 'ignore', 'cleanup') THEN
        PERFORM ordinaut_workflow_invalid('on_failure: must be cancel, ignore or cleanup');
    END IF;
    IF spec ? 'group' OR spec ? 'callback' THEN
        IF spec ? 'jobs' THEN
            PERFORM ordinaut_workflow_invalid('workflow: give either jobs or group and callback, not both');
        END IF;
        IF jsonb_typeof(spec->'group') IS DISTINCT FROM 'array' OR jsonb_array_length(spec->'group') = 0 THEN
            PERFORM ordinaut_workflow_invalid('group: must be a non-empty array of jobs');
        END IF;
        IF jsonb_typeof(spec->'callback') IS DISTINCT FROM 'object' THEN
            PERFORM ordinaut_workflow_invalid('callback: must be a job object');
        END IF;
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(spec->'group') g(v)
                   WHERE jsonb_typeof(v) <> 'object' OR v ? 'depends_on') OR spec->'callback' ? 'depends_on' THEN
            PERFORM ordinaut_workflow_invalid('group: jobs of a group and its callback take no depends_on');
        END IF;
        -- Group members are named by position unless named; the callback is "callback".
        SELECT jsonb_agg(CASE WHEN g.v ? 'name' THEN g.v ELSE g.v || jsonb_build_object('name', 'group-' || (g.ord - 1)) END
                         ORDER BY g.ord)
        INTO jobs
        FROM jsonb_array_elements(spec->'group') WITH ORDINALITY AS g(v, ord);
        jobs := jobs || jsonb_build_array(
            (jsonb_build_object('name', 'callback') || (spec->'callback'))
            || jsonb_build_object('depends_on', (
                SELECT jsonb_agg(jsonb_build_object('name', x->>'name', 'on_failure', 'ignore'))
                FROM jsonb_array_elements(jobs) AS x)));
    ELSE
        jobs := spec->'jobs';
    END IF;

    INSERT INTO workflows (id, name, metadata, on_failure)
    VALUES (wf, spec->>'name', coalesce(spec->'metadata', '{}'::jsonb), pol);
    PERFORM ordinaut_workflow_add_steps(wf, jobs, pol, coalesce(default_max_attempts, 4));
    PERFORM ordinaut_workflow_refresh(ARRAY[wf]);
    RETURN wf;
END;
$$;

-- Appends steps to a running workflow (dynamic fan-out: a step adds N steps and a join
-- that depends on them). New steps may depend on any step of the workflow. Returns
-- [{name, job_id}].
CREATE FUNCTION ordinaut_workflow_append(wf uuid, jobs jsonb, default_max_attempts integer DEFAULT 4)
RETURNS jsonb
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    w      workflows;
    result jsonb;
BEGIN
    SELECT * INTO w FROM workflows WHERE id = wf FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % not found', wf USING ERRCODE = 'P0002';
    END IF;
    IF w.cancel_requested THEN
        RAISE EXCEPTION 'workflow % was cancelled; retry it before appending', wf USING ERRCODE = '55000';
    END IF;
    IF w.state <> 'running' THEN
        RAISE EXCEPTION 'workflow % has finished (%); only a running workflow takes new steps', wf, w.state
            USING ERRCODE = '55000';
    END IF;
    result := ordinaut_workflow_add_steps(wf, jobs, w.on_failure, coalesce(default_max_attempts, 4));
    PERFORM ordinaut_workflow_refresh(ARRAY[wf]);
    RETURN result;
END;
$$;

-- Cancels a workflow: steps still waiting are cancelled, waiting jobs move to history as
-- cancelled, running ones are asked to stop (as jobs cancel does). Returns the number
-- of live jobs it could not lock (being claimed or finished at this instant): call
-- again until it returns 0.
CREATE FUNCTION ordinaut_workflow_cancel(wf uuid) RETURNS integer
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    skipped     integer;
    waiting_ids uuid[];
    running_ids uuid[];
BEGIN
    UPDATE workflows SET cancel_requested = true WHERE id = wf;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % not found', wf USING ERRCODE = 'P0002';
    END IF;
    UPDATE workflow_steps
    SET state = 'cancelled', reason = 'workflow cancelled', finished_at = now()
    WHERE workflow_id = wf AND state = 'waiting';

    -- Live jobs, locked without waiting: a finish waiting for the workflow lock we hold
    -- holds its job's row, and waiting for it would deadlock.
    SELECT array_agg(x.id) FILTER (WHERE x.state <> 'running'), array_agg(x.id) FILTER (WHERE x.state = 'running')
    INTO waiting_ids, running_ids
    FROM (
        SELECT d.id, d.state
        FROM workflow_steps s JOIN due_work d ON d.id = s.job_id
        WHERE s.workflow_id = wf AND s.state = 'enqueued' AND NOT d.cancel_requested
        FOR UPDATE OF d SKIP LOCKED
    ) x;

    WITH c AS (
        DELETE FROM due_work d
        WHERE d.id = ANY(waiting_ids)
        RETURNING d.id, d.queue, d.kind, d.payload, d.priority, d.attempt, d.max_attempts, d.unique_key,
                  d.schedule_id, d.scheduled_for, d.metadata, d.run_at, d.created_at, d.attempted_at,
                  d.concurrency_key, d.workflow_id
    )
    INSERT INTO job_history
        (id, queue, kind, payload, priority, state, attempt, max_attempts, unique_key, schedule_id,
         scheduled_for, metadata, output, last_error, run_at, created_at, attempted_at, finished_at,
         concurrency_key, workflow_id)
    SELECT id, queue, kind, payload, priority, 'cancelled', attempt, max_attempts, unique_key, schedule_id,
           scheduled_for, metadata, NULL, 'cancelled with its workflow', run_at, created_at, attempted_at, now(),
           concurrency_key, workflow_id
    FROM c;

    UPDATE due_work d SET cancel_requested = true WHERE d.id = ANY(running_ids);
    PERFORM pg_notify(ordinaut_channel('ordinaut_cancel'), x::text) FROM unnest(running_ids) AS x;

    SELECT count(*) INTO skipped
    FROM workflow_steps s JOIN due_work d ON d.id = s.job_id
    WHERE s.workflow_id = wf AND s.state = 'enqueued' AND NOT d.cancel_requested;
    PERFORM ordinaut_workflow_refresh(ARRAY[wf]);
    RETURN skipped;
END;
$$;

-- Retries a workflow: every failed or cancelled step that ran is enqueued again with a
-- fresh budget of attempts (as jobs retry does), and the steps that were cancelled or
-- skipped because of them wait again (the requeue trigger below). Returns how many
-- steps were re-enqueued.
CREATE FUNCTION ordinaut_workflow_retry(wf uuid) RETURNS integer
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer;
BEGIN
    UPDATE workflows SET cancel_requested = false WHERE id = wf;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % not found', wf USING ERRCODE = 'P0002';
    END IF;
    WITH h AS (
        DELETE FROM job_history h
        USING workflow_steps s
        WHERE s.workflow_id = wf AND s.ran AND s.state IN ('failed', 'cancelled')
          AND h.id = s.job_id AND h.state IN ('failed', 'cancelled')
        RETURNING h.id, h.queue, h.kind, h.payload, h.priority, h.attempt, h.max_attempts, h.unique_key,
                  h.schedule_id, h.scheduled_for, h.metadata, h.last_error, h.created_at,
                  h.concurrency_key, h.workflow_id
    ),
    ins AS (
        INSERT INTO due_work
            (id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, unique_key,
             schedule_id, scheduled_for, metadata, last_error, created_at, concurrency_key, workflow_id)
        SELECT id, queue, kind, payload, priority, now(), 'available', attempt, attempt + max_attempts,
               unique_key, schedule_id, scheduled_for, metadata, last_error, created_at, concurrency_key,
               workflow_id
        FROM h
        RETURNING 1
    )
    SELECT count(*) INTO n FROM ins;
    -- Steps cancelled by the workflow's cancel that never ran wait again too.
    PERFORM ordinaut_workflow_revive(wf, NULL);
    PERFORM ordinaut_workflow_refresh(ARRAY[wf]);
    RETURN n;
END;
$$;

-- Steps of wf that never ran and ended without running (cancelled, skipped) downstream
-- of `from_step` (every such step of wf when NULL) wait again, their pending counts and
-- cleanup triggers recomputed from their dependencies' current states; then the ones
-- with nothing pending are decided and dependencies that are still failed cancel
-- again. The caller holds the workflow's lock.
CREATE FUNCTION ordinaut_workflow_revive(wf uuid, from_step text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    names text[];
    dec   record;
BEGIN
    IF from_step IS NULL THEN
        SELECT array_agg(s.name) INTO names FROM workflow_steps s
        WHERE s.workflow_id = wf AND NOT s.ran AND s.state IN ('cancelled', 'skipped', 'waiting');
    ELSE
        WITH RECURSIVE down(name) AS (
            SELECT e.child FROM workflow_edges e WHERE e.workflow_id = wf AND e.parent = from_step
            UNION
            SELECT e.child FROM down JOIN workflow_edges e ON e.workflow_id = wf AND e.parent = down.name
        )
        SELECT array_agg(s.name) INTO names
        FROM down JOIN workflow_steps s ON s.workflow_id = wf AND s.name = down.name
        WHERE NOT s.ran AND s.state IN ('cancelled', 'skipped', 'waiting');
    END IF;
    IF names IS NULL THEN
        RETURN;
    END IF;
    UPDATE workflow_steps s SET state = 'waiting', reason = NULL, finished_at = NULL
    WHERE s.workflow_id = wf AND s.name = ANY(names);
    WITH deps AS (
        SELECT x.child,
               count(*) FILTER (WHERE p.state IN ('waiting', 'enqueued'))::int AS pending,
               bool_or(p.state IN ('failed', 'cancelled') AND x.on_failure = 'cleanup') AS trig,
               bool_or(p.state IN ('failed', 'cancelled') AND x.on_failure = 'cancel') AS kill
        FROM workflow_edges x
        JOIN workflow_steps p ON p.workflow_id = x.workflow_id AND p.name = x.parent
        WHERE x.workflow_id = wf AND x.child = ANY(names)
        GROUP BY x.child
    )
    UPDATE workflow_steps s
    SET pending = d.pending, triggered = d.trig,
        state = CASE WHEN d.kill THEN 'cancelled' ELSE 'waiting' END,
        reason = CASE WHEN d.kill THEN 'a dependency failed or was cancelled' END,
        finished_at = CASE WHEN d.kill THEN now() END
    FROM deps d
    WHERE s.workflow_id = wf AND s.name = d.child;
    -- Roots among them (a cancelled root that never ran) have no dependency row.
    UPDATE workflow_steps s SET pending = 0, triggered = false
    WHERE s.workflow_id = wf AND s.name = ANY(names)
      AND NOT EXISTS (SELECT 1 FROM workflow_edges x WHERE x.workflow_id = wf AND x.child = s.name);

    PERFORM ordinaut_workflow_propagate(array_agg(wf), array_agg(s.name))
    FROM workflow_steps s
    WHERE s.workflow_id = wf AND s.name = ANY(names) AND s.state = 'cancelled'
    HAVING count(*) > 0;
    SELECT * INTO dec FROM ordinaut_workflow_decide(array_fill(wf, ARRAY[cardinality(names)]), names);
    PERFORM ordinaut_workflow_propagate(dec.done_wfs, dec.done_names);
END;
$$;

-- Every terminal outcome is a job_history insert (finish, rescue, cancel, bulk cancel,
-- workflow cancel): settle the workflow steps among the statement's rows. Plain jobs
-- (workflow_id NULL) make this return after one scan of the transition table.
CREATE FUNCTION ordinaut_workflow_on_history() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    wfs  uuid[];
    ids  uuid[];
    sts  text[];
    outs jsonb[];
    done_wfs   uuid[];
    done_names text[];
BEGIN
    SELECT array_agg(f.workflow_id ORDER BY f.workflow_id, f.id), array_agg(f.id ORDER BY f.workflow_id, f.id),
           array_agg(f.state ORDER BY f.workflow_id, f.id), array_agg(f.output ORDER BY f.workflow_id, f.id)
    INTO wfs, ids, sts, outs
    FROM finished_rows f WHERE f.workflow_id IS NOT NULL;
    IF wfs IS NULL THEN
        RETURN NULL;
    END IF;
    -- One lock per workflow, in id order: concurrent finishes never deadlock on them.
    PERFORM 1 FROM workflows w WHERE w.id = ANY(wfs) ORDER BY w.id FOR UPDATE;
    -- Only a step whose job was live counts: a retried job's earlier outcome never does.
    WITH f AS (
        SELECT * FROM unnest(ids, sts, outs) AS f(job_id, state, output)
    ),
    settled AS (
        UPDATE workflow_steps s
        SET state = f.state, output = f.output, finished_at = now()
        FROM f
        WHERE s.job_id = f.job_id AND s.state = 'enqueued'
        RETURNING s.workflow_id, s.name
    )
    SELECT array_agg(workflow_id), array_agg(name) INTO done_wfs, done_names FROM settled;
    PERFORM ordinaut_workflow_propagate(done_wfs, done_names);
    PERFORM ordinaut_workflow_refresh(ARRAY(SELECT DISTINCT unnest(wfs)));
    RETURN NULL;
END;
$$;
CREATE TRIGGER job_history_workflow_settle
    AFTER INSERT ON job_history
    REFERENCING NEW TABLE AS finished_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ordinaut_workflow_on_history();

-- A workflow job back in due_work from history (jobs retry, bulk retry, workflow
-- retry): its step is enqueued again and what was cancelled or skipped because of it
-- waits again. Activations and submits insert steps already enqueued: a no-op.
CREATE FUNCTION ordinaut_workflow_on_requeue() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    step text;
BEGIN
    PERFORM 1 FROM workflows w WHERE w.id = NEW.workflow_id FOR UPDATE;
    UPDATE workflow_steps s
    SET state = 'enqueued', output = NULL, reason = NULL, finished_at = NULL, ran = true
    WHERE s.job_id = NEW.id AND s.state IN ('failed', 'cancelled', 'completed')
    RETURNING s.name INTO step;
    IF step IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE workflows SET cancel_requested = false WHERE id = NEW.workflow_id;
    PERFORM ordinaut_workflow_revive(NEW.workflow_id, step);
    PERFORM ordinaut_workflow_refresh(ARRAY[NEW.workflow_id]);
    RETURN NULL;
END;
$$;
CREATE TRIGGER due_work_workflow_requeue
    AFTER INSERT ON due_work
    FOR EACH ROW WHEN (NEW.workflow_id IS NOT NULL)
    EXECUTE FUNCTION ordinaut_workflow_on_requeue();
