"""Kafka as a way in: a real Apache Kafka (scripts/kafka.sh: Maven Central's jars, one KRaft node on loopback),
OTLP messages as the Collector's kafka exporter writes them, `otel-ml serve --kafka-brokers`, and kill -9."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.loadgen import make_request
from tests.support import REPO, counter, free_port, require, select, wait_for

N_MESSAGES = 60

NS = 1_000_000_000

SPANS = 100


@pytest.fixture(scope="module")
def kafka() -> Iterator[str]:
    require("Java and Maven (Apache Kafka from Maven Central)", bool(shutil.which("java") and shutil.which("mvn")),
            "scripts/setup-test-deps.sh fetches the jars")
    for _attempt in range(3):  # a broker once exited at start without a word (its controller port, +1, taken?)
        port = free_port()
        env = {**os.environ, "KAFKA_PORT": str(port)}
        out = subprocess.run([str(REPO / "scripts" / "kafka.sh"), "start"], capture_output=True, text=True,
                             env=env, timeout=300)
        if out.returncode == 0:
            break
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
    a 6-partition topic → otel-ml serve; every prediction counted once, ordinary spans filtered out on the way;
    ground truth as SDK log records through the Collector's logs topic, joined to its predictions."""
    from tests.e2e.test_collector import _Target, labelled_rows, send_predictions_and_log_labels
    from tests.support import sdk_provider, start_collector

    topic, logs_topic = "otel-ml-spans-collector", "otel-ml-labels-collector"
    produce(kafka, topic, [])  # the topics, with 6 partitions, before the Collector writes to them
    produce(kafka, logs_topic, [])
    col_grpc = free_port()
    collector, _ = start_collector(REPO / "collector-config" / "kafka.yaml", tmp_path, {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{col_grpc}", "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "KAFKA_BROKERS": kafka, "OTEL_ML_KAFKA_TOPIC": topic, "OTEL_ML_KAFKA_LOGS_TOPIC": logs_topic})
    try:
        sp = serve_factory("--kafka-brokers", kafka, "--kafka-topic", topic, "--kafka-group", "collector-test",
                           "--kafka-logs-topic", logs_topic, "--no-otlp-http", "--window", "60", "--horizon", "600")
        provider = sdk_provider(_Target(col_grpc))
        tracer = provider.get_tracer("app")
        for i in range(3000):
            tracer.start_span("predict", attributes={"ml.model.name": f"m{i % 4}", "ml.feature.x": float(i)}).end()
            if i % 100 == 0:
                tracer.start_span("GET /health").end()  # not ML: the Collector drops it
        provider.shutdown()

        rows = labelled_rows(np.random.default_rng(3), 300)
        send_predictions_and_log_labels(f"127.0.0.1:{col_grpc}", "labelled", rows, time.time_ns() - 60 * NS)

        def counted() -> dict[str, float] | None:
            samples = sp.scrape()
            got = {s.labels["ml_model_name"]: s.value for s in select(samples, "ml_predictions_total")}
            labels = sum(s.value for s in select(samples, "ml_ground_truth_total"))
            return got if sum(got.values()) >= 3300 and labels >= len(rows) else None

        got = wait_for(counted, timeout=90, what="3300 predictions and 300 labels through the Collector and Kafka")
        time.sleep(2)
        assert got == {**{f"m{k}": 750.0 for k in range(4)}, "labelled": 300.0} == counted()
        samples = sp.scrape()
        assert sum(s.value for s in select(samples, "otel_ml_spans_ignored_total")) == 0
        assert [s.value for s in select(samples, "ml_ground_truth_total")] == [300.0]
        assert sum(s.value for s in select(samples, "ml_ground_truth_unmatched_total")) == 0
        expected = float((rows.y == rows.y_pred).mean())

        def accuracy() -> float | None:  # an evaluation after all 300 labels: earlier ones saw fewer
            got = select(sp.scrape(), "ml_performance", ml_model_name="labelled", ml_performance_metric="accuracy")
            return got[0].value if got and got[0].value == pytest.approx(expected, abs=1e-5) else None

        wait_for(accuracy, timeout=30, what=f"realized accuracy of all 300 labels, {expected}")
    finally:
        collector.stop()

SHARED_MODELS = {"hot": 3000, "small-0": 400, "small-1": 400, "small-2": 400}

