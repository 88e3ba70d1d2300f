#!/usr/bin/env bash
# Builds the release binary the way the Dockerfile's builder stage does, without a
# container engine: the files the build context admits (.dockerignore) are staged, the
# builder stage's COPY instructions are replayed from that context into a fresh
# directory, and the Dockerfile's own `cargo build` command runs there. A file the build
# needs (an include_str!, a migration, a [[bench]] target) that the context or the COPY
# lines leave out fails here exactly as it would fail `docker build`.
#
#   bash ops/build-context.sh            # prints the binary's path on the last line
#
# Compiled dependencies are kept in $CARGO_TARGET_DIR, by default
# ${XDG_CACHE_HOME:-$HOME/.cache}/ordinaut/image-target, so a rerun only compiles
# Ordinaut itself. The staged copy lives beside it (image-context/) and is replaced on
# every run; nothing in the repository is written.
set -euo pipefail

ops_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "${ops_dir}")"
cache="${XDG_CACHE_HOME:-${HOME}/.cache}/ordinaut"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${cache}/image-target}"
stage="${cache}/image-context"

rm -rf "${stage}"
mkdir -p "${stage}/context" "${stage}/build" "${CARGO_TARGET_DIR}"

# Stage the context and replay the builder stage's COPY lines; print the stage's cargo
# build command, one argument per line.
python3 - "${root}" "${stage}" >"${stage}/build-command" <<'PY'
import fnmatch, os, shlex, shutil, sys

root, stage = sys.argv[1:]
sys.dont_write_bytecode = True  # nothing in the repository is written
sys.path.insert(0, os.path.join(root, "ops"))
import dockerfile
context, build = os.path.join(stage, "context"), os.path.join(stage, "build")

rules = []
for line in open(os.path.join(root, ".dockerignore")):
    line = line.strip()
    if line and not line.startswith("#"):
        neg = line.startswith("!")
        pat = (line[1:] if neg else line).strip().lstrip("/").rstrip("/")
        rules.append((neg, os.path.normpath(pat)))

def excluded(rel):
    # Docker's rule: the last pattern matching the path or one of its parents wins.
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    out = False
    for neg, pat in rules:
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
            out = not neg
    return out

admitted = 0
for dirpath, dirnames, filenames in os.walk(root):
    rel_dir = os.path.relpath(dirpath, root)
    # .git and build output never belong to a context; skip them without walking.
    dirnames[:] = [d for d in dirnames if not (rel_dir == "." and d in (".git", "target"))]
    for name in filenames:
        rel = os.path.normpath(os.path.join(rel_dir, name))
        if excluded(rel):
            continue
        dest = os.path.join(context, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        # New mtimes, never the originals: cargo decides freshness by mtime, and a
        # preserved one older than the last build would leave a stale binary.
        shutil.copy(os.path.join(root, rel), dest)
        admitted += 1

# The builder stage: from its FROM to the next FROM.
lines = dockerfile.instructions(root)
stage_lines, in_builder = [], False
for line in lines:
    words = shlex.split(line)
    if words[0].upper() == "FROM":
        if in_builder:
            break
        in_builder = "builder" in [w.lower() for w in words]
        continue
    if in_builder:
        stage_lines.append(words)
if not stage_lines:
    sys.exit("build-context.sh: no `FROM ... AS builder` stage in the Dockerfile")

workdir, command, copies = "/", None, 0
for words in stage_lines:
    op = words[0].upper()
    if op == "WORKDIR":
        workdir = os.path.join(workdir, words[1])
    elif op in ("COPY", "ADD"):
        if any(w.startswith("--from") for w in words[1:]):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        *sources, dest = args
        dest_abs = os.path.join(workdir, dest)
        for src in sources:
            path = os.path.join(context, os.path.normpath(src))
            if not os.path.exists(path):
                sys.exit(f"build-context.sh: COPY {src}: not in the build context "
                         "(missing, or excluded by .dockerignore)")
            target = dest_abs
            if dest.endswith("/") or len(sources) > 1:
                target = os.path.join(dest_abs, os.path.basename(os.path.normpath(src)))
            out = os.path.join(build, os.path.relpath(target, "/src"))
            if os.path.isdir(path):
                shutil.copytree(path, out, dirs_exist_ok=True, copy_function=shutil.copy)
            else:
                os.makedirs(os.path.dirname(out), exist_ok=True)
                shutil.copy(path, out)
            copies += 1
    elif op == "RUN":
        text = " ".join(words[1:])
        if "cargo build" in text:
            cmd = text[text.index("cargo build"):].split("&&")[0]
            command = shlex.split(cmd)
if workdir != "/src":
    sys.exit(f"build-context.sh: the builder's WORKDIR is {workdir}, expected /src")
if command is None:
    sys.exit("build-context.sh: no `cargo build` in the builder stage")
print(f"build-context.sh: {admitted} files admitted by .dockerignore, {copies} COPY sources staged",
      file=sys.stderr)
print("\n".join(command))
PY

mapfile -t build_command <"${stage}/build-command"
echo "build-context.sh: running ${build_command[*]} in ${stage}/build (CARGO_TARGET_DIR=${CARGO_TARGET_DIR})" >&2
start=$(date +%s)
(cd "${stage}/build" && "${build_command[@]}")
echo "build-context.sh: release build from the image context took $(($(date +%s) - start)) s" >&2
echo "${CARGO_TARGET_DIR}/release/ordinaut"
