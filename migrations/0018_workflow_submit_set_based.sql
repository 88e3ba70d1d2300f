-- Workflow submission, set-based (issue 19). 0016's ordinaut_workflow_add_steps looped over
-- the steps in plpgsql: per step about fifteen validation expressions, an EXISTS, one
-- INSERT, then per dependency another EXISTS and INSERT, so a four-step diamond ran some
-- forty statements. Here the steps are validated by one query (the first problem in
-- array order wins, in the same order of checks and with the same messages as 0016),
-- inserted by one INSERT ... SELECT with their pending counts already computed from
-- their dependencies, and the edges validated and inserted by one statement each.
-- Semantics are unchanged: same errors, same states, same payloads.
--
-- The requeue trigger of 0016 also ran for every activation (the dependent's job is
-- inserted into due_work already enqueued, a no-op for it) and took the workflow's lock
-- to find that out. It now looks first: only a step whose state says its job came back
-- from history (failed, cancelled, completed) goes on to the lock. Such a step changes
-- state only when its own job moves, which is the insert being handled, so the unlocked
-- look cannot miss one.

CREATE OR REPLACE FUNCTION ordinaut_workflow_add_steps(wf uuid, jobs jsonb, policy text, default_max_attempts integer)
RETURNS jsonb
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
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
    roots    text[];
    d_child  text[];
    d_parent text[];
    d_pol    text[];
    d_ord    integer[];
    killed   text[];
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

    -- Every step's first problem, checked in 0016's order; the lowest index reports.
    -- Each check runs only when the ones before it passed (CASE evaluates in order),
    -- so a cast never meets a value of the wrong type.
    SELECT x.msg INTO bad FROM (
        SELECT e.ord, format('jobs[%s]', e.ord - 1) || CASE
            WHEN jsonb_typeof(e.job) <> 'object' THEN ': must be an object'
            WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(e.job) AS key
                         WHERE key NOT IN ('name', 'queue', 'kind', 'payload', 'priority', 'max_attempts',
                                           'timeout_ms', 'metadata', 'concurrency_key', 'depends_on', 'on_failure'))
                THEN ': unknown field(s) ' || (
                    SELECT string_agg(key, ', ') FROM jsonb_object_keys(e.job) AS key
                    WHERE key NOT IN ('name', 'queue', 'kind', 'payload', 'priority', 'max_attempts',
                                      'timeout_ms', 'metadata', 'concurrency_key', 'depends_on', 'on_failure'))
            WHEN jsonb_typeof(e.job->'name') IS DISTINCT FROM 'string' OR NOT (e.job->>'name' ~ name_re) THEN
                '.name: required, 1-128 letters, digits or _.:- starting with a letter or digit'
            WHEN jsonb_typeof(e.job->'queue') IS DISTINCT FROM 'string' OR NOT (e.job->>'queue' ~ name_re) THEN
                '.queue: invalid queue name'
            WHEN jsonb_typeof(e.job->'kind') IS DISTINCT FROM 'string' OR NOT (e.job->>'kind' ~ name_re) THEN
                '.kind: invalid kind'
            WHEN e.job ? 'payload' AND jsonb_typeof(e.job->'payload') <> 'object' THEN
                '.payload: a workflow step''s payload must be a JSON object'
            WHEN e.job->'payload' ? '_workflow' THEN
                '.payload: the key _workflow is reserved (dependencies'' outcomes)'
            WHEN e.job ? 'metadata' AND jsonb_typeof(e.job->'metadata') <> 'object' THEN
                '.metadata: must be an object'
            WHEN e.job ? 'priority' AND CASE WHEN jsonb_typeof(e.job->'priority') <> 'number' THEN true
                                             ELSE (e.job->>'priority')::numeric NOT BETWEEN -100 AND 100
                                                  OR (e.job->>'priority')::numeric % 1 <> 0 END THEN
                '.priority: must be an integer in -100..100'
            WHEN e.job ? 'max_attempts' AND CASE WHEN jsonb_typeof(e.job->'max_attempts') <> 'number' THEN true
                                                 ELSE (e.job->>'max_attempts')::numeric NOT BETWEEN 1 AND 1000
                                                      OR (e.job->>'max_attempts')::numeric % 1 <> 0 END THEN
                '.max_attempts: must be an integer in 1..1000'
            WHEN e.job ? 'timeout_ms' AND CASE WHEN jsonb_typeof(e.job->'timeout_ms') <> 'number' THEN true
                                               ELSE (e.job->>'timeout_ms')::numeric NOT BETWEEN 1 AND 9007199254740991
                                                    OR (e.job->>'timeout_ms')::numeric % 1 <> 0 END THEN
                '.timeout_ms: must be a positive integer'
            WHEN e.job ? 'concurrency_key' AND (jsonb_typeof(e.job->'concurrency_key') <> 'string'
                                                OR length(e.job->>'concurrency_key') NOT BETWEEN 1 AND 512) THEN
                '.concurrency_key: must be a string of 1-512 characters'
            WHEN e.job ? 'on_failure' AND (e.job->>'on_failure') NOT IN ('cancel', 'ignore', 'cleanup') THEN
                '.on_failure: must be cancel, ignore or cleanup'
            WHEN e.job ? 'depends_on' AND jsonb_typeof(e.job->'depends_on') <> 'array' THEN
                '.depends_on: must be an array of step names'
            -- A name taken by an existing step, or by an earlier step of this array.
            WHEN e.nth > 1
                 OR EXISTS (SELECT 1 FROM workflow_steps s WHERE s.workflow_id = wf AND s.name = e.job->>'name') THEN
                format('.name: the workflow already has a step named %s', e.job->>'name')
            END AS msg
        FROM (SELECT a.job, a.ord, row_number() OVER (PARTITION BY a.job->>'name' ORDER BY a.ord) AS nth
              FROM jsonb_array_elements(jobs) WITH ORDINALITY AS a(job, ord)) e
    ) x
    WHERE x.msg IS NOT NULL
    ORDER BY x.ord
    LIMIT 1;
    IF bad IS NOT NULL THEN
        PERFORM ordinaut_workflow_invalid(bad);
    END IF;

    -- Names of the new steps -> their index (1-based), for the checks below.
    SELECT jsonb_object_agg(e.value->>'name', e.ord) INTO idx
    FROM jsonb_array_elements(jobs) WITH ORDINALITY AS e(value, ord);

    -- Dependencies, in (step, dependency) order; the first problem reports, checked as
    -- 0016 checked them. Kept in arrays (not a temporary table, which a caller's
    -- PREPARE TRANSACTION would refuse).
    SELECT array_agg(d.child ORDER BY d.ord, d.dord), array_agg(d.parent ORDER BY d.ord, d.dord),
           array_agg(d.pol ORDER BY d.ord, d.dord), array_agg(d.dord ORDER BY d.ord, d.dord),
           (array_agg(d.msg ORDER BY d.ord, d.dord) FILTER (WHERE d.msg IS NOT NULL))[1]
    INTO d_child, d_parent, d_pol, d_ord, bad
    FROM (
      SELECT d.*, CASE
                WHEN d.parent IS NULL THEN
                    format('jobs[%s].depends_on[%s]: must be a step name or {"name": ..., "on_failure": ...}',
                           d.ord - 1, d.dord - 1)
                WHEN d.pol NOT IN ('cancel', 'ignore', 'cleanup') THEN
                    format('jobs[%s].depends_on[%s].on_failure: must be cancel, ignore or cleanup',
                           d.ord - 1, d.dord - 1)
                WHEN d.parent = d.child THEN
                    format('jobs[%s].depends_on: %s cannot depend on itself', d.ord - 1, d.parent)
                WHEN NOT idx ? d.parent
                     AND NOT EXISTS (SELECT 1 FROM workflow_steps s WHERE s.workflow_id = wf AND s.name = d.parent) THEN
                    format('jobs[%s].depends_on: no step named %s in this workflow', d.ord - 1, d.parent)
                END AS msg
      FROM (
        SELECT e.ord::int, dp.ord::int AS dord, e.job->>'name' AS child,
               CASE WHEN jsonb_typeof(dp.value) = 'string' THEN dp.value #>> '{}'
                    WHEN jsonb_typeof(dp.value) = 'object' AND jsonb_typeof(dp.value->'name') = 'string'
                         AND NOT EXISTS (SELECT 1 FROM jsonb_object_keys(dp.value) AS dk(key)
                                         WHERE dk.key NOT IN ('name', 'on_failure'))
                        THEN dp.value->>'name' END AS parent,
               CASE WHEN jsonb_typeof(dp.value) = 'object'
                        THEN coalesce(dp.value->>'on_failure', e.job->>'on_failure', policy)
                    ELSE coalesce(e.job->>'on_failure', policy) END AS pol
        FROM jsonb_array_elements(jobs) WITH ORDINALITY AS e(job, ord)
        CROSS JOIN LATERAL jsonb_array_elements(e.job->'depends_on') WITH ORDINALITY AS dp(value, ord)
        WHERE e.job ? 'depends_on'
      ) d
    ) d;
    IF bad IS NOT NULL THEN
        PERFORM ordinaut_workflow_invalid(bad);
    END IF;

    -- Cycles can only run through the new steps (an existing step never gains a
    -- dependency). Kahn's algorithm over them, O(steps + edges): a step left with
    -- unmet dependencies is on or behind a cycle.
    SELECT array_agg((idx->>x.parent)::int ORDER BY (idx->>x.parent)::int),
           array_agg((idx->>x.child)::int ORDER BY (idx->>x.parent)::int)
    INTO ep, ec
    FROM (SELECT DISTINCT d.parent, d.child FROM unnest(d_parent, d_child) AS d(parent, child) WHERE idx ? d.parent) x;
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

    -- The steps, with their pending counts: a dependency on a new step is pending; one on
    -- an existing step (append) counts only while that step has not ended, and one that
    -- already failed or was cancelled cancels (cancel edge) or triggers (cleanup edge) at
    -- once. A duplicate dependency counts once, with its first policy (0016's ON CONFLICT).
    WITH edges AS (
        SELECT DISTINCT ON (d.child, d.parent) d.child, d.parent, d.on_failure
        FROM unnest(d_child, d_parent, d_pol, d_ord) AS d(child, parent, on_failure, dord)
        ORDER BY d.child, d.parent, d.dord
    ),
    deps AS (
        SELECT x.child,
               count(*) FILTER (WHERE p.state IS NULL OR p.state IN ('waiting', 'enqueued'))::int AS pending,
               bool_or(x.on_failure = 'cleanup') AS cleanup,
               coalesce(bool_or(p.state IN ('failed', 'cancelled') AND x.on_failure = 'cleanup'), false) AS trig,
               coalesce(bool_or(p.state IN ('failed', 'cancelled') AND x.on_failure = 'cancel'), false) AS kill
        FROM edges x
        LEFT JOIN workflow_steps p ON p.workflow_id = wf AND p.name = x.parent
        GROUP BY x.child
    ),
    ins AS (
        INSERT INTO workflow_steps
            (workflow_id, name, job_id, state, pending, cleanup, triggered, reason, finished_at,
             queue, kind, payload, priority, max_attempts, timeout_ms, metadata, concurrency_key)
        SELECT wf, e.job->>'name', ordinaut_uuid_v7(),
               CASE WHEN d.kill THEN 'cancelled' ELSE 'waiting' END,
               coalesce(d.pending, 0), coalesce(d.cleanup, false), coalesce(d.trig, false),
               CASE WHEN d.kill THEN 'a dependency failed or was cancelled' END,
               CASE WHEN d.kill THEN now() END,
               e.job->>'queue', e.job->>'kind',
               coalesce(e.job->'payload', '{}'::jsonb), coalesce((e.job->>'priority')::smallint, 0),
               coalesce((e.job->>'max_attempts')::integer, q.max_attempts, default_max_attempts),
               (e.job->>'timeout_ms')::bigint, coalesce(e.job->'metadata', '{}'::jsonb),
               e.job->>'concurrency_key'
        FROM jsonb_array_elements(jobs) WITH ORDINALITY AS e(job, ord)
        LEFT JOIN deps d ON d.child = e.job->>'name'
        LEFT JOIN queues q ON q.name = e.job->>'queue'
        ORDER BY e.ord
        RETURNING name, state, pending
    ),
    edge_ins AS (
        INSERT INTO workflow_edges (workflow_id, parent, child, on_failure)
        SELECT wf, x.parent, x.child, x.on_failure FROM edges x
        RETURNING 1
    )
    SELECT array_agg(name) FILTER (WHERE state = 'waiting' AND pending = 0),
           array_agg(name) FILTER (WHERE state = 'cancelled')
    INTO roots, killed
    FROM ins;

    IF killed IS NOT NULL THEN
        PERFORM ordinaut_workflow_propagate(array_fill(wf, ARRAY[cardinality(killed)]), killed);
    END IF;
    IF roots IS NOT NULL THEN
        SELECT * INTO dec FROM ordinaut_workflow_decide(array_fill(wf, ARRAY[cardinality(roots)]), roots);
        PERFORM ordinaut_workflow_propagate(dec.done_wfs, dec.done_names);
    END IF;

    SELECT jsonb_agg(jsonb_build_object('name', s.name, 'job_id', s.job_id) ORDER BY e.ord) INTO result
    FROM jsonb_array_elements(jobs) WITH ORDINALITY AS e(value, ord)
    JOIN workflow_steps s ON s.workflow_id = wf AND s.name = e.value->>'name';
    RETURN result;
END;
$$;

CREATE OR REPLACE FUNCTION ordinaut_workflow_on_requeue() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    step text;
BEGIN
    -- An activation or a submit inserts its step's job already enqueued: nothing to do.
    IF NOT EXISTS (SELECT 1 FROM workflow_steps s
                   WHERE s.job_id = NEW.id AND s.state IN ('failed', 'cancelled', 'completed')) THEN
        RETURN NULL;
    END IF;
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
