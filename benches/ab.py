"""A/B: two Ordinaut variants, alternating rep by rep, by the peers' W1 method.

usage: python benches/ab.py <reps> <label>=<binary>[@<extra.sql>][,queues=N] <label>=...

Each variant is a release binary, optionally with SQL run after its migrations (the
experiment hook of peers_driver.py, ORDINAUT_BENCH_EXTRA_SQL), so a schema change can be
measured against the shipped schema with one binary, or two binaries against each other.
`,queues=N` spreads that variant's jobs over N queues served by its one worker
(peers_driver.py's ORDINAUT_BENCH_QUEUES), e.g. one binary against itself at 1 and 1,000.
Reps alternate A, B, A, B, ... (B first on even reps, so neither always runs right after
a checkpoint of the other), through benches/peers_method.py's w1 (the peers' own
orchestrator, with WAL, dead tuples, Postgres CPU and worker CPU per job). The peers' cluster must be
running ($PEERS_DIR/bench/pg.sh start). Prints one JSON line per run, then the medians
and the median ratio B/A of worked jobs/s.
"""
import json, os, statistics, sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import peers_method as m  # noqa: E402


def variant(arg):
    label, rest = arg.split("=", 1)
    rest, _, queues = rest.partition(",queues=")
    binary, _, extra = rest.partition("@")
    return label, os.path.abspath(binary), (open(extra).read() if extra else None), queues or "1"


def main():
    reps = int(sys.argv[1])
    variants = [variant(a) for a in sys.argv[2:4]]
    runs = {label: [] for label, *_ in variants}
    os.makedirs(os.path.join(m.o.HERE, "logs"), exist_ok=True)
    for rep in range(1, reps + 1):
        order = variants if rep % 2 else variants[::-1]
        for label, binary, extra, queues in order:
            os.environ["ORDINAUT_BENCH_QUEUES"] = queues
            m.o.SYSTEMS["ordinaut"] = dict(cmd=lambda b=binary: m.ordinaut_driver(b),
                                           configs=["default"], remaining=m.sql("remaining.sql"))
            if extra:
                os.environ["ORDINAUT_BENCH_EXTRA_SQL"] = extra
            else:
                os.environ.pop("ORDINAUT_BENCH_EXTRA_SQL", None)
            res = m.w1("ordinaut", "default", rep)
            res["variant"] = label
            runs[label].append(res)
            print(json.dumps(res), flush=True)
    (a, *_), (b, *_) = variants
    summary = {}
    for label, rs in runs.items():
        summary[label] = {k: statistics.median(r[k] for r in rs)
                          for k in ("worked_jobs_s", "wal_bytes_per_job", "dead_tuples_per_job",
                                    "pg_cpu_s_per_1000", "worker_cpu_s_per_1000")
                          if all(r.get(k) is not None for r in rs)}
    pairs = [rb["worked_jobs_s"] / ra["worked_jobs_s"] for ra, rb in zip(runs[a], runs[b])]
    summary["ratio_b_over_a"] = summary[b]["worked_jobs_s"] / summary[a]["worked_jobs_s"]
    summary["pair_ratios"] = pairs
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()
