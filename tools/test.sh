#!/usr/bin/env bash
# The README's test command: installs everything the tests need, then runs every test.
# Debian packages (mpd, mpc, knockd, pigs, ...) are installed with apt-get when run as root;
# otherwise the ones missing are listed and the tests that need them fail, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t pkgs < <(grep -v '^\s*#' tools/apt-packages.txt | grep -v '^\s*$')
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "== apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
        # Debian starts these on install; the tests run their own instances.
        for s in mpd knockd; do systemctl stop "$s" >/dev/null 2>&1 || service "$s" stop >/dev/null 2>&1 || true; done
        pkill -x mpd >/dev/null 2>&1 || true
    else
        echo "not root: cannot install ${missing[*]} (tests needing them will fail)" >&2
    fi
fi
echo "== python environment"
tools/setup-venv.sh test,dev
echo "== ruff"
.venv/bin/ruff check .
echo "== pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
