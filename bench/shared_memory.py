"""Resident memory per replica in shared Kafka mode, with 1, 2 and 3 replicas over the same data (issue 28: with 3
replicas, at most half of what 1 replica holds).

    scripts/kafka.sh start && python -m bench.shared_memory [--models 100 --features 50] && scripts/kafka.sh stop

For each replica count: a fresh 6-partition topic; the replicas start in one consumer group (shared mode) and the
topic is written only once the group is stable with every replica assigned, so no replica ever holds partitions
it gives up later. Each model's predictions are batch spans (``ml.batch.size``) of ``--features`` features (90%
numeric, 10% categorical) whose event times cover ``--windows`` - 1 windows of 60 s (the horizon is
``--windows``), sent to every partition (``--rows`` rows per model, window and partition). Once every replica has
applied all of it and the exporters' ``ml_predictions_total`` counts every row, each replica's VmRSS (with its
child processes': the Kafka decode processes) is read every
0.5 s for ``--settle`` seconds (evaluations, merges and publications go on every ``--evaluation-interval``); the
figure is each replica's largest, averaged over the replicas. An idle processor (no topic data) is measured the
same way: the floor every replica pays (Python, numpy, gRPC, librdkafka).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import ArrayValue

from bench.ingest import free_port
from bench.kafka_ingest import require_broker, scraped

WINDOW_S = 60
PARTITIONS = 6


def packed_doubles(values: np.ndarray) -> bytes:
    """An ArrayValue of doubles, encoded directly (field 1, length 9, AnyValue.double_value): the protobuf
    classes would build one object per value."""
    rec = np.empty(len(values), dtype=[("head", "S3"), ("value", "<f8")])
    rec["head"], rec["value"] = b"\x0a\x09\x21", values
    return rec.tobytes()


def model_request(model: str, end_ns: int, rows: int, features: int, rng: np.random.Generator) -> bytes:
    """One batch span of ``rows`` predictions of ``model`` ending at ``end_ns``."""
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add(
        name="predict", trace_id=rng.bytes(16), span_id=rng.bytes(8), start_time_unix_nano=end_ns - 1_000_000,
        end_time_unix_nano=end_ns)
    span.attributes.add(key="ml.model.name").value.string_value = model
    span.attributes.add(key="ml.batch.size").value.int_value = rows
    categorical = max(1, features // 10)
    for f in range(features - categorical):
        array = ArrayValue.FromString(packed_doubles(rng.normal(f % 7, 1 + f % 3, rows)))
        span.attributes.add(key=f"ml.feature.n{f}").value.array_value.CopyFrom(array)
    for f in range(categorical):
        values = span.attributes.add(key=f"ml.feature.c{f}").value.array_value.values
        for v in rng.choice(list("abcdefghij"), rows):
            values.add().string_value = str(v)
    return req.SerializeToString()


def group_stable(admin: object, group: str, members: int) -> bool:
    described = admin.describe_consumer_groups([group])[group].result(10)  # type: ignore[attr-defined]
    assigned = sum(len(m.assignment.topic_partitions) for m in described.members)
    return str(described.state).endswith("STABLE") and len(described.members) == members and assigned >= PARTITIONS


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def replica_rss_kib(pid: int) -> int:
    """VmRSS of a replica and of its child processes (its Kafka decode processes, and multiprocessing's resource
    tracker): what a replica costs the machine."""
    total = rss_kib(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                total += rss_kib(int(stat.parent.name))
        except (OSError, RuntimeError, IndexError):
            continue  # gone meanwhile
    return total


def run(bootstrap: str, replicas: int, args: argparse.Namespace) -> dict[str, float]:
    """Peak VmRSS (MiB) of each of ``replicas`` replicas holding the data (0 replicas: one idle processor)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"mem-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(30)
    procs = []
    for _ in range(max(1, replicas)):
        prom = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "otel_ml.cli", "serve",
                                 "--state-dir", tempfile.mkdtemp(prefix="otel-ml-bench-mem-"),
                                 "--otlp-grpc-endpoint", f"127.0.0.1:{free_port()}", "--no-otlp-http", "--no-ui",
                                 "--prometheus-endpoint", f"127.0.0.1:{prom}", "--kafka-brokers", bootstrap,
                                 "--kafka-topic", topic, "--kafka-group", topic,
                                 "--kafka-changelog-topic", f"{topic}-changelog",
                                 "--evaluation-interval", str(args.evaluation_interval),
                                 "--window", str(WINDOW_S), "--horizon", str(WINDOW_S * args.windows),
                                 "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
        procs.append((proc, prom))
    try:
        for proc, _ in procs:
            assert proc.stdout is not None and proc.stdout.readline().startswith("otel-ml serving")
        deadline = time.monotonic() + 120
        while not group_stable(admin, topic, len(procs)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {topic} not stable with {len(procs)} members after 120 s")
            time.sleep(0.5)
        total = 0
        if replicas:
            rng = np.random.default_rng(0)
            producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "message.max.bytes": 64 << 20})
            now = time.time_ns()
            # Event times inside the horizon: the oldest window still counts once the newest one arrives.
            for w in range(args.windows - 1):
                end_ns = now - (args.windows - 2 - w) * WINDOW_S * 10**9
                for m in range(args.models):
                    payload = model_request(f"model-{m:03d}", end_ns, args.rows, args.features, rng)
                    for p in range(PARTITIONS):
                        while True:
                            try:
                                producer.produce(topic, payload, partition=p)
                                break
                            except BufferError:
                                producer.poll(0.05)
                        total += args.rows
            producer.flush(300)
            deadline = time.monotonic() + 1800
            while sum(scraped(prom, "ml_predictions_total") for _, prom in procs) < total:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not every row exported after 1800 s ({total:,} sent)")
                time.sleep(1)
        peaks = [0] * len(procs)
        main_peaks = [0] * len(procs)
        end = time.monotonic() + args.settle
        while time.monotonic() < end:
            peaks = [max(peak, replica_rss_kib(proc.pid)) for peak, (proc, _) in zip(peaks, procs, strict=True)]
            main_peaks = [max(peak, rss_kib(proc.pid)) for peak, (proc, _) in zip(main_peaks, procs, strict=True)]
            time.sleep(0.5)
        return {"rows": total, "mean_mib": sum(peaks) / len(peaks) / 1024, "max_mib": max(peaks) / 1024,
                "min_mib": min(peaks) / 1024, "main_mib": sum(main_peaks) / len(main_peaks) / 1024}
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:  # a figure already taken must not be lost to a slow shutdown
                print(f"replica {proc.pid} still stopping after 120 s: killed", file=sys.stderr)
                proc.kill()
                proc.wait()
        admin.delete_topics([topic, f"{topic}-changelog"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:19092")
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--features", type=int, default=50)
    ap.add_argument("--windows", type=int, default=15, help="the horizon, in windows of 60 s")
    ap.add_argument("--rows", type=int, default=400, help="rows per model, window and partition")
    ap.add_argument("--settle", type=float, default=30.0, help="seconds of RSS sampling once everything is in")
    ap.add_argument("--evaluation-interval", type=float, default=10.0, help="also the publication interval")
    ap.add_argument("--replicas", type=int, nargs="*", default=[1, 2, 3])
    args = ap.parse_args()
    require_broker(args.bootstrap)
    idle = run(args.bootstrap, 0, args)
    print(f"{args.models} models × {args.features} features, {PARTITIONS} partitions, {args.windows - 1} windows of "
          f"{args.rows} rows per model and partition; idle processor: {idle['mean_mib']:.0f} MiB\n")
    print(f"idle processor's main process alone: {idle['main_mib']:.0f} MiB\n")
    print("| replicas | rows | RSS per replica, MiB (mean of peaks) | min–max | above idle | vs 1 replica "
          "| main process alone, MiB | vs 1 replica |")
    print("|---|---|---|---|---|---|---|---|")
    one = None
    for n in args.replicas:
        r = run(args.bootstrap, n, args)
        one = one or r
        print(f"| {n} | {r['rows']:,} | {r['mean_mib']:.0f} | {r['min_mib']:.0f}–{r['max_mib']:.0f} | "
              f"{r['mean_mib'] - idle['mean_mib']:.0f} | {r['mean_mib'] / one['mean_mib']:.2f}× | "
              f"{r['main_mib']:.0f} | {r['main_mib'] / one['main_mib']:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
