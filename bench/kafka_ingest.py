"""Kafka-mode ingest beside gRPC ingest, per processor CPU-second, in the same run (issue 13's target: within 20%).

    scripts/kafka.sh start && python -m bench.kafka_ingest [--messages 3000] && scripts/kafka.sh stop

The topic (6 partitions) is written first with the load generator's requests (512 spans of 20 features each,
bench/loadgen.py); then a durable `otel-ml serve --kafka-brokers`, pinned to CPU 0, reads all of it, and its CPU
time from its first to its last applied message divides the spans. The gRPC figure is bench.ingest's durable
one-core run (its own load generator on the other CPU).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

from bench.ingest import cpu_seconds, free_port, run, taskset
from bench.loadgen import make_request


def accepted(prom: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{prom}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("otel_ml_spans_accepted_total"))


def kafka_run(bootstrap: str, messages: int) -> dict[str, float]:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: its futures die with it
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])[topic].result(30)
    payloads = [make_request(512, seed=i) for i in range(16)]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "message.max.bytes": 16 << 20})
    for i in range(messages):
        while True:
            try:
                producer.produce(topic, payloads[i % len(payloads)], key=str(i).encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    state, prom = tempfile.mkdtemp(prefix="otel-ml-bench-kafka-"), free_port()
    proc = subprocess.Popen([*taskset([0]), sys.executable, "-m", "otel_ml.cli", "serve", "--state-dir", state,
                             "--otlp-grpc-endpoint", f"127.0.0.1:{free_port()}", "--no-otlp-http", "--no-ui",
                             "--prometheus-endpoint", f"127.0.0.1:{prom}", "--kafka-brokers", bootstrap,
                             "--kafka-topic", topic, "--kafka-group", topic, "--log-level", "WARNING"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("otel-ml serving")
        total = messages * 512
        first = None
        t0 = time.perf_counter()
        while True:
            got = accepted(prom)
            if first is None and got > 0:
                first = (cpu_seconds(proc.pid), got, time.perf_counter())
            if got >= total:
                break
            if time.perf_counter() - t0 > 600:
                raise TimeoutError(f"only {got:,.0f} of {total:,} spans after 600 s")
            time.sleep(0.2)
        end = cpu_seconds(proc.pid)
        assert first is not None
        spans = total - first[1]
        cpu = sum(end) - sum(first[0])
        return {"spans": spans, "cpu_s": cpu, "wall_s": time.perf_counter() - first[2],
                "spans_per_cpu_s": spans / cpu}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:19092")
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the gRPC run")
    args = ap.parse_args()
    grpc_run = run(True, args.seconds, 8, 1)
    kafka = kafka_run(args.bootstrap, args.messages)
    print("| way in (durable, processor on 1 core) | spans | processor CPU s | spans per processor CPU-second |")
    print("|---|---|---|---|")
    print(f"| OTLP/gRPC (bench.ingest) | {grpc_run['spans']:,.0f} | {grpc_run['cpu_s']:.1f} | "
          f"{grpc_run['spans_per_cpu_s']:,.0f} |")
    print(f"| Kafka, 6 partitions | {kafka['spans']:,.0f} | {kafka['cpu_s']:.1f} | {kafka['spans_per_cpu_s']:,.0f} |")
    print(f"\nKafka / gRPC: {kafka['spans_per_cpu_s'] / grpc_run['spans_per_cpu_s']:.2f}")


if __name__ == "__main__":
    main()
