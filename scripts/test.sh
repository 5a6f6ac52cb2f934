#!/usr/bin/env bash
# Sets up everything the tests need, then runs lint and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/setup-test-deps.sh
.venv/bin/ruff check otel_ml tests bench examples
.venv/bin/python -m pytest "$@"
