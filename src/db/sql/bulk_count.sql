-- How many jobs an action by filter would touch, and the newest of them (the bound
-- the action then keeps to). $6/$7: which tables the action reads; $8: skip running
-- live jobs; $9: allowed finished states (NULL = all); $10: only ids at or below it
-- (the bound of an earlier count), NULL = all; $11: only these ids (selected jobs), NULL = all.
WITH live AS (
    SELECT id FROM due_work
    WHERE $6
      AND ($1::text IS NULL OR queue = $1)
      AND ($2::text IS NULL OR kind = $2)
      AND ($3::text IS NULL
           OR (CASE WHEN state = 'scheduled' AND run_at <= now() THEN 'available' ELSE state END) = $3)
      AND ($4::timestamptz IS NULL OR created_at >= $4)
      AND ($5::timestamptz IS NULL OR created_at < $5)
      AND (NOT $8 OR state <> 'running')
      AND ($10::uuid IS NULL OR id <= $10)
      AND ($11::uuid[] IS NULL OR id = ANY($11))
),
finished AS (
    SELECT id FROM job_history
    WHERE $7
      AND ($1::text IS NULL OR queue = $1)
      AND ($2::text IS NULL OR kind = $2)
      AND ($3::text IS NULL OR state = $3)
      AND ($4::timestamptz IS NULL OR created_at >= $4)
      AND ($5::timestamptz IS NULL OR created_at < $5)
      AND ($9::text[] IS NULL OR state = ANY($9))
      AND ($10::uuid IS NULL OR id <= $10)
      AND ($11::uuid[] IS NULL OR id = ANY($11))
),
-- uuid has no max() aggregate: the newest id is the first in id order.
jobs AS (
    SELECT id FROM live UNION ALL SELECT id FROM finished
)
SELECT (SELECT count(*) FROM jobs) AS matched,
       (SELECT id FROM jobs ORDER BY id DESC LIMIT 1) AS newest
