"""Kafka as a way in: a real Apache Kafka (scripts/kafka.sh: Maven Central's jars, one KRaft node on loopback),
OTLP messages as the Collector's kafka exporter writes them, `otel-ml serve --kafka-brokers`, and kill -9."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.loadgen import make_request
from tests.conftest import free_port, select, wait_for
from tests.external_processes import REPO, require

N_MESSAGES = 60
SPANS = 100


@pytest.fixture(scope="module")
def kafka() -> Iterator[str]:
    require("Java and Maven (Apache Kafka from Maven Central)", bool(shutil.which("java") and shutil.which("mvn")),
            "scripts/setup-test-deps.sh fetches the jars")
    port = free_port()
    env = {**os.environ, "KAFKA_PORT": str(port)}
    out = subprocess.run([str(REPO / "scripts" / "kafka.sh"), "start"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    try:
        yield out.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(REPO / "scripts" / "kafka.sh"), "stop"], env=env, timeout=60)


def produce(bootstrap: str, topic: str, payloads: list[bytes], every: float = 0.0) -> None:
    """Write ``payloads`` to ``topic`` (created with 6 partitions if new), one per ``every`` seconds."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic not in admin.list_topics(timeout=30).topics:
        admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 16 << 20, "linger.ms": 0})
    for payload in payloads:
        producer.produce(topic, payload, key=os.urandom(8))  # random keys spread the messages over the partitions
        if every:
            producer.flush(10)
            time.sleep(every)
    assert producer.flush(60) == 0


def accepted(sp) -> float:
    return sum(s.value for s in select(sp.scrape(), "otel_ml_spans_accepted_total"))


def test_kafka_messages_counted_once_across_kill_9_and_bad_ones_skipped(kafka: str, serve_factory,
                                                                        tmp_path: Path) -> None:
    topic = "otel-ml-spans-test"
    payloads = [make_request(SPANS, seed=i, model=f"kafka-model-{i % 3}") for i in range(N_MESSAGES)]
    half = N_MESSAGES // 2
    produce(kafka, topic, [*payloads[:5], b"\x0a\xff garbage, not OTLP", *payloads[5:half]])
    config = tmp_path / "otel-ml.yaml"  # librdkafka settings pass through: a killed member leaves the group in 6 s
    config.write_text("receiver:\n  kafka:\n    client_options:\n      session.timeout.ms: '6000'\n")
    args = ("--config", str(config), "--kafka-brokers", kafka, "--kafka-topic", topic, "--kafka-group", "test",
            "--no-otlp-http", "--window", "60", "--horizon", "600")
    sp = serve_factory(*args)
    wait_for(lambda: accepted(sp) >= half * SPANS, timeout=60, what="the first half applied")
    # The second half arrives while the processor runs; kill -9 in the middle of it (no checkpoint since start:
    # what was applied is in the journal only, offsets included).
    writer = threading.Thread(target=produce, args=(kafka, topic, payloads[half:], 0.05))
    writer.start()
    time.sleep(0.6)
    assert writer.is_alive(), "the kill must land while messages still arrive"
    sp.proc.kill()
    sp.proc.wait()
    writer.join(60)
    sp = serve_factory(*args, state_dir=sp.state_dir)
    total = N_MESSAGES * SPANS
    wait_for(lambda: accepted(sp) >= total, timeout=90, what="every message applied")
    assert any("replayed" in line and "journaled request" in line for line in sp.log), "".join(sp.log)
    time.sleep(2)  # anything read twice would show now
    samples = sp.scrape()
    assert accepted(sp) == total  # nothing lost, nothing twice
    per_model = {s.labels["ml_model_name"]: s.value for s in select(samples, "ml_predictions_total")}
    assert per_model == {f"kafka-model-{k}": SPANS * len(range(k, N_MESSAGES, 3)) for k in range(3)}
    skipped = {s.labels["reason"]: s.value for s in select(samples, "otel_ml_kafka_messages_skipped_total")}
    assert skipped == {"not_otlp": 1, "too_large": 0}  # skipped once, journaled like the rest


def test_sdk_to_collector_kafka_exporter_to_topic_to_serve(kafka: str, serve_factory, tmp_path: Path) -> None:
    """collector-config/kafka.yaml as shipped: the plain OTel SDK → the Collector's kafka exporter (otlp_proto) →
    a 6-partition topic → otel-ml serve; every prediction counted once, ordinary spans filtered out on the way."""
    from tests.external_processes import start_collector
    from tests.test_collector import _Target
    from tests.test_e2e import sdk_provider

    topic = "otel-ml-spans-collector"
    produce(kafka, topic, [])  # the topic, with 6 partitions, before the Collector writes to it
    col_grpc = free_port()
    collector, _ = start_collector(REPO / "collector-config" / "kafka.yaml", tmp_path, {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{col_grpc}", "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "KAFKA_BROKERS": kafka, "OTEL_ML_KAFKA_TOPIC": topic})
    try:
        sp = serve_factory("--kafka-brokers", kafka, "--kafka-topic", topic, "--kafka-group", "collector-test",
                           "--no-otlp-http", "--window", "60", "--horizon", "600")
        provider = sdk_provider(_Target(col_grpc))
        tracer = provider.get_tracer("app")
        for i in range(3000):
            tracer.start_span("predict", attributes={"ml.model.name": f"m{i % 4}", "ml.feature.x": float(i)}).end()
            if i % 100 == 0:
                tracer.start_span("GET /health").end()  # not ML: the Collector drops it
        provider.shutdown()

        def counted() -> dict[str, float] | None:
            got = {s.labels["ml_model_name"]: s.value for s in select(sp.scrape(), "ml_predictions_total")}
            return got if sum(got.values()) >= 3000 else None

        got = wait_for(counted, timeout=90, what="3000 predictions through the Collector and Kafka")
        time.sleep(2)
        assert got == {f"m{k}": 750.0 for k in range(4)} == counted()
        assert sum(s.value for s in select(sp.scrape(), "otel_ml_spans_ignored_total")) == 0
    finally:
        collector.stop()
