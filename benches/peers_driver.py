"""Ordinaut's driver for the peers' orchestrator, with the peers' drivers' commands.

usage: python peers_driver.py <ordinaut-binary> <db_url> migrate <config>
       python peers_driver.py <ordinaut-binary> <db_url> enqueue <N> <CHUNK>
       python peers_driver.py <ordinaut-binary> <db_url> worker <config> <latfile>

`worker` replaces itself with `ordinaut worker` (concurrency 32, the noop kind, every
other setting at its default), so the process the orchestrator samples is the worker.
ORDINAUT_BENCH_QUEUES=N (default 1) spreads the jobs round-robin over N queues
(`bench-0` .. `bench-<N-1>`) and has the one worker serve them all.
"""
import json, os, sys, tempfile, time

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
binary, url, mode = sys.argv[1], sys.argv[2], sys.argv[3]
env = dict(os.environ, DATABASE_URL=url.replace("%2Ftmp:55432", "localhost:55432") + "?host=/tmp",
           LOG_LEVEL="warn")
env.pop("ORDINAUT_CONFIG", None)
env.pop("ORDINAUT_SCHEMA", None)

queues = int(os.environ.get("ORDINAUT_BENCH_QUEUES", "1"))
queue_names = ["bench"] if queues == 1 else [f"bench-{i}" for i in range(queues)]
dsn = "host=/tmp port=55432 user=postgres dbname=" + url.rsplit("/", 1)[1]

if mode == "migrate":
    import subprocess
    subprocess.run([binary, "migrate"], env=env, check=True)
    # Experiments: SQL run after the migrations (an index dropped, a table setting), to
    # measure a schema change before writing it as a migration. Unset in real runs.
    extra = os.environ.get("ORDINAUT_BENCH_EXTRA_SQL")
    if extra:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(extra)
elif mode == "enqueue":
    n, chunk = int(sys.argv[4]), int(sys.argv[5])
    stmt = open(os.path.join(HERE, "..", "src", "db", "sql", "bench", "enqueue_chunk.sql")).read()
    t = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as c:
        done = 0
        while done < n:
            k = min(chunk, n - done)
            c.execute(stmt, {"n": k, "queues": queues})
            done += k
    print(json.dumps({"enqueue_s": time.perf_counter() - t, "n": n}))
elif mode == "worker":
    work = tempfile.mkdtemp(prefix="ordinaut-peers-")
    with open(os.path.join(work, "ordinaut.toml"), "w") as f:
        f.write('[kinds.noop]\ntype = "noop"\n')
    os.chdir(work)
    env.update(WORKER_QUEUES=",".join(queue_names), WORKER_CONCURRENCY="32")
    os.execve(binary, [binary, "worker"], env)
else:
    sys.exit(f"unknown mode {mode}")
