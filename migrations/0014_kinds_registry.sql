-- Kinds registry and job progress (issue 17).
--
-- Every worker publishes the kinds it serves at start and refreshes them about once
-- a minute: one row per (kind, worker). Rows outlive their worker on purpose: the API
-- and the CLI refuse enqueues of a kind no worker has published within the
-- registry's window (10 minutes by default), so a worker restarting, or a deploy
-- rolling workers, does not make its kinds unknown for a moment. Rows older than a
-- day are deleted by the publishing workers.
CREATE TABLE kinds (
    kind           text NOT NULL,
    worker_id      uuid NOT NULL,
    hostname       text NOT NULL,
    -- http, command, noop, or custom (a Rust handler).
    type           text NOT NULL,
    -- The kind's enqueue defaults (NULL: none).
    queue          text,
    priority       integer,
    max_attempts   integer,
    timeout_ms     bigint,
    kill_grace_ms  bigint,
    payload_schema jsonb,
    published_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, worker_id)
);
CREATE INDEX kinds_published_at_idx ON kinds (published_at);

-- The latest progress a running job reported: {"attempt", "percent", "message", "at"}.
-- Written by the worker at most once per second per job; NULL until the first report.
-- Nullable without a default: adding it rewrites nothing.
ALTER TABLE due_work ADD COLUMN progress jsonb;
