-- A batch of live jobs matching a dashboard/API filter, newest first, below a keyset
-- cursor ($7) and at or below the newest id counted when the action was confirmed ($6),
-- so jobs enqueued after the count are never touched. $8: skip running jobs.
SELECT id FROM due_work
WHERE ($1::text IS NULL OR queue = $1)
  AND ($2::text IS NULL OR kind = $2)
  AND ($3::text IS NULL
       OR (CASE WHEN state = 'scheduled' AND run_at <= now() THEN 'available' ELSE state END) = $3)
  AND ($4::timestamptz IS NULL OR created_at >= $4)
  AND ($5::timestamptz IS NULL OR created_at < $5)
  AND id <= $6
  AND ($7::uuid IS NULL OR id < $7)
  AND (NOT $8 OR state <> 'running')
  AND ($10::uuid[] IS NULL OR id = ANY($10))
ORDER BY id DESC
LIMIT $9
