#!/usr/bin/env bash
# Builds the OpenTelemetry Collector described by collector-config/builder-config.yaml with the Collector
# Builder, once: the binary is cached under $OTEL_ML_CACHE (default ~/.cache/otel-ml) by the hash of the
# manifest, the pinned go.sum and this script, and linked to build/otelcol-ml. Go's own module and build
# caches (~/go/pkg/mod, ~/.cache/go-build) make a rebuild after a manifest change take minutes, not more.
#
# Module integrity: the Go checksum database is not reachable for every module here, so the build runs with
# GOSUMDB=off and verifies every module against collector-config/go.sum (hashes pinned when the manifest was
# last changed). A module not in go.sum fails the build unless OTEL_ML_UPDATE_GO_SUM=1, which adds it
# (then commit the new go.sum).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
manifest=collector-config/builder-config.yaml
cache=${OTEL_ML_CACHE:-$HOME/.cache/otel-ml}
hash=$(cat "$manifest" collector-config/go.sum scripts/build-collector.sh | sha256sum | cut -c1-16)
binary="$cache/otelcol-ml-$hash"
mkdir -p build
if [ -x "$binary" ]; then
    ln -sf "$binary" build/otelcol-ml
    echo "Collector: $root/build/otelcol-ml (cached)"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "build-collector: Go is not installed; the Collector cannot be built" >&2
    exit 3
fi
version=$(sed -n 's/^  version: *//p' "$manifest")
export GOSUMDB=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
mkdir -p "$cache/bin"
if [ ! -x "$cache/bin/builder-$version" ]; then
    GOBIN="$cache/bin/tmp" go install "go.opentelemetry.io/collector/cmd/builder@v$version"
    mv "$cache/bin/tmp/builder" "$cache/bin/builder-$version"
fi
work="$cache/src-$hash"
rm -rf "$work"
mkdir -p "$work"
sed "s#^  output_path:.*#  output_path: $work/src#" "$manifest" > "$work/manifest.yaml"
"$cache/bin/builder-$version" --config "$work/manifest.yaml" --skip-get-modules --skip-compilation >"$work/builder.log" 2>&1 \
    || { cat "$work/builder.log" >&2; exit 1; }
cp collector-config/go.sum "$work/src/go.sum"
cd "$work/src"
before=$(sha256sum go.sum)
go mod tidy -compat=1.25
if [ "$(sha256sum go.sum)" != "$before" ] && ! cmp -s go.sum "$root/collector-config/go.sum"; then
    if [ "${OTEL_ML_UPDATE_GO_SUM:-0}" = 1 ]; then
        cp go.sum "$root/collector-config/go.sum"
        echo "build-collector: collector-config/go.sum updated; commit it" >&2
    else
        diff <(sort "$root/collector-config/go.sum") <(sort go.sum) | head -20 >&2 || true
        echo "build-collector: modules outside collector-config/go.sum; rerun with OTEL_ML_UPDATE_GO_SUM=1 after review" >&2
        exit 1
    fi
fi
go build -trimpath -ldflags "-s -w" -o "$binary.tmp" .
mv "$binary.tmp" "$binary"
cd "$root"
ln -sf "$binary" build/otelcol-ml
rm -rf "$work"
echo "Collector: $root/build/otelcol-ml (built $("$binary" --version))"
