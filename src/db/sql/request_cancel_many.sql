-- Flags the running jobs among $1 for cancel and tells their workers on the install's
-- `ordinaut_cancel` channel (they also see the flag at their next heartbeat). With $2
-- false, jobs already flagged are left out (a bulk cancel counts each job once); with
-- $2 true they are notified again (one job's cancel, repeated by an operator).
UPDATE due_work SET cancel_requested = true
WHERE id = ANY($1::uuid[]) AND state = 'running' AND ($2 OR NOT cancel_requested)
RETURNING pg_notify(ordinaut_channel('ordinaut_cancel'), id::text)::text
