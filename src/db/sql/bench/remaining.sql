-- benches/peers_method.py: jobs not finished yet, polled every 0.2 s as for the peers.
SELECT count(*) FROM due_work
