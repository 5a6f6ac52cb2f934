#!/usr/bin/env bash
# Apache Kafka for tests and benches: one KRaft node (broker + controller) on loopback, from Maven Central's jars
# (no distribution tarball), fetched once into the cache like the Collector build.
#
#   scripts/kafka.sh start     # prints the bootstrap address, 127.0.0.1:$KAFKA_PORT (default 19092)
#   scripts/kafka.sh stop
#
# KAFKA_PORT chooses the port (the controller listens on KAFKA_PORT + 1); KAFKA_VERSION the release (4.4.0).
# Data and the log live in $CACHE/run-$KAFKA_PORT and are wiped at start: a fresh cluster every time.
set -euo pipefail

VERSION=${KAFKA_VERSION:-4.4.0}
PORT=${KAFKA_PORT:-19092}
if ! [[ $PORT =~ ^[0-9]+$ ]] || (( PORT < 1 || PORT > 65534 )); then
  echo "KAFKA_PORT must be a port number below 65535 (the controller takes the next one), got '$PORT'" >&2
  exit 2
fi
CONTROLLER_PORT=$((PORT + 1))
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/otel-ml/kafka-$VERSION
RUN=$CACHE/run-$PORT

fetch() {
  [ -f "$CACHE/lib/.complete" ] && return 0
  mkdir -p "$CACHE"
  cat > "$CACHE/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>otel-ml</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
EOF
  echo "fetching Apache Kafka $VERSION jars from Maven Central into $CACHE/lib" >&2
  mvn -q -f "$CACHE/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$CACHE/lib" >&2
  touch "$CACHE/lib/.complete"
}

java_cp() {
  java -Xms256m -Xmx512m -Dlog4j2.configurationFile="$RUN/log4j2.properties" -cp "$CACHE/lib/*" "$@"
}

in_use() {
  (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null
}

start() {
  fetch
  stop >/dev/null 2>&1 || true
  for port in "$PORT" "$CONTROLLER_PORT"; do
    if in_use "$port"; then  # else the wait below would greet whatever answers there as Kafka
      echo "127.0.0.1:$port is in use (Kafka needs KAFKA_PORT and KAFKA_PORT + 1); choose another KAFKA_PORT" >&2
      return 1
    fi
  done
  rm -rf "$RUN"
  mkdir -p "$RUN/data"
  cat > "$RUN/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$RUN/data
num.partitions=6
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
EOF
  cat > "$RUN/log4j2.properties" <<EOF
rootLogger.level=WARN
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=$RUN/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=%d %p %c: %m%n
EOF
  local cluster
  cluster=$(java_cp kafka.tools.StorageTool random-uuid)
  java_cp kafka.tools.StorageTool format -t "$cluster" -c "$RUN/server.properties" >"$RUN/format.log" 2>&1
  nohup java -Xms256m -Xmx1g -Dlog4j2.configurationFile="$RUN/log4j2.properties" -cp "$CACHE/lib/*" \
    kafka.Kafka "$RUN/server.properties" >"$RUN/stdout.log" 2>&1 &
  echo $! > "$RUN/pid"
  for _ in $(seq 1 120); do
    if ! kill -0 "$(cat "$RUN/pid")" 2>/dev/null; then
      echo "kafka exited; see $RUN/stdout.log and $RUN/server.log" >&2
      tail -20 "$RUN/stdout.log" >&2 || true
      return 1
    fi
    if in_use "$PORT"; then
      echo "127.0.0.1:$PORT"
      return 0
    fi
    sleep 0.5
  done
  echo "kafka did not listen on 127.0.0.1:$PORT within 60 s; see $RUN/server.log" >&2
  return 1
}

stop() {
  [ -f "$RUN/pid" ] || return 0
  local pid
  pid=$(cat "$RUN/pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$RUN/pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  fetch) fetch ;;
  *) echo "usage: $0 start|stop|fetch" >&2; exit 2 ;;
esac
