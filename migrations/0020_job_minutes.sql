-- Per-minute rollups of finished jobs for the dashboard's overview and /v1/stats, so
-- an hour of statistics reads ~60 rows per queue instead of every job finished in the
-- hour. Filled by the API's refresher (src/db/stats.rs, `roll_up`), never by the claim
-- or finish statements: nothing on the hot path changes.

-- One row per queue and closed minute of job_history's finished_at.
CREATE TABLE job_minutes (
    minute       timestamptz NOT NULL,
    queue        text NOT NULL,
    completed    bigint NOT NULL,
    failed       bigint NOT NULL,
    -- Waits (due → start of the final attempt) of the jobs that started, as a
    -- histogram: {"bucket": jobs}. Bucket 0 is under 1 ms; bucket k >= 1 holds waits
    -- in [2^((k-1)/8), 2^(k/8)) ms, so a percentile read from summed buckets is within
    -- 4.5% of the exact one (src/db/stats.rs, `wait_bucket_seconds`).
    wait_buckets jsonb NOT NULL,
    PRIMARY KEY (minute, queue)
);

-- Minutes before `through` are in job_minutes; later ones are read from job_history.
-- One row; its row lock makes one refresher at a time roll up (others skip).
CREATE TABLE job_minutes_progress (
    single  boolean PRIMARY KEY DEFAULT true CONSTRAINT job_minutes_progress_single CHECK (single),
    through timestamptz NOT NULL
);
-- -infinity: the first roll-up starts a day back (the longest /v1/stats window).
INSERT INTO job_minutes_progress (through) VALUES ('-infinity');
