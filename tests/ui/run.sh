#!/usr/bin/env bash
# Browser tests of the dashboard: Debian's chromium and chromium-driver, Selenium from
# PyPI (pinned) in a cached virtualenv, against the built binary (target/debug/ordinaut,
# or $ORDINAUT_BIN). Screenshots land in docs/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

selenium_version=4.50.0
venv="${XDG_CACHE_HOME:-$HOME/.cache}/ordinaut/selenium-${selenium_version}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
    rm -rf "$venv"
    py=python3
    for candidate in python3.13 python3.12 /root/.pyenv/versions/3.1[2-9]*/bin/python3; do
        if "$candidate" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
            py=$candidate
            break
        fi
    done
    "$py" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "selenium==${selenium_version}"
fi

[ -x "${ORDINAUT_BIN:-target/debug/ordinaut}" ] || cargo build --bin ordinaut
"$venv/bin/python" tests/ui/test_dashboard.py
