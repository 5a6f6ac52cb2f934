#!/usr/bin/env bash
# Creates .venv and installs otel-ml with its test tools, compiling the C decoder in place. Re-runs are
# cheap: pip runs again only when the packaging files or the C source changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.otel-ml-installed-$(cat pyproject.toml setup.py otel_ml/decode/*.c | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
    rm -f .venv/.otel-ml-installed-*
    touch "$stamp"
fi
echo "otel-ml installed in $(pwd)/.venv"
