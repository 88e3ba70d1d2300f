-- Durable cron schedules and the record of every fire time.

CREATE TABLE schedules (
    id               uuid PRIMARY KEY,
    name             text NOT NULL CONSTRAINT schedules_name_key UNIQUE,
    cron             text NOT NULL,
    timezone         text NOT NULL,
    -- Job template.
    queue            text NOT NULL,
    kind             text NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    priority         smallint NOT NULL DEFAULT 0 CONSTRAINT schedules_priority_range CHECK (priority BETWEEN -100 AND 100),
    max_attempts     integer CONSTRAINT schedules_max_attempts_range CHECK (max_attempts BETWEEN 1 AND 1000),
    timeout_ms       bigint CONSTRAINT schedules_timeout_positive CHECK (timeout_ms > 0),
    unique_key       text,
    -- 'allow': fire regardless; 'skip': skip a fire while a job of this schedule is live.
    overlap          text NOT NULL DEFAULT 'allow' CONSTRAINT schedules_overlap_check CHECK (overlap IN ('allow', 'skip')),
    -- NULL: the configured SCHEDULER_MISFIRE_GRACE_TIME.
    misfire_grace_ms bigint CONSTRAINT schedules_misfire_grace_positive CHECK (misfire_grace_ms >= 0),
    paused           boolean NOT NULL DEFAULT false,
    -- Declared in ordinaut.toml: created, updated and removed with the file.
    declared         boolean NOT NULL DEFAULT false,
    next_run_at      timestamptz NOT NULL,
    last_run_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE NOT paused;

-- One row per fire time: the primary key makes a double fire impossible even if two
-- schedulers raced past the row lock. Misfires record the first missed time and how
-- many were skipped.
CREATE TABLE schedule_fires (
    schedule_id uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    fire_time   timestamptz NOT NULL,
    outcome     text NOT NULL CONSTRAINT schedule_fires_outcome_check
                CHECK (outcome IN ('enqueued', 'triggered', 'skipped_misfire', 'skipped_overlap', 'deduplicated')),
    job_id      uuid,
    skipped     integer NOT NULL DEFAULT 0,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, fire_time)
);

-- Drops daily history/attempt partitions wholly older than `before`. Returns how many.
CREATE FUNCTION ordinaut_drop_partitions_before(before date) RETURNS integer
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    part    record;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ordinaut_ensure_partitions'));
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        JOIN pg_namespace n ON n.oid = p.relnamespace AND n.nspname = current_schema()
        WHERE p.relname IN ('job_history', 'job_attempts')
          AND c.relname ~ '_p[0-9]{8}$'
          AND to_date(right(c.relname, 8), 'YYYYMMDD') < before
    LOOP
        -- format(%I) quotes the identifier; only our own partition names reach it.
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END;
$$;
