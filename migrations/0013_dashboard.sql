-- The dashboard (/ui): login sessions and the audit log of bulk actions.

-- One row per dashboard login. The cookie carries a random session id; only its
-- SHA-256 is stored, so a copy of this table logs nobody in. Rows past expires_at are
-- refused at once and deleted by the next login.
CREATE TABLE ui_sessions (
    id_hash    bytea PRIMARY KEY,
    -- 'admin' or 'readonly': what the token used to log in allowed.
    role       text NOT NULL CONSTRAINT ui_sessions_role_check CHECK (role IN ('admin', 'readonly')),
    -- Which configured token (its position, never its text), for the audit log.
    actor      text NOT NULL,
    -- Hash of the token itself: a session ends when its token leaves the configuration.
    token_hash bytea NOT NULL,
    -- Sent back by every state-changing request (form field or X-CSRF-Token header).
    csrf       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX ui_sessions_expires_idx ON ui_sessions (expires_at);

-- Bulk actions by filter (cancel, retry, delete) and single-job deletes: who did what
-- to which jobs, and how many it touched. Public surface: operators read it with psql.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    -- The filter as given (queue, kind, state, created range) or the job id.
    target      jsonb NOT NULL,
    -- Jobs that matched when the action was confirmed, and those it changed.
    matched     bigint NOT NULL,
    affected    bigint NOT NULL,
    finished_at timestamptz
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
