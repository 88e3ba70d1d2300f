-- benches/peers_method.py: one chunk of the peers' W1 enqueue through the public SQL
-- enqueue function (one statement, one transaction per chunk, as the peers' bulk adds).
SELECT count(ordinaut_enqueue('bench', 'noop')) FROM generate_series(1, %(n)s)
