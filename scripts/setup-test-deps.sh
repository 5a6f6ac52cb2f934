#!/usr/bin/env bash
# Installs what the integration tests run against, besides Python packages (scripts/setup.sh):
#   - a Prometheus server and promtool (Debian package `prometheus`, 2.42 on Debian 12), when root and apt exist;
#   - Debian's chromium, headless, for the UI's browser tests (tests/e2e/test_ui.py), when root and apt exist;
#   - the OpenTelemetry Collector built from collector-config/builder-config.yaml (scripts/build-collector.sh);
#   - Apache Kafka's jars from Maven Central (scripts/kafka.sh fetch), when Java and Maven exist;
#   - kinesalite, a Kinesis-compatible server, from the npm registry (scripts/kinesis.sh fetch), when npm exists.
# Tests that need one of them skip with a message when it is missing, except under CI=true, where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing the Debian package prometheus"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
        # The package enables a system service; the tests start their own servers on loopback.
        (command -v systemctl >/dev/null 2>&1 && systemctl stop prometheus prometheus-node-exporter 2>/dev/null) || true
    else
        echo "setup-test-deps: prometheus not installed (needs root and apt-get); its tests will skip" >&2
    fi
fi
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing the Debian package chromium (headless browser tests of the UI)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core \
            >/dev/null
    else
        echo "setup-test-deps: chromium not installed (needs root and apt-get); the browser tests will skip" >&2
    fi
fi
if command -v go >/dev/null 2>&1; then
    scripts/build-collector.sh
else
    echo "setup-test-deps: Go not found; Collector tests will skip" >&2
fi
if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
    scripts/kafka.sh fetch
else
    echo "setup-test-deps: Java or Maven not found; Kafka tests will skip" >&2
fi
if command -v npm >/dev/null 2>&1; then
    scripts/kinesis.sh fetch
else
    echo "setup-test-deps: npm not found; Kinesis tests will skip" >&2
fi
