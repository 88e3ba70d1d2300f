-- The dashboard at scale: searching jobs by JSON path, the overview's statistics over
-- a large history, and what each worker holds beyond its busy slots.

-- Whether a SQL/JSON path matches a document: a predicate path ($.port > 1024)
-- matches when it is true; any other path ($.tags[*] ? (@ == "prod")) when it finds
-- something. Silent: errors inside a document (strict-mode misses, type mismatches)
-- mean "no match", never a failed search. A plain SQL expression, so Postgres inlines
-- it into the jobs list's filter.
CREATE FUNCTION ordinaut_json_path_match(doc jsonb, path jsonpath) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_path_match(doc, path, '{}', true), jsonb_path_exists(doc, path, '{}', true))
$$;

-- The overview and /v1/stats read the jobs finished in the last hour. Daily partitions
-- have no finished_at index, so each read scanned all of today's rows. A BRIN index
-- fits: rows are appended in finished_at order, it is a few pages per partition, and
-- a finish's insert only touches it when a new block range begins (W1 before/after in
-- docs/BENCHMARKS.md). As in migration 0010 the parent index is created ONLY and the
-- default partition indexed here; partitions created from now on get it on ATTACH;
-- existing daily partitions age out, or are indexed by hand (docs/OPERATIONS.md).
CREATE INDEX job_history_finished_brin ON ONLY job_history USING brin (finished_at);
CREATE INDEX job_history_default_finished_brin ON job_history_default USING brin (finished_at);
ALTER INDEX job_history_finished_brin ATTACH PARTITION job_history_default_finished_brin;

-- Reported by each worker with its heartbeat: handlers running, and jobs it has
-- claimed but not started yet (prefetched). NULL until a worker of this version beats.
ALTER TABLE workers ADD COLUMN busy integer, ADD COLUMN prefetched integer;
