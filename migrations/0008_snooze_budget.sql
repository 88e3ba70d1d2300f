-- Snoozes spent per job. A snooze (command exit 75, HTTP 429/503 with Retry-After)
-- gives its attempt back; past the worker's max_snoozes it counts as an attempt
-- instead, so a target that always asks to come back later is not called forever.
-- A constant default: no table rewrite (Postgres 11+ stores it in the catalog).
ALTER TABLE due_work ADD COLUMN snoozes integer NOT NULL DEFAULT 0;
