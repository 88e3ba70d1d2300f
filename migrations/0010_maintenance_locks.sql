-- Maintenance that never stalls the fleet, and indexes for what used to scan.
--
-- 1. Partition DDL waits for its locks at most `lock_wait` and is retried later: a
--    pg_dump or a long read of job_history holds ACCESS SHARE on every partition, and
--    DDL queued behind it used to queue every finish, cancel and rescue behind itself
--    for the length of the dump.
--    - create: CREATE TABLE (LIKE parent) + ATTACH PARTITION, which takes SHARE UPDATE
--      EXCLUSIVE on the parent (inserts and reads go on) and ACCESS EXCLUSIVE on the
--      default partition only, instead of CREATE TABLE .. PARTITION OF (ACCESS
--      EXCLUSIVE on the parent).
--    - drop: the old partition is locked first, on its own, so a reader of it makes
--      the drop give up before it asks for the parent; the parent's ACCESS EXCLUSIVE is
--      then asked for with the same short wait. (DETACH CONCURRENTLY is refused while a
--      default partition exists.)
--    Each call is one partition in its own transaction, so no lock is held across
--    partitions; the retention service loops over them.
-- 2. The default partitions are aged out by the same retention, in bounded deletes
--    served by an index on finished_at.
-- 3. GET /v1/jobs?queue=/kind= walks (queue, id) / (kind, id) indexes newest first,
--    instead of every partition's id index filtered row by row.
-- 4. The overlap check of `overlap = "skip"` schedules is an index lookup.
-- 5. schedules.declared_by names the scheduler that last synced a declared schedule,
--    so the API's refusal to take one over can say whose it is.

ALTER TABLE schedules ADD COLUMN declared_by text;

-- IF NOT EXISTS: an operator with a large backlog may have built it CONCURRENTLY
-- beforehand (README "Upgrading"); this build holds due_work's writes meanwhile.
CREATE INDEX IF NOT EXISTS due_work_schedule_idx ON due_work (schedule_id) WHERE schedule_id IS NOT NULL;

-- ON ONLY: the parent's index is created without building one on every existing
-- daily partition under a lock (30 days of history can take minutes, and every finish
-- would wait). Partitions created from now on get theirs at ATTACH, and the planner uses
-- each partition's own index; daily partitions made before this migration have none
-- and age out within HISTORY_RETENTION_DAYS (README "Upgrading" has the CONCURRENTLY
-- commands to index them at once). The default partition is indexed here: it is empty
-- or small (rows of days that had no partition).
CREATE INDEX job_history_queue_id_idx ON ONLY job_history (queue, id);
CREATE INDEX job_history_kind_id_idx ON ONLY job_history (kind, id);
CREATE INDEX job_history_default_queue_id_idx ON job_history_default (queue, id);
CREATE INDEX job_history_default_kind_id_idx ON job_history_default (kind, id);
ALTER INDEX job_history_queue_id_idx ATTACH PARTITION job_history_default_queue_id_idx;
ALTER INDEX job_history_kind_id_idx ATTACH PARTITION job_history_default_kind_id_idx;

-- Only the default partitions: their rows are aged out by DELETE, not by DROP.
CREATE INDEX job_history_default_finished_idx ON job_history_default (finished_at);
CREATE INDEX job_attempts_default_finished_idx ON job_attempts_default (finished_at);

-- Creates one daily partition of `parent` ('job_history' or 'job_attempts') for `day`.
-- Returns 'created', 'exists', 'deferred' (a lock was not granted within lock_wait:
-- try again later) or 'occupied' (the default partition already holds rows of that
-- day; they stay there and age out with it).
CREATE FUNCTION ordinaut_create_partition(parent text, day date, lock_wait interval DEFAULT '200ms')
RETURNS text
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    part     text := parent || '_p' || to_char(day, 'YYYYMMDD');
    previous text := current_setting('lock_timeout');
    result   text;
    occupied boolean;
BEGIN
    IF parent NOT IN ('job_history', 'job_attempts') THEN
        RAISE EXCEPTION 'ordinaut_create_partition: unknown table %', parent USING ERRCODE = '22023';
    END IF;
    IF to_regclass(part) IS NOT NULL THEN
        RETURN 'exists';
    END IF;
    -- Rows of that day already in the default partition: ATTACH would scan the whole
    -- default under its ACCESS EXCLUSIVE lock only to fail. Answered from the default's
    -- finished_at index instead, without a lock, every hour the day stays occupied.
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE finished_at >= $1 AND finished_at < $2)',
                   parent || '_default')
        INTO occupied USING day::timestamptz, (day + 1)::timestamptz;
    IF occupied THEN
        RETURN 'occupied';
    END IF;
    PERFORM set_config('lock_timeout', (extract(epoch FROM lock_wait) * 1000)::bigint || 'ms', true);
    BEGIN
        -- Serialise creators of the same partition (processes starting at once).
        PERFORM pg_advisory_xact_lock(hashtext('ordinaut_partition'), hashtext(part));
        IF to_regclass(part) IS NOT NULL THEN
            result := 'exists';
        ELSE
            -- format(%I) quotes the identifiers; only our own table names reach it.
            EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           parent, part, day::timestamptz, (day + 1)::timestamptz);
            result := 'created';
        END IF;
    EXCEPTION
        WHEN lock_not_available THEN
            result := 'deferred';
        WHEN check_violation THEN
            result := 'occupied';
        WHEN duplicate_table THEN
            result := 'exists';
    END;
    PERFORM set_config('lock_timeout', previous, true);
    RETURN result;