"""Predictions per model: one hot model over every partition, and small ones."""

SHARED_CONFIG = "windows:\n  reference_min_rows: 200\n"


def shared_args(kafka: str, topic: str, group: str, config: Path, interval: float = 1) -> tuple[str, ...]:
    return ("--config", str(config), "--kafka-brokers", kafka, "--kafka-topic", topic, "--kafka-group", group,
            "--kafka-changelog-topic", f"{group}-changelog", "--window", "60", "--horizon", "300",
            "--evaluation-interval", str(interval))


def exported(replicas: list) -> dict[str, dict]:
    """Per replica's scrape: the models it exports (drift decisions, scores, predictions), merged; fails on a
    model exported by two replicas."""
    out: dict[str, dict] = {"predictions": {}, "detected": {}, "scores": {}, "ready": {}}
    owner: dict[str, int] = {}
    for i, sp in enumerate(replicas):
        samples = sp.scrape()
        for s in select(samples, "ml_predictions_total"):
            model = s.labels["ml_model_name"]
            assert owner.setdefault(model, i) == i, f"{model} exported by replicas {owner[model]} and {i}"
            out["predictions"][model] = s.value
        for s in select(samples, "ml_reference_ready"):
            out["ready"][s.labels["ml_model_name"]] = s.value
        for name, key in (("ml_drift_detected", "detected"), ("ml_drift_score", "scores")):
            for s in select(samples, name):
                model = s.labels["ml_model_name"]
                assert owner.get(model) == i, f"{model}'s {name} from replica {i}, predictions from {owner.get(model)}"
                out[key][model, s.labels.get("ml_feature_name", ""), s.labels.get("ml_drift_method", "")] = s.value
    return out


def settled(replicas: list) -> dict[str, dict]:
    """The exported numbers once every prediction is counted, every model has its pinned reference, and two
    scrapes a few evaluations apart agree on the decisions."""
    seen: list = []

    def complete():
        got = exported(replicas)
        seen[:] = [got]
        return got if (got["predictions"] == {m: float(n) for m, n in SHARED_MODELS.items()}
                       and got["ready"] == {m: 1.0 for m in SHARED_MODELS} and got["detected"]) else None

    try:
        previous = wait_for(complete, timeout=120, what="every prediction counted and every reference pinned")
    except AssertionError as e:
        logs = "".join(line for sp in replicas for line in sp.log[-30:])
        raise AssertionError(f"{e}; exported: { {k: v for k, v in seen[0].items() if k != 'scores'} }\n{logs}") \
            from None
    for _ in range(20):
        time.sleep(3)
        now = wait_for(complete, timeout=60, what="the numbers again")
        # Scores move a little from one evaluation to the next: every evaluation merges the partitions' KLL
        # sketches afresh, and KLL compaction is randomized.
        if all(now[k] == previous[k] for k in ("predictions", "detected", "ready")):
            return now
        previous = now
    raise AssertionError("the exported numbers did not settle")


