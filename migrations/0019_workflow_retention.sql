-- Retention of finished workflows (issue 19): the retention service deletes workflows
-- that ended longer ago than HISTORY_RETENTION_DAYS (their steps and edges go with them,
-- ON DELETE CASCADE), a batch at a time, found through this index. Running workflows
-- are never in it.
CREATE INDEX workflows_finished_idx ON workflows (finished_at) WHERE state <> 'running';
