-- benches/peers_method.py: the cluster's WAL position and the dead tuples left in the
-- current database's tables (any system's: the same query measures the peers).
SELECT pg_current_wal_lsn()::text AS lsn,
       pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal_bytes,
       (SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables) AS dead_tuples
