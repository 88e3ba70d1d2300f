-- due_work turns over its whole content continuously (every job is inserted, updated
-- at least once and deleted), so waiting for the default 20% of dead rows before
-- vacuuming lets the claim index fill with dead entries. Vacuum it after a fixed
-- number of dead rows instead, without cost-based throttling. The table stays small
-- (live jobs only), so these vacuums are short.
ALTER TABLE due_work SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0.0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_analyze_scale_factor = 0.05,
    autovacuum_vacuum_cost_delay = 0
);
