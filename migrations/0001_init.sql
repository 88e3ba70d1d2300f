-- Ordinaut schema, version 1.
-- Every object is created unqualified: the connection's search_path names the
-- configured schema (ORDINAUT_SCHEMA), so one database can hold several installs.

-- UUIDv7 (time-ordered) ids for jobs created by SQL callers; Rust callers make their
-- own with the uuid crate. Time-ordered keys keep the primary-key index appending at
-- its right edge instead of splitting random pages.
CREATE FUNCTION ordinaut_uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
  SELECT encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
              PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
              FROM 1 FOR 6),
      52, 1), 53, 1),
    'hex')::uuid
$$;

-- Per-queue settings. A queue needs no row to be used; a row exists once an operator
-- pauses it or sets a default.
CREATE TABLE queues (
    name            text PRIMARY KEY,
    paused          boolean NOT NULL DEFAULT false,
    max_attempts    integer CONSTRAINT queues_max_attempts_range CHECK (max_attempts BETWEEN 1 AND 1000),
    timeout_ms      bigint  CONSTRAINT queues_timeout_positive CHECK (timeout_ms > 0),
    backoff_base_ms bigint  CONSTRAINT queues_backoff_base_positive CHECK (backoff_base_ms > 0),
    backoff_max_ms  bigint  CONSTRAINT queues_backoff_max_positive CHECK (backoff_max_ms > 0),
    -- false: completed jobs are deleted instead of kept in job_history.
    keep_completed  boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per live job. Finished jobs leave this table (to job_history), so its
-- indexes only ever cover live work. Public surface: operators read it with psql.
CREATE TABLE due_work (
    id               uuid PRIMARY KEY,
    queue            text NOT NULL,
    kind             text NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    priority         smallint NOT NULL DEFAULT 0
                     CONSTRAINT due_work_priority_range CHECK (priority BETWEEN -100 AND 100),
    run_at           timestamptz NOT NULL DEFAULT now(),
    -- 'scheduled' rows whose run_at has passed are due; they are claimed as they are,
    -- with no promotion write (readers derive the effective state).
    state            text NOT NULL DEFAULT 'available'
                     CONSTRAINT due_work_state_check CHECK (state IN ('scheduled', 'available', 'running')),
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 4
                     CONSTRAINT due_work_max_attempts_range CHECK (max_attempts >= 1),
    lease_owner      uuid,
    lease_expires_at timestamptz,
    attempted_at     timestamptz,
    timeout_ms       bigint CONSTRAINT due_work_timeout_positive CHECK (timeout_ms > 0),
    unique_key       text,
    schedule_id      uuid,
    scheduled_for    timestamptz,
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_error       text,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT due_work_lease_consistent CHECK ((state = 'running') = (lease_owner IS NOT NULL))
);

-- The claim index: only waiting rows, in claim order per queue.
CREATE INDEX due_work_claim_idx ON due_work (queue, priority, run_at, id) WHERE state <> 'running';
-- Running rows only: bounded by the cluster's worker slots, so tiny. Serves lease
-- expiry rescue and the dead-worker hand-back.
CREATE INDEX due_work_running_idx ON due_work (lease_expires_at) WHERE state = 'running';
-- Idempotency: at most one live job per unique key.
CREATE UNIQUE INDEX due_work_unique_key_idx ON due_work (unique_key) WHERE unique_key IS NOT NULL;

-- Terminal jobs, partitioned by finish time so retention drops partitions.
CREATE TABLE job_history (
    id            uuid NOT NULL,
    queue         text NOT NULL,
    kind          text NOT NULL,
    payload       jsonb NOT NULL,
    priority      smallint NOT NULL,
    state         text NOT NULL CONSTRAINT job_history_state_check CHECK (state IN ('completed', 'failed', 'cancelled')),
    attempt       integer NOT NULL,
    max_attempts  integer NOT NULL,
    unique_key    text,
    schedule_id   uuid,
    scheduled_for timestamptz,
    metadata      jsonb NOT NULL,
    output        jsonb,
    last_error    text,
    run_at        timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    attempted_at  timestamptz,
    finished_at   timestamptz NOT NULL,
    -- The final attempt's worker and captured output. A completed job's last attempt
    -- is recorded here and not again in job_attempts: one insert per job fewer on the
    -- hot path (see docs/ARCHITECTURE.md for the figures).
    worker_id     uuid,
    log           text
) PARTITION BY RANGE (finished_at);
CREATE INDEX job_history_id_idx ON job_history (id);
-- Failures only: completed rows, the bulk, pay for no second index.
CREATE INDEX job_history_failed_idx ON job_history (queue, finished_at) WHERE state = 'failed';

-- One row per finished attempt, except a completed job's final attempt (kept in
-- job_history). The running attempt lives in due_work.attempted_at.
CREATE TABLE job_attempts (
    job_id      uuid NOT NULL,
    attempt     integer NOT NULL,
    worker_id   uuid,
    started_at  timestamptz,
    finished_at timestamptz NOT NULL,
    outcome     text NOT NULL CONSTRAINT job_attempts_outcome_check
                CHECK (outcome IN ('completed', 'retry', 'failed', 'snoozed', 'cancelled', 'lost', 'interrupted')),
    error       text,
    log         text
) PARTITION BY RANGE (finished_at);
CREATE INDEX job_attempts_job_idx ON job_attempts (job_id, attempt);

