#!/usr/bin/env bash
# Refreshes the front-end libraries the dashboard embeds (src/api/ui/assets/vendor/) from
# the npm registry at the pinned versions below, with their licence files. Run it by
# hand after changing a version, review the diff, commit it: `cargo build` never runs
# it and needs neither Node nor the network.
set -euo pipefail
cd "$(dirname "$0")/.."

htmx_version=2.0.11
uplot_version=1.6.32

out=src/api/ui/assets/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {
    # npm pack downloads the published tarball exactly as the registry serves it
    # (integrity-checked), without installing anything or running scripts.
    (cd "$work" && npm pack --silent "$1@$2" >/dev/null)
    mkdir -p "$work/$1"
    tar -xzf "$work/$1-$2.tgz" -C "$work/$1"
}

fetch htmx.org "$htmx_version"
cp "$work/htmx.org/package/dist/htmx.min.js" "$out/htmx.min.js"
cp "$work/htmx.org/package/LICENSE" "$out/htmx.LICENSE"

fetch uplot "$uplot_version"
cp "$work/uplot/package/dist/uPlot.iife.min.js" "$out/uPlot.iife.min.js"
cp "$work/uplot/package/dist/uPlot.min.css" "$out/uPlot.min.css"
cp "$work/uplot/package/LICENSE" "$out/uPlot.LICENSE"

cat > "$out/VERSIONS" <<VERSIONS
htmx.org $htmx_version (0BSD; htmx.LICENSE)
uplot $uplot_version (MIT; uPlot.LICENSE)
VERSIONS
{
    echo "Front-end libraries embedded in the Ordinaut dashboard (see src/api/ui/assets/vendor/VERSIONS)."
    echo
    echo "== htmx (htmx.org) =="
    cat "$out/htmx.LICENSE"
    echo
    echo "== uPlot =="
    cat "$out/uPlot.LICENSE"
} > src/api/ui/assets/LICENSES.txt
echo "vendored htmx.org $htmx_version and uplot $uplot_version into $out"
