#!/usr/bin/env bash
# Start Ordinaut on Docker Compose: ops/docker-compose.yml plus the dev or prod override.
# Run `ops/start.sh --help` for usage. Needs `docker compose` (Compose v2).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: ops/start.sh dev|prod [--build] [--logs] [--clean]

Starts postgres, api, scheduler and worker with Docker Compose.

  dev      ops/docker-compose.yml + ops/docker-compose.dev.yml as project ordinaut-dev:
           debug logs, one worker, Postgres published on localhost:5432
           (psql postgres://ordinaut:ordinaut@localhost:5432/ordinaut), data in the
           volume ordinaut-dev_pgdata-dev.
  prod     ops/docker-compose.yml + ops/docker-compose.prod.yml as project ordinaut: JSON
           logs, restart always, resource limits, API_REPLICAS api (2) and WORKER_REPLICAS
           workers (4), data in the volume ordinaut_pgdata. Settings and credentials come
           from .env at the repository root (copy .env.example and edit); refused without it.

  --build  rebuild the image from the repository's Dockerfile first
  --logs   follow the logs after starting (Ctrl-C stops following, not the services)
  --clean  dev only: stop and remove the dev containers AND the dev database volume
           ordinaut-dev_pgdata-dev first (deletes every dev job). Never touches prod.
  -h, --help  show this help

Logs are pretty in dev and JSON in prod; LOG_FORMAT=json ops/start.sh dev gives JSON.
The api publishes API_PUBLISH (default the range 8080-8089; the first replica gets 8080).
Scale afterwards with:
  docker compose -f ops/docker-compose.yml -f ops/docker-compose.<mode>.yml up -d --scale worker=N --scale api=N
EOF
}

die() {
    echo "start.sh: $*" >&2
    exit 1
}

mode=""
build=0
logs=0
clean=0
for arg in "$@"; do
    case "$arg" in
        dev | prod)
            [[ -z "$mode" ]] || die "give one mode, not '$mode' and '$arg' (see --help)"
            mode="$arg"
            ;;
        --build) build=1 ;;
        --logs) logs=1 ;;
        --clean) clean=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument '$arg' (see --help)" ;;
    esac
done
[[ -n "$mode" ]] || {
    usage >&2
    exit 2
}
if ((clean)) && [[ "$mode" != dev ]]; then
    die "--clean only removes the dev stack's data; production data is never deleted by this script (remove the volume ordinaut_pgdata by hand if you really mean it)"
fi

ops_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$ops_dir")"

compose=(docker compose -f "$ops_dir/docker-compose.yml" -f "$ops_dir/docker-compose.$mode.yml")
if [[ "$mode" == prod ]]; then
    env_file="$root/.env"
    if [[ ! -f "$env_file" ]]; then
        die "prod needs $env_file: it holds DATABASE_URL, API_TOKENS and the Postgres password, which have no safe defaults. Create it with: cp $root/.env.example $env_file  (then edit it)"
    fi
    export ORDINAUT_ENV_FILE="$env_file"
    compose+=(--env-file "$env_file")
fi

docker compose version >/dev/null 2>&1 ||
    die "'docker compose' (Compose v2) is not available; install the Docker Compose plugin"

if ((clean)); then
    # The dev override names the project; its one data volume is removed by name, so
    # nothing declared elsewhere (a prod volume) can ever be swept up with it.
    project="$("${compose[@]}" config | sed -n 's/^name: *//p' | head -n 1)"
    [[ "$project" == ordinaut-dev ]] || die "dev project is '$project', expected 'ordinaut-dev'; refusing to delete anything"
    volume="${project}_pgdata-dev"
    echo "start.sh: removing the containers of project '$project' and the volume '$volume' (all dev jobs and schedules)"
    "${compose[@]}" down --remove-orphans
    if docker volume inspect "$volume" >/dev/null 2>&1; then
        docker volume rm "$volume"
    else
        echo "start.sh: volume '$volume' does not exist; nothing else to remove"
    fi
fi

up=(up -d --wait)
if ((build)); then
    up+=(--build)
fi
echo "start.sh: starting ($mode)"
"${compose[@]}" "${up[@]}"
"${compose[@]}" ps

if ((logs)); then
    exec "${compose[@]}" logs -f
fi