-- Every finished attempt of every job: job_attempts plus the final attempt of each
-- completed job, which lives in its job_history row. Public surface for psql.
CREATE VIEW all_attempts AS
    SELECT job_id, attempt, worker_id, started_at, finished_at, outcome, error, log
    FROM job_attempts
    UNION ALL
    SELECT id, attempt, worker_id, attempted_at, finished_at, 'completed', NULL, log
    FROM job_history WHERE state = 'completed';

-- Creates the daily partitions of job_history and job_attempts covering [from_day, to_day].
-- A default partition catches anything outside them, so a missing partition never
-- loses a finished job.
CREATE FUNCTION ordinaut_ensure_partitions(from_day date, to_day date) RETURNS integer
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    d       date;
    parent  text;
    created integer := 0;
    part    text;
BEGIN
    -- Serialise concurrent callers (several processes starting at once): CREATE TABLE
    -- IF NOT EXISTS is not safe against a concurrent create of the same name.
    PERFORM pg_advisory_xact_lock(hashtext('ordinaut_ensure_partitions'));
    FOREACH parent IN ARRAY ARRAY['job_history', 'job_attempts'] LOOP
        d := from_day;
        WHILE d <= to_day LOOP
            part := parent || '_p' || to_char(d, 'YYYYMMDD');
            IF to_regclass(part) IS NULL THEN
                BEGIN
                    -- format(%I) quotes the identifiers; only our own table names reach it.
                    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                                   part, parent, d::timestamptz, (d + 1)::timestamptz);
                    created := created + 1;
                EXCEPTION WHEN check_violation OR duplicate_table THEN
                    -- Rows for that day already sit in the default partition: leave
                    -- them there rather than fail; the day ages out as a whole later.
                    NULL;
                END;
            END IF;
            d := d + 1;
        END LOOP;
    END LOOP;
    RETURN created;
END;
$$;

CREATE TABLE job_history_default PARTITION OF job_history DEFAULT;
CREATE TABLE job_attempts_default PARTITION OF job_attempts DEFAULT;

-- Live worker processes. Each holds the session advisory lock
-- (ordinaut_worker_lock_class(), lock_key) for its whole life.
CREATE SEQUENCE workers_lock_key_seq AS integer MAXVALUE 2147483647 CYCLE;
CREATE TABLE workers (
    id                uuid PRIMARY KEY,
    lock_key          integer NOT NULL,
    hostname          text NOT NULL,
    pid               integer NOT NULL,
    queues            text[] NOT NULL,
    concurrency       integer NOT NULL,
    version           text NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- One NOTIFY per enqueue statement (not per row), naming each queue that got
-- immediately runnable work. Postgres folds identical notifications in a transaction.
CREATE FUNCTION ordinaut_notify_enqueued() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_notify('ordinaut_enqueued', q.queue)
    FROM (SELECT DISTINCT queue FROM new_rows WHERE state = 'available') AS q;
    RETURN NULL;
END;
$$;
CREATE TRIGGER due_work_notify_enqueued
    AFTER INSERT ON due_work
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ordinaut_notify_enqueued();

-- Transactional enqueue: call inside your own transaction; the job exists if and only
-- if that transaction commits. Returns the job id (the existing live job's id when
-- unique_key matches one).
CREATE FUNCTION ordinaut_enqueue(
    queue        text,
    kind         text,
    payload      jsonb DEFAULT '{}'::jsonb,
    run_at       timestamptz DEFAULT NULL,
    priority     smallint DEFAULT 0,
    max_attempts integer DEFAULT NULL,
    unique_key   text DEFAULT NULL,
    timeout      interval DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
#variable_conflict use_column
DECLARE
    new_id   uuid := ordinaut_uuid_v7();
    found_id uuid;
BEGIN
    IF queue IS NULL OR queue !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' THEN
        RAISE EXCEPTION 'ordinaut_enqueue: invalid queue name %', coalesce(queue, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF kind IS NULL OR kind !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' THEN
        RAISE EXCEPTION 'ordinaut_enqueue: invalid kind %', coalesce(kind, 'NULL') USING ERRCODE = '22023';
    END IF;
    LOOP
        INSERT INTO due_work AS d (id, queue, kind, payload, priority, run_at, state, max_attempts, unique_key, timeout_ms)
        VALUES (new_id, queue, kind, coalesce(payload, '{}'::jsonb), coalesce(priority, 0),
                coalesce(run_at, now()),
                CASE WHEN run_at > now() THEN 'scheduled' ELSE 'available' END,
                coalesce(max_attempts, (SELECT q.max_attempts FROM queues q WHERE q.name = queue), 4),
                unique_key,
                (extract(epoch FROM timeout) * 1000)::bigint)
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
