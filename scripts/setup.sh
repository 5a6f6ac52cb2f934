#!/usr/bin/env bash
# Creates .venv and installs otel-ml with its test tools, compiling the C decoder in place. Re-runs are
# cheap: pip runs again only when the packaging files or the C source changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.otel-ml-installed-$(cat pyproject.toml setup.py otel_ml/*/*.c | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    # Say what is installed while it is: the first install takes a minute or two, which looked like a hang.
    echo "otel-ml: installing otel-ml, its processor and test dependencies into $(pwd)/.venv (the first time: a" \
         "minute or two; pip's progress below)"
    .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -e ".[test]" 2>&1 \
        | { grep --line-buffered -E "^(Collecting|Building wheel|Installing collected|Successfully installed|ERROR)" \
            | sed -u -e 's/^/  /' -e 's/ (from .*//' || true; }
    rm -f .venv/.otel-ml-installed-*
    touch "$stamp"
fi
echo "otel-ml installed in $(pwd)/.venv"
