#!/usr/bin/env bash
# Coverage-guided fuzzing of the compiled OTLP decoder against the pure-Python reference: atheris (libFuzzer)
# over a clang build of otel_ml/decode/_otlp_columns.c with coverage, ASan and UBSan. Not part of CI (it runs
# until the time is up); run it before changing the decoder.
#
#   scripts/fuzz-decoder.sh [SECONDS]              fuzz (default 600 s) from the seed corpus and earlier finds
#   scripts/fuzz-decoder.sh --reproduce FILE...    run the given inputs once (a crash-* file it wrote)
#
# Seeds: tests/fuzz-corpus/decoder/ (in the repo). New inputs that reach new code are kept in
# ~/.cache/otel-ml/fuzz-corpus/decoder so later runs start from them; failing inputs are written to
# ./fuzz-artifacts/. Needs clang (installed with apt-get when run as root) and the atheris wheel (pip).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
scripts/setup.sh >/dev/null
if ! command -v clang >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang >/dev/null
    else
        echo "fuzz-decoder: needs clang (apt-get install clang)" >&2
        exit 2
    fi
fi
.venv/bin/python -c "import atheris" 2>/dev/null || .venv/bin/pip install --quiet --disable-pip-version-check 'atheris>=3,<4'

# A copy of the tree whose decoder is the instrumented build (the .venv keeps its ordinary one).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files -z otel_ml tests bench | xargs -0 cp --parents -t "$work"
read -r include ext atheris_dir < <(.venv/bin/python -c "import sysconfig, atheris
print(sysconfig.get_paths()['include'], sysconfig.get_config_var('EXT_SUFFIX'), atheris.path())")
clang -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all \
    -std=c11 -shared -fPIC -I"$include" otel_ml/decode/_otlp_columns.c -o "$work/otel_ml/decode/_otlp_columns$ext"

export PYTHONPATH="$work" PYTHONMALLOC=malloc LD_PRELOAD="$atheris_dir/asan_with_fuzzer.so"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
if [ "${1:-}" = "--reproduce" ]; then
    shift
    exec .venv/bin/python "$work/tests/fuzz_decoder.py" "$@"
fi
seconds=${1:-600}
corpus=${OTEL_ML_CACHE:-$HOME/.cache/otel-ml}/fuzz-corpus/decoder
mkdir -p "$corpus" fuzz-artifacts
cd "$work"  # the harness imports the instrumented tree, not the checkout
exec "$repo/.venv/bin/python" tests/fuzz_decoder.py -max_total_time="$seconds" -rss_limit_mb=4096 \
    -artifact_prefix="$repo/fuzz-artifacts/" "$corpus" "$repo/tests/fuzz-corpus/decoder"
