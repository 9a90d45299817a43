#!/usr/bin/env bash
# Create (or reuse) .venv and install pi-appliance into it with the given extras.
# Usage: tools/setup-venv.sh [EXTRAS]   e.g. tools/setup-venv.sh test,dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "pi-appliance needs Python 3.11 or newer ($py is $("$py" --version 2>&1))" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ -n "$extras" ]; then
    .venv/bin/python -m pip install -q -e ".[$extras]"
else
    .venv/bin/python -m pip install -q -e .
fi