def partitions_holding(bootstrap: str, topic: str, needle: bytes) -> dict[int, int]:
    """Per partition of ``topic``: how many of its messages contain ``needle``."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(6)])
        found: dict[int, int] = {}
        while messages := consumer.consume(500, 2.0):
            for m in messages:
                if m.error() is None and needle in (m.value() or b""):
                    found[m.partition()] = found.get(m.partition(), 0) + 1
        return found
    finally:
        consumer.close()


def restored_offsets(line: str) -> list[int]:
    """From a replica's "partitions [...] taken over at offsets [...]" log line: the offsets of partitions that came
    with a state (>= 0)."""
    if "taken over at offsets [" not in line:
        return []
    return [int(o) for o in line.split("taken over at offsets [")[1].split("]")[0].split(",") if int(o) >= 0]


class ExportSampler(threading.Thread):
    """Scrapes every replica every 0.1 s: which replicas export each model's ml_predictions_total; records any
    sample with two exporters and, per model, the longest time without one."""

    def __init__(self, replicas: list) -> None:
        super().__init__(daemon=True)
        self.replicas = replicas
        self.duplicates: list[tuple[float, str, list[int]]] = []
        self.longest_gap: dict[str, float] = {m: 0.0 for m in SHARED_MODELS}
        self._halt = threading.Event()

    def run(self) -> None:
        last_seen = {m: time.monotonic() for m in SHARED_MODELS}
        while not self._halt.wait(0.1):
            exporters: dict[str, list[int]] = {}
            for i, sp in enumerate(list(self.replicas)):
                try:
                    samples = sp.scrape()
                except OSError:  # still starting
                    continue
                for s in select(samples, "ml_predictions_total"):
                    exporters.setdefault(s.labels["ml_model_name"], []).append(i)
            now = time.monotonic()
            for model in SHARED_MODELS:
                if len(exporters.get(model, [])) > 1:
                    self.duplicates.append((now, model, exporters[model]))
                if exporters.get(model):
                    last_seen[model] = now
                self.longest_gap[model] = max(self.longest_gap[model], now - last_seen[model])

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def archive_everywhere(replicas: list, tmp_path: Path) -> None:
    """Every replica's archive holds every partition's windows that left the horizon, the same rows in each; the
    exporting replica's feature page draws their history; `otel-ml report` works on any replica's directory."""
    import json
    import sys
    import urllib.request

    rows = []
    for i, sp in enumerate(replicas):
        out = tmp_path / f"hot-{i}.json"

        def exported(sp=sp, out=out) -> bool:
            done = subprocess.run([sys.executable, "-m", "otel_ml.cli", "archive", "export", "--state-dir",
                                   str(sp.state_dir), "--model", "hot", "--from", "0", "--to", str(time.time() + 60),
                                   "--output", str(out)], capture_output=True, text=True)
            return done.returncode == 0

        wait_for(exported, timeout=60, what=f"replica {i}'s archive of the hot model")
        rows.append(json.loads(out.read_text())["rows"])
    assert rows[0] > 0 and len(set(rows)) == 1, rows
    exporter = next(sp for sp in replicas if select(sp.scrape(), "ml_predictions_total", ml_model_name="hot"))
    doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{exporter.ui_port}/api/v1/models/hot/versions/_"
                                            "/features/x?from=0", timeout=30).read())
    assert doc["archive_history"] and any(p is not None for p in doc["archive_history"]["p_value"]), doc
    report = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "otel_ml.cli", "report", "--state-dir", str(replicas[0].state_dir),
                           "--model", "hot", "--output", str(report)], capture_output=True, text=True)
    assert done.returncode == 0 and report.stat().st_size > 0, done.stderr


def test_replicas_share_models_and_match_one_replica(kafka: str, serve_factory, tmp_path: Path) -> None:
    """SDK → Collector (kafka exporter) → 6 partitions → 1, 2 and 3 replicas in one group each: every model
    exported by exactly one replica, counts equal what was sent, decisions equal the one-replica run's; and a group
    growing from 1 to 3 replicas hands partitions over with their windows, without a gap or a duplicate."""
    from tests.e2e.test_collector import _Target
    from tests.support import sdk_provider, start_collector

    topic = "otel-ml-shared"
    produce(kafka, topic, [])
    col_grpc = free_port()
    collector, _ = start_collector(REPO / "collector-config" / "kafka.yaml", tmp_path, {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{col_grpc}", "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "KAFKA_BROKERS": kafka, "OTEL_ML_KAFKA_TOPIC": topic})
    try:
        # 660 s of event time, ending a minute ago: the first 300 s become the pinned reference; "hot"'s x and
        # small-2's category drift in the second half.
        provider = sdk_provider(_Target(col_grpc))
        tracer = provider.get_tracer("app")
        rng = np.random.default_rng(7)
        t0 = time.time_ns() - 720 * NS
        rows = [(model, i / n) for model, n in SHARED_MODELS.items() for i in range(n)]
        rows.sort(key=lambda r: r[1])
        sent: dict[tuple[str, str], list[tuple[bool, float]]] = {}  # (in the reference's 300 s, value)
        for i, (model, frac) in enumerate(rows):
            if i and i % 84 == 0:  # 50 Collector batches (its timeout is 200 ms), each to a partition at random
                provider.force_flush()
                time.sleep(0.25)
            t = t0 + int(frac * 660 * NS)
            later = frac > 0.5
            attrs = {"ml.model.name": model, "ml.feature.x": float(rng.normal(1.0 if later and model == "hot" else 0)),
                     "ml.feature.y": float(rng.gamma(2.0)),
                     "ml.feature.c": str(rng.choice(["a", "b", "c"], p=[0.2, 0.3, 0.5] if later and model == "small-2"
                                                    else [0.5, 0.3, 0.2]))}
            tracer.start_span("predict", start_time=t, attributes=attrs).end(end_time=t + 1_000_000)
            for name in ("x", "y"):
                sent.setdefault((model, name), []).append((frac * 660 < 300, attrs[f"ml.feature.{name}"]))
        provider.shutdown()
        # "hot" spread over every partition (P(a partition missed by 50 random messages) = 6 × (5/6)^50 < 0.0001)
        wait_for(lambda: len(partitions_holding(kafka, topic, b"hot")) == 6, timeout=30,
                 what="the hot model's spans in all 6 partitions")
        config = tmp_path / "shared.yaml"
        config.write_text(SHARED_CONFIG)
        results = {}
        for n in (2, 3):  # a group per replica count, each reading the topic from its start
            replicas = [serve_factory(*shared_args(kafka, topic, f"shared-{n}", config),
                                      state_dir=tmp_path / f"state-{n}-{i}") for i in range(n)]
            results[n] = settled(replicas)
            owners = [len(select(sp.scrape(), "ml_predictions_total")) for sp in replicas]
            # the models' exporting partitions (0, 2, 3) are spread over more than one replica
            assert sum(1 for k in owners if k) > 1, owners
            if n == 3:
                archive_everywhere(replicas, tmp_path)
            for sp in replicas:
                sp.stop()
        # One group growing from 1 to 3 replicas: partitions handed over with their windows, each model's series
        # sampled every 0.1 s on every replica: never from two, and never missing for longer than one evaluation
        # interval (2 s here, 10 s by default) plus the sampling period. A handover takes ~0.3–1.3 s here: the
        # members' next heartbeat (0.5 s), the group's sync, the new owner's catch-up and evaluation.
        grow_args = shared_args(kafka, topic, "shared-grow", config, interval=2)
        grow = [serve_factory(*grow_args, state_dir=tmp_path / "grow-0")]
        results[1] = settled(grow)
        sampler = ExportSampler(grow)
        sampler.start()
        for i in (1, 2):
            grow.append(serve_factory(*grow_args, state_dir=tmp_path / f"grow-{i}"))
            grown = settled(grow)
            assert grown["predictions"] == results[1]["predictions"] and grown["detected"] == results[1]["detected"]
            # the newcomer's partitions came with their windows from the changelog (-1: a partition never written)
            assert any(restored_offsets(line) for line in grow[-1].log), "".join(grow[-1].log)
        sampler.stop()
        assert sampler.duplicates == [], sampler.duplicates[:5]
        assert max(sampler.longest_gap.values()) <= 2.0 + 0.35, sampler.longest_gap
        one = results[1]
        assert one["detected"][("hot", "x", "overall")] == 1.0
        assert one["detected"][("small-2", "c", "overall")] == 1.0
        assert one["detected"][("small-0", "x", "overall")] == 0.0
        # x moved, its independence from y did not: the partitions' correlation moments, merged, say so alike
        assert one["detected"][("hot", "(correlation)", "overall")] == 0.0
        for n in (2, 3):
            assert results[n]["predictions"] == one["predictions"]
            assert results[n]["detected"] == one["detected"], n
            # Scores: the merge of per-partition KLL sketches vs one sketch of every row, within the sketches'
            # rank error (k = 200: 1.65% per sketch): a rank statistic (KS) or a distance of binned shares moves by
            # at most 2 x 1.65% (x its size past 1). Wasserstein integrates the CDF gap over the values: each run's
            # current and pinned reference sketches both differ, 2 x 2 x 1.65% over the values' range, divided by
            # the reference's σ (docs/statistics.md, Known limits; as tests/e2e/test_kinesis.py).
            assert results[n]["scores"].keys() == one["scores"].keys()
            for key, value in one["scores"].items():
                bound = 0.033 * max(1.0, abs(value))
                if key[2] == "wasserstein":
                    values = np.array([v for _, v in sent[key[0], key[1]]])
                    ref = np.array([v for in_ref, v in sent[key[0], key[1]] if in_ref])
                    bound = 2 * 0.033 * float(values.max() - values.min()) / float(np.std(ref, ddof=1))
                assert abs(results[n]["scores"][key] - value) <= bound, (n, key, results[n]["scores"][key], value,
                                                                          bound)
    finally:
        collector.stop()


def test_replica_killed_under_traffic_resumes_from_the_changelog(kafka: str, serve_factory, tmp_path: Path) -> None:
    """Two replicas in one group, messages arriving; kill -9 one: the other takes its partitions over from the
    changelog, the killed one comes back and takes some back; every prediction counted exactly once."""
    topic, group = "otel-ml-shared-kill", "shared-kill"
    payloads = [make_request(SPANS, seed=i, model=f"kill-model-{i % 4}") for i in range(N_MESSAGES * 2)]
    produce(kafka, topic, payloads[:N_MESSAGES // 2])
    config = tmp_path / "shared.yaml"
    config.write_text(SHARED_CONFIG)
    args = shared_args(kafka, topic, group, config)
    a = serve_factory(*args, state_dir=tmp_path / "a")
    b = serve_factory(*args, state_dir=tmp_path / "b")
    writer = threading.Thread(target=produce, args=(kafka, topic, payloads[N_MESSAGES // 2:], 0.04))
    writer.start()
    time.sleep(2.5)
    assert writer.is_alive(), "the kill must land while messages still arrive"
    b.proc.kill()
    b.proc.wait()
    time.sleep(1)
    b = serve_factory(*args, state_dir=tmp_path / "b2")  # a new machine: nothing on its disk
    writer.join(60)
    expected = {f"kill-model-{k}": float(SPANS * len(range(k, N_MESSAGES * 2, 4))) for k in range(4)}

    replicas = [a, b]

    def counted():
        got: dict[str, float] = {}
        for sp in replicas:
            for s in select(sp.scrape(), "ml_predictions_total"):
                assert s.labels["ml_model_name"] not in got, "a model exported twice"
                got[s.labels["ml_model_name"]] = s.value
        return got if got == expected else None

    wait_for(counted, timeout=120, what=f"every prediction counted once: {expected}")
    time.sleep(3)
    assert counted() == expected  # nothing read twice shows up later
    assert any(restored_offsets(line) for line in b.log), "".join(b.log)  # b2's partitions from the changelog
    # Every replica gone (SIGTERM: each publishes as it leaves); one new replica on a new disk: the whole state
    # comes from the changelog, and nothing is read twice.
    for sp in (a, b):
        assert sp.stop() == 0
    c = serve_factory(*args, state_dir=tmp_path / "c")
    replicas[:] = [c]
    wait_for(counted, timeout=60, what="the counts restored from the changelog alone")
    time.sleep(3)
    assert counted() == expected
    assert any(restored_offsets(line) for line in c.log), "".join(c.log)
    assert len(select(c.scrape(), "ml_predictions_total")) == 4, "".join(c.log)


def exported_labels(replicas: list) -> dict[str, float]:
    """Per replica's scrape: the labelled model's predictions, labels joined and realized accuracy, from the one
    replica exporting it; fails on two."""
    out: dict[str, float] = {}
    for sp in replicas:
        try:
            samples = sp.scrape()
        except OSError:
            continue
        got = {name: select(samples, name, ml_model_name="labelled") for name in
               ("ml_predictions_total", "ml_ground_truth_total")}
        if not got["ml_predictions_total"]:
            continue
        assert not out, "the model is exported by two replicas"
        out["predictions"] = got["ml_predictions_total"][0].value
        out["joined"] = got["ml_ground_truth_total"][0].value if got["ml_ground_truth_total"] else 0.0
        accuracy = select(samples, "ml_performance", ml_model_name="labelled", ml_performance_metric="accuracy")
        overall = [s.value for s in accuracy if "ml_segment" not in s.labels]
        out["accuracy"] = overall[0] if overall else float("nan")
        out.update({f"accuracy {s.labels['ml_segment']}": s.value for s in accuracy if "ml_segment" in s.labels})
        out["duplicates"] = sum(s.value for s in select(samples, "ml_ground_truth_unmatched_total",
                                                        ml_model_name="labelled", reason="duplicate"))
    return out


def test_shared_replicas_join_every_label_once(kafka: str, serve_factory, tmp_path: Path) -> None:
    """Issue 28: ground truth in shared mode. Predictions (SDK → Collector → Kafka, spread over 6 partitions at
    random) meet their labels wherever they came in: labels as spans through the same Collector pipeline, and
    labels sent as OTLP log records straight to one replica (which writes them to the topic). Three replicas, one
    killed -9 under traffic and replaced (a rebalance each time): every label joined exactly once, and the realized
    accuracy equals scikit-learn's on the same rows (a one-processor run's). The spans carry a segment
    (``ml.segment.side``: x below 3 or not): each label joins in its prediction's segment across partitions, so each
    segment's accuracy equals scikit-learn's on its rows too (issue 33 in shared mode)."""
    from sklearn import metrics as skm

    from otel_ml.instrument import ModelMonitor
    from tests.e2e.test_collector import _Target, labelled_rows
    from tests.support import LOGS, export, labels_request, sdk_provider, start_collector

    topic, group = "otel-ml-shared-labels", "shared-labels"
    produce(kafka, topic, [])
    config = tmp_path / "shared.yaml"
    config.write_text(SHARED_CONFIG)
    args = shared_args(kafka, topic, group, config)
    replicas = [serve_factory(*args, state_dir=tmp_path / f"r{i}") for i in range(3)]
    col_grpc = free_port()
    collector, _ = start_collector(REPO / "collector-config" / "kafka.yaml", tmp_path, {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{col_grpc}", "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "KAFKA_BROKERS": kafka, "OTEL_ML_KAFKA_TOPIC": topic})
    n = 1200
    rows = labelled_rows(np.random.default_rng(3), n)
    try:
        provider = sdk_provider(_Target(col_grpc))
        tracer = provider.get_tracer("serving")
        monitor = ModelMonitor("labelled", tracer_provider=provider)
        t0 = time.time_ns() - 600 * NS
        for i, r in enumerate(rows.itertuples()):
            if i and i % 100 == 0:
                provider.force_flush()  # a Collector batch each: spread over the partitions at random
                time.sleep(0.1)
            t = t0 + i * 100_000_000
            tracer.start_span("predict", start_time=t, attributes={
                "ml.model.name": "labelled", "ml.prediction.id": f"lab-{i}", "ml.prediction": int(r.y_pred),
                "ml.prediction.probability": float(r.p), "ml.feature.x": float(r.x),
                "ml.segment.side": "low" if r.x < 3 else "high"}).end(end_time=t + 1000)
            if i == n // 2:  # under traffic: one replica killed, a new one (empty disk) joins
                provider.force_flush()
                replicas[1].proc.kill()
                replicas[1].proc.wait()
                replicas[1] = serve_factory(*args, state_dir=tmp_path / "r1-again")
        provider.force_flush()
        # Labels: two thirds as spans through the Collector (the consuming replica routes each to the partition
        # its id hashes to), the rest as OTLP log records to one replica (it writes them to that partition).
        spans_part = range(0, 2 * n // 3)
        for lo in range(0, len(spans_part), 200):
            ids = [f"lab-{i}" for i in spans_part[lo:lo + 200]]
            monitor.record_ground_truth_batch(ids, [int(rows.y[i]) for i in spans_part[lo:lo + 200]])
        provider.shutdown()
        now = time.time_ns()
        for lo in range(2 * n // 3, n, 100):
            answer = export(replicas[0], LOGS, labels_request(
                "labelled", [(f"lab-{i}", int(rows.y[i])) for i in range(lo, min(lo + 100, n))], now))
            assert answer.partial_success.rejected_log_records == 0, answer.partial_success.error_message
        expected = float(skm.accuracy_score(rows.y, rows.y_pred))
        side = np.where(rows.x < 3, "low", "high")
        per_side = {f"accuracy side={k}": float(skm.accuracy_score(rows.y[side == k], rows.y_pred[side == k]))
                    for k in ("low", "high")}

        def complete() -> dict[str, float] | None:
            got = exported_labels(replicas)
            return got if got.get("joined") == n and got.get("predictions") == n and \
                got.get("accuracy") == pytest.approx(expected, abs=1e-5) and \
                {k: got.get(k) for k in per_side} == pytest.approx(per_side, abs=1e-5) else None

        try:
            wait_for(complete, timeout=120, what=f"{n} predictions, {n} labels joined, accuracy {expected}")
        except AssertionError as e:
            logs = "".join(line for sp in replicas for line in sp.log[-20:])
            raise AssertionError(f"{e}; exported: {exported_labels(replicas)}\n{logs}") from None
        time.sleep(3)  # a label applied twice would show up here
        got = exported_labels(replicas)
        assert got["joined"] == n and got["duplicates"] == 0 and got["predictions"] == n, got
        assert all("Traceback" not in "".join(sp.log) for sp in replicas)
    finally:
        collector.stop()


def test_shared_replicas_archive_performance_and_late_labels_count_once(kafka: str, serve_factory,
                                                                       tmp_path: Path) -> None:
    """Issue 43 in shared mode: predictions whose performance windows leave the (two-minute) horizon before their
    labels come; the labels arrive as deltas of archived windows, one replica is killed -9 while they arrive and
    replaced. The owners publish archived windows and deltas; a replica that ran throughout holds every label once
    in its archive, and `otel-ml report --format json` over the range equals scikit-learn on those rows."""
    from sklearn import metrics as skm

    from tests.e2e.test_collector import labelled_rows
    from tests.support import LOGS, TRACES, export, labels_request, predictions_request

    topic, group = "otel-ml-shared-archive", "shared-archive"
    produce(kafka, topic, [])
    config = tmp_path / "shared.yaml"
    config.write_text(SHARED_CONFIG + "performance:\n  window_seconds: 60\n  horizon_seconds: 120\n")
    args = shared_args(kafka, topic, group, config)
    replicas = [serve_factory(*args, state_dir=tmp_path / f"r{i}") for i in range(2)]
    n = 1200
    rows = labelled_rows(np.random.default_rng(43), n)
    t0 = (time.time_ns() // (60 * NS) - 40) * 60 * NS  # 20 one-minute windows, 20 to 40 minutes ago
    for k in range(0, n, 60):
        export(replicas[0], TRACES, predictions_request("archived", [
            {"ml.prediction.id": f"a-{i}", "ml.prediction": int(rows.y_pred[i]), "ml.prediction.probability":
             float(rows.p[i]), "ml.feature.x": float(rows.x[i])} for i in range(k, k + 60)], t0 + k // 60 * 60 * NS))
    for lo in range(0, n, 100):  # labels now: every window they count in has left the horizon
        if lo == n // 2:
            replicas[1].proc.kill()  # kill -9 while labels arrive; a replica with an empty disk takes its place
            replicas[1].proc.wait()
            replicas[1] = serve_factory(*args, state_dir=tmp_path / "r1-again")
        answer = export(replicas[0], LOGS, labels_request(
            "archived", [(f"a-{i}", int(rows.y[i])) for i in range(lo, lo + 100)], time.time_ns()))
        assert answer.partial_success.rejected_log_records == 0, answer.partial_success.error_message

    def joined() -> float | None:
        got = sum(counter(sp, "ml_ground_truth_total", ml_model_name="archived") for sp in replicas)
        return got if got == n else None

    wait_for(joined, timeout=120, what=f"all {n} labels joined")
    reference = tmp_path / "reference.csv"
    rows[["x"]].to_csv(reference, index=False)
    built = subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "archived",
                            "--input", str(reference), "--output", str(tmp_path / "archived.json")],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    out = tmp_path / "report.json"

    def archived() -> dict | None:  # replica 0 ran throughout: every publication's archive rows are in its archive
        done = subprocess.run([sys.executable, "-m", "otel_ml.cli", "report", "--state-dir", str(tmp_path / "r0"),
                               "--model", "archived", "--reference", str(tmp_path / "archived.json"), "--from",
                               str(t0 // NS), "--to", str(t0 // NS + 1200), "--format", "json", "--output", str(out)],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            return None
        perf = json.loads(out.read_text())["performance"]
        return perf if perf and perf["labeled"] >= n else None

    perf = wait_for(archived, timeout=120, what=f"all {n} labels in replica 0's performance archive")
    assert perf["labeled"] == n and perf["predictions_with_id"] == n  # once each, across the kill
    accuracy = next(m for m in perf["metrics"] if m["metric"] == "accuracy")["realized"]["value"]
    assert accuracy == pytest.approx(skm.accuracy_score(rows.y, rows.y_pred), abs=1e-12)
    assert len(perf["history"]) == 20 and sum(h["labeled"] for h in perf["history"]) == n
