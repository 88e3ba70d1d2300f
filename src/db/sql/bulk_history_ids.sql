-- A batch of finished jobs matching a filter, newest first, like bulk_live_ids.sql;
-- $8 restricts the states further (retry takes failed and cancelled only).
SELECT id FROM job_history
WHERE ($1::text IS NULL OR queue = $1)
  AND ($2::text IS NULL OR kind = $2)
  AND ($3::text IS NULL OR state = $3)
  AND ($4::timestamptz IS NULL OR created_at >= $4)
  AND ($5::timestamptz IS NULL OR created_at < $5)
  AND id <= $6
  AND ($7::uuid IS NULL OR id < $7)
  AND ($8::text[] IS NULL OR state = ANY($8))
  AND ($10::uuid[] IS NULL OR id = ANY($10))
ORDER BY id DESC
LIMIT $9
