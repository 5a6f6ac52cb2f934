#!/usr/bin/env bash
# Creates .venv and installs otel-ml with its test tools. Re-runs are cheap: pip runs again only
# when pyproject.toml changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.otel-ml-installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
    rm -f .venv/.otel-ml-installed-*
    touch "$stamp"
fi
echo "otel-ml installed in $(pwd)/.venv"
