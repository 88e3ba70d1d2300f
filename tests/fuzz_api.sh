#!/usr/bin/env bash
# Fuzzes a live `ordinaut api` with Schemathesis against its own /openapi.json:
# every check (no 5xx, responses match the schema, invalid input refused, valid input
# accepted, auth not ignored, ...).
#
#   tests/fuzz_api.sh                 # throwaway Postgres from initdb/pg_ctl on PATH
#   DATABASE_URL=postgres://... tests/fuzz_api.sh
#   SCHEMATHESIS=/path/to/schemathesis MAX_EXAMPLES=50 tests/fuzz_api.sh
#
# Needs: cargo, Postgres server binaries (unless DATABASE_URL is set), curl, and
# schemathesis (`pip install schemathesis`). Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS="${SCHEMATHESIS:-schemathesis}"
MAX_EXAMPLES="${MAX_EXAMPLES:-30}"
TOKEN="fuzz-token-$(date +%s)"
WORK="$(mktemp -d /tmp/ordinaut-fuzz.XXXXXX)"
chmod 755 "$WORK"
API_PID=""
PG_DATA=""

as_pg() {
    # Postgres refuses to run as root: run it as nobody, as src/pg_local.rs does.
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/tmp "$@"
    else
        "$@"
    fi
}

# shellcheck disable=SC2329  # invoked by the EXIT trap below
cleanup() {
    if [ -n "$API_PID" ]; then kill "$API_PID" 2>/dev/null || true; wait "$API_PID" 2>/dev/null || true; fi
    if [ -n "$PG_DATA" ]; then as_pg pg_ctl -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cargo build --quiet

if [ -z "${DATABASE_URL:-}" ]; then
    PG_DATA="$WORK/pg"
    mkdir -p "$PG_DATA"
    [ "$(id -u)" = 0 ] && chown nobody "$WORK" "$PG_DATA"
    as_pg initdb -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 --no-instructions >/dev/null
    PG_PORT="$(free_port)"
    as_pg pg_ctl -D "$PG_DATA" -l "$PG_DATA/postgres.log" -w \
        -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_DATA -c fsync=off" start >/dev/null
    DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
fi

API_PORT="$(free_port)"
# API_MAX_WAIT=2: generated `wait` values (up to 120 s) would otherwise hold the run's
# workers for minutes; the capped waits still go through the same code.
DATABASE_URL="$DATABASE_URL" API_HOST=127.0.0.1 API_PORT="$API_PORT" API_TOKENS="$TOKEN" API_MAX_WAIT=2 \
    LOG_LEVEL="${LOG_LEVEL:-warn}" ./target/debug/ordinaut api 2> "$WORK/api.log" &
API_PID=$!
BASE="http://127.0.0.1:$API_PORT"
for _ in $(seq 1 100); do
    curl -fsS "$BASE/ready" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS "$BASE/ready" >/dev/null || { cat "$WORK/api.log"; echo "api did not become ready" >&2; exit 1; }

status=0
# positive_data_acceptance ("every schema-valid request is accepted") is left out: a JSON
# schema cannot say what a cron expression, an IANA timezone or a cross-field rule
# (`burst` needs `rate_limit`) accepts, so it flags correct 400s naming the field. Those
# refusals are covered by tests/it/api/bad_requests.rs; every other check runs.
# /v1/events never ends by design (a live stream): it has its own tests. Waits
# (?wait=, claim "wait") may legitimately take up to 120s. U+0000 is not generated:
# Postgres text/jsonb cannot store it and the API refuses it with a 400 (documented).
"$SCHEMATHESIS" run "$BASE/openapi.json" \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --header "Authorization: Bearer $TOKEN" \
    --exclude-path /v1/events \
    --max-examples "$MAX_EXAMPLES" \
    --request-timeout 130 \
    --max-response-time 130 \
    --generation-allow-x00 false \
    --workers "${WORKERS:-4}" \
    --suppress-health-check too_slow,filter_too_much \
    --seed "${SEED:-1}" \
    || status=$?

if grep -q '"level":"ERROR"\|ERROR' "$WORK/api.log"; then
    echo "--- api log errors ---" >&2
    grep 'ERROR' "$WORK/api.log" >&2 || true
fi
exit "$status"
