-- Experiment (not a migration): the schema a HOT claim needs, for benches/ab.py.
-- The claim UPDATE changes state, attempt, lease_owner, lease_expires_at and
-- attempted_at; it can be a heap-only tuple update only when no index names one of
-- them (predicates included) and the new version fits on the row's page. So: the claim
-- index without its state predicate (running rows stay in it; the claim filters them on
-- the heap), no running index (the rescuer and the running-jobs list then scan
-- due_work), and free space on every page for the new version.
DROP INDEX due_work_claim_idx;
CREATE INDEX due_work_claim_idx ON due_work (queue, priority, run_at, id);
DROP INDEX due_work_running_idx;
ALTER TABLE due_work SET (fillfactor = 60);
