#!/usr/bin/env bash
# Side-by-side benchmark: the peers (../shared/bench/peers) and `ordinaut bench`, on the
# same throwaway PostgreSQL 15 cluster (the peers' own: port 55432, Unix socket in /tmp,
# shared_buffers 1GB, fsync and synchronous_commit on), in one run, on this machine.
# Writes docs/BENCHMARKS.md.
#
# usage: benches/compare.sh                      all peers (about 40 minutes)
#        PEERS_ONLY="graphile_worker_rs:tuned" benches/compare.sh   a subset of peers (W1 only)
#        REPS=3 benches/compare.sh               repetitions of each Ordinaut scenario
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
peers_src=${PEERS_SRC:-$here/../shared/bench/peers}
export PEERS_DIR=${PEERS_DIR:-/tmp/ordinaut-peers}
reps=${REPS:-3}
out=$here/docs/BENCHMARKS.md

cd "$here"
cargo build --release --quiet
bin=$here/target/release/ordinaut

echo "== peers" >&2
bash "$peers_src/run.sh" >&2

echo "== ordinaut, on the same cluster" >&2
cd "$PEERS_DIR/bench"
bash pg.sh start >&2
trap 'bash "$PEERS_DIR/bench/pg.sh" stop >&2' EXIT
./machine.sh >/dev/null 2>&1 || true
export DATABASE_URL="postgres://postgres@localhost/postgres?host=/tmp&port=55432"
w1=$("$bin" bench burn-down --jobs 100000 --concurrency 32 --reps "$reps" --json)
w2=$("$bin" bench latency --count 500 --rate 50 --json)
cmd=$("$bin" bench command --jobs 2000 --json)

field() { python3 -c "import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print('-' if v is None else (f'{v:.0f}' if isinstance(v,float) and v>100 else (f'{v:.2f}' if isinstance(v,float) else v)))" "$1" "$2"; }

{
  echo "# Benchmarks"
  echo
  echo "Produced by \`benches/compare.sh\` on $(date -u +%F). One run, one machine, one PostgreSQL cluster for every system."
  echo
  echo "## Machine"
  echo
  echo '```'
  cat "$PEERS_DIR/bench/results/machine.txt" 2>/dev/null || true
  echo '```'
  echo
  echo "## Ordinaut (default configuration, history and attempt records kept)"
  echo
  echo "| workload | jobs | enqueue jobs/s | worked jobs/s | p50 ms | p95 ms | p99 ms | max ms | worker peak RSS KiB |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for r in "$w1" "$w2" "$cmd"; do
    echo "| $(field "$r" scenario) | $(field "$r" jobs) | $(field "$r" enqueue_jobs_per_sec) | $(field "$r" worked_jobs_per_sec) | $(field "$r" p50_ms) | $(field "$r" p95_ms) | $(field "$r" p99_ms) | $(field "$r" max_ms) | $(field "$r" worker_peak_rss_kib) |"
  done
  echo
  echo "burn-down: W1 (enqueue 100,000 no-op jobs in batches of 10,000, then one worker process with concurrency 32 drains them; worked jobs/s counts from the worker's spawn, median of $reps). latency: W2 (idle worker, 500 single enqueues at 50/s; enqueue call to claim). p-values for burn-down are queue wait."
  echo
  echo "## Peers (same run)"
  echo
  cat "$PEERS_DIR/RESULTS.md"
} > "$out"
echo "wrote $out" >&2
