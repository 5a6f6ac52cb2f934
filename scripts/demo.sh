#!/usr/bin/env bash
# Sets up otel-ml and runs the two-minute demo (processor + generated traffic with a drift).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/otel-ml demo "$@"
