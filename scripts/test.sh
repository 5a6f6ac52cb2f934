#!/usr/bin/env bash
# Sets up everything the tests need, then runs lint, the unit suite on the oldest and newest supported Python
# (scripts/test-pythons.sh; only without arguments) and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/setup-test-deps.sh
.venv/bin/ruff check otel_ml tests bench examples
if [ $# -eq 0 ]; then
    scripts/test-pythons.sh  # the unit suite on the oldest and newest supported Python too
fi
.venv/bin/python -m pytest "$@"
