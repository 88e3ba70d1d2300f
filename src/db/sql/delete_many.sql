-- Deletes the jobs among $1 that are finished or waiting, with their attempt records.
-- Running jobs stay (cancel them first): their worker would otherwise finish a job that
-- no longer exists. Live workflow steps stay too (cancel them first): a step that
-- vanished without an outcome would leave its dependents waiting. Returns how many jobs went.
WITH live AS (
    DELETE FROM due_work WHERE id = ANY($1::uuid[]) AND state <> 'running' AND workflow_id IS NULL RETURNING id
),
finished AS (
    DELETE FROM job_history WHERE id = ANY($1::uuid[]) RETURNING id
),
gone AS (
    SELECT id FROM live UNION SELECT id FROM finished
),
attempts AS (
    DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM gone) RETURNING 1
)
SELECT count(*) FROM gone