END;
$$;

-- Drops one daily partition (a name returned by ordinaut_partitions_before). Returns
-- 'dropped', 'gone' or 'deferred' (a lock was not granted within lock_wait).
CREATE FUNCTION ordinaut_drop_partition(part text, lock_wait interval DEFAULT '200ms')
RETURNS text
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    previous text := current_setting('lock_timeout');
    result   text;
BEGIN
    IF part !~ '^job_(history|attempts)_p[0-9]{8}$' THEN
        RAISE EXCEPTION 'ordinaut_drop_partition: % is not a daily partition', part USING ERRCODE = '22023';
    END IF;
    IF to_regclass(part) IS NULL THEN
        RETURN 'gone';
    END IF;
    PERFORM set_config('lock_timeout', (extract(epoch FROM lock_wait) * 1000)::bigint || 'ms', true);
    BEGIN
        -- The partition alone first: a reader of it (a dump, a long scan) makes us give
        -- up here, before anything waits on the parent that every finish inserts into.
        EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', part);
        EXECUTE format('DROP TABLE %I', part);
        result := 'dropped';
    EXCEPTION
        WHEN lock_not_available THEN
            result := 'deferred';
        WHEN undefined_table THEN
            result := 'gone';
    END;
    PERFORM set_config('lock_timeout', previous, true);
    RETURN result;
END;
$$;

-- Daily partitions of job_history and job_attempts (in this schema) wholly older than
-- `before`, oldest first.
CREATE FUNCTION ordinaut_partitions_before(before date)
RETURNS SETOF text
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT c.relname::text
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_class p ON p.oid = i.inhparent
    JOIN pg_namespace n ON n.oid = p.relnamespace AND n.nspname = current_schema()
    WHERE p.relname IN ('job_history', 'job_attempts')
      AND c.relname ~ '_p[0-9]{8}$'
      AND to_date(right(c.relname, 8), 'YYYYMMDD') < before
    ORDER BY right(c.relname, 8), c.relname
$$;

-- The old entry points keep their signatures (operators and every process start call
-- ordinaut_ensure_partitions); both now go through the lock-bounded functions above and
-- skip what they cannot lock instead of waiting. One statement holds each lock it got
-- until it ends, so the retention service calls the per-partition functions instead.
CREATE OR REPLACE FUNCTION ordinaut_ensure_partitions(from_day date, to_day date) RETURNS integer
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    d       date;
    parent  text;
    created integer := 0;
BEGIN
    FOREACH parent IN ARRAY ARRAY['job_history', 'job_attempts'] LOOP
        d := from_day;
        WHILE d <= to_day LOOP
            IF ordinaut_create_partition(parent, d) = 'created' THEN
                created := created + 1;
            END IF;
            d := d + 1;
        END LOOP;
    END LOOP;
    RETURN created;
END;
$$;

CREATE OR REPLACE FUNCTION ordinaut_drop_partitions_before(before date) RETURNS integer
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    part    text;
    dropped integer := 0;
BEGIN
    FOR part IN SELECT ordinaut_partitions_before(before) LOOP
        IF ordinaut_drop_partition(part) = 'dropped' THEN
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END;
$$;

-- Deletes up to `batch` rows finished before `before` from each default partition (rows
-- of days that had no partition). Row locks only: a dump or a reader never waits on it.
-- Returns the rows deleted; the caller repeats while a batch comes back full.
CREATE FUNCTION ordinaut_prune_default_partitions(before timestamptz, batch integer)
RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n     bigint;
    total bigint := 0;
BEGIN
    DELETE FROM job_history_default
    WHERE ctid = ANY (ARRAY(SELECT ctid FROM job_history_default WHERE finished_at < before
                            ORDER BY finished_at LIMIT batch));
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    DELETE FROM job_attempts_default
    WHERE ctid = ANY (ARRAY(SELECT ctid FROM job_attempts_default WHERE finished_at < before
                            ORDER BY finished_at LIMIT batch));
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    RETURN total;
END;
$$;
