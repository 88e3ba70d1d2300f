"""W1 by the peers' method, for Ordinaut and a peer, alternating rep by rep.

usage: python peers_method.py <ordinaut-binary> <reps> [<peer> <config>]

Runs the peers' own orchestrator (../shared/bench/peers/bench/orchestrate.py, copied to
$PEERS_DIR/bench) with Ordinaut added as one more system: fresh database, migrate,
enqueue 100,000 jobs in chunks of 10,000 through a public enqueue path (the SQL
function ordinaut_enqueue(), one statement per chunk), CHECKPOINT, spawn one
`ordinaut worker` process with concurrency 32, poll the remaining count from outside
every 0.2 s. For every run, Ordinaut's and the peer's alike, it also records from the
moment the worker is spawned to the moment the queue is empty:
  wal_bytes_per_job     pg_current_wal_lsn() after minus before, per job
  pg_cpu_s_per_1000     CPU seconds of every Postgres process (the postmaster's own and
                        reaped children's included), per 1,000 jobs
  dead_tuples_per_job   n_dead_tup over the database's tables once the worker has
                        stopped (its statistics flushed), per job
  worker_cpu_s_per_1000 user + system CPU seconds of the worker process (all its
                        threads, from its spawn), per 1,000 jobs
Prints one JSON line per run (the orchestrator's fields plus these).
"""
import json, os, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
SQL = os.path.join(HERE, "..", "src", "db", "sql", "bench")
PEERS_DIR = os.environ.get("PEERS_DIR", "/tmp/ordinaut-peers")
sys.path.insert(0, os.path.join(PEERS_DIR, "bench"))
import orchestrate as o  # noqa: E402
import psycopg  # noqa: E402

PGDATA = "/tmp/peerbench-pg"
TICK = os.sysconf("SC_CLK_TCK")


def sql(name):
    return open(os.path.join(SQL, name)).read()


def pg_cpu_seconds():
    """CPU time of the postmaster, its reaped children and its live children."""
    pm = int(open(os.path.join(PGDATA, "postmaster.pid")).readline())
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2:].split()
        # fields after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
        ppid, ut, st, cut, cst = int(f[1]), int(f[11]), int(f[12]), int(f[13]), int(f[14])
        if int(pid) == pm:
            total += ut + st + cut + cst
        elif ppid == pm:
            total += ut + st
    return total / TICK


def process_cpu_seconds(pid):
    """User + system CPU time of one live process (all its threads), or None once gone."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    f = stat[stat.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / TICK


def footprint(db):
    with psycopg.connect(f"host=/tmp port=55432 user=postgres dbname={db}", autocommit=True) as c:
        row = c.execute(sql("footprint.sql")).fetchone()
    return {"wal_bytes": row[1], "dead_tuples": row[2]}


def ordinaut_driver(binary):
    return [sys.executable, os.path.join(HERE, "peers_driver.py"), binary]


state = {}
orig_start, orig_stop = o.start_worker, o.stop_worker


def start_worker(sysname, cfg, db, latfile, logf):
    state.clear()
    state["db"] = db
    state["before"] = footprint(db)
    state["cpu_before"] = pg_cpu_seconds()
    p = orig_start(sysname, cfg, db, latfile, logf)
    state["pid"] = p.pid
    return p


def stop_worker(p):
    # Called by the orchestrator right after the queue drained (or timed out).
    state["after"] = footprint(state["db"])
    state["cpu_after"] = pg_cpu_seconds()
    state["worker_cpu"] = process_cpu_seconds(state["pid"])
    r = orig_stop(p)
    time.sleep(1.5)  # backends flush their table statistics at exit; let them land
    state["dead_after"] = footprint(state["db"])["dead_tuples"]
    return r


o.start_worker, o.stop_worker = start_worker, stop_worker


def w1(sysname, cfg, rep):
    res = o.w1(sysname, cfg, rep)
    done = max(res["done"], 1)
    res["wal_bytes_per_job"] = (state["after"]["wal_bytes"] - state["before"]["wal_bytes"]) / done
    res["pg_cpu_s_per_1000"] = (state["cpu_after"] - state["cpu_before"]) * 1000 / done
    res["dead_tuples_per_job"] = state["dead_after"] / done
    cpu = state.get("worker_cpu")
    res["worker_cpu_s_per_1000"] = None if cpu is None else cpu * 1000 / done
    return res


if __name__ == "__main__":
    binary, reps = sys.argv[1], int(sys.argv[2])
    peer, peer_cfg = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else ("graphile_worker_rs", "tuned")
    o.SYSTEMS["ordinaut"] = dict(cmd=lambda: ordinaut_driver(binary), configs=["default"],
                                 remaining=sql("remaining.sql"))
    os.makedirs(os.path.join(o.HERE, "logs"), exist_ok=True)
    for rep in range(1, reps + 1):
        for sysname, cfg in ((peer, peer_cfg), ("ordinaut", "default")):
            print(json.dumps(w1(sysname, cfg, rep)), flush=True)
