-- benches/peers_method.py: one chunk of the peers' W1 enqueue through the public SQL
-- enqueue function (one statement, one transaction per chunk, as the peers' bulk adds),
-- on queue `bench`, or round-robin over `bench-0` .. `bench-<queues - 1>`.
SELECT count(ordinaut_enqueue(CASE WHEN %(queues)s = 1 THEN 'bench' ELSE 'bench-' || (g %% %(queues)s) END, 'noop'))
FROM generate_series(1, %(n)s) AS g
