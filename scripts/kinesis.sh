#!/usr/bin/env bash
# A Kinesis-compatible server for tests and benches: kinesalite (the npm registry; in memory, on loopback),
# installed once into the cache like Kafka's jars and the Collector build.
#
#   scripts/kinesis.sh fetch   # install only
#   scripts/kinesis.sh start   # prints the endpoint URL, http://127.0.0.1:$KINESIS_PORT (default 14567)
#   scripts/kinesis.sh stop
#
# KINESIS_PORT chooses the port; the log is $CACHE/run-$KINESIS_PORT.log. Every start is an empty server.
set -euo pipefail

VERSION=${KINESALITE_VERSION:-3.3.3}
PORT=${KINESIS_PORT:-14567}
if ! [[ $PORT =~ ^[0-9]+$ ]] || (( PORT < 1 || PORT > 65535 )); then
  echo "KINESIS_PORT must be a port number, got '$PORT'" >&2
  exit 2
fi
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/otel-ml/kinesalite-$VERSION
PIDFILE=$CACHE/run-$PORT.pid

fetch() {
  [ -x "$CACHE/node_modules/.bin/kinesalite" ] && return 0
  command -v npm >/dev/null 2>&1 || { echo "kinesis.sh: npm not found (Node.js)" >&2; return 3; }
  mkdir -p "$CACHE"
  echo "installing kinesalite $VERSION from the npm registry into $CACHE" >&2
  # leveldown (optional) would build a native module; in memory needs only memdown.
  (cd "$CACHE" && npm install --no-audit --no-fund --omit=optional --loglevel=error "kinesalite@$VERSION" >&2)
}

in_use() {
  (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null
}

start() {
  fetch
  stop >/dev/null 2>&1 || true
  if in_use "$PORT"; then
    echo "127.0.0.1:$PORT is in use; choose another KINESIS_PORT" >&2
    return 1
  fi
  # Streams become ACTIVE (and splits finish) in 50 ms instead of 500: tests wait less.
  nohup node "$CACHE/node_modules/kinesalite/cli.js" --port "$PORT" --createStreamMs 50 --deleteStreamMs 50 \
    --updateStreamMs 50 --shardLimit 50 >"$CACHE/run-$PORT.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    if in_use "$PORT"; then
      echo "http://127.0.0.1:$PORT"
      return 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      cat "$CACHE/run-$PORT.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "kinesalite did not listen on 127.0.0.1:$PORT within 10 s" >&2
  return 1
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  kill "$(cat "$PIDFILE")" 2>/dev/null || true
  rm -f "$PIDFILE"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 fetch|start|stop" >&2; exit 2 ;;
esac
