"""Kafka-mode ingest beside gRPC ingest, per processor CPU-second, in the same run (issue 13's target: within 20%).

    scripts/kafka.sh start && python -m bench.kafka_ingest [--messages 3000] && scripts/kafka.sh stop

Then journal mode not pinned (both CPUs), with no decode process and with ``--decode-processes`` of them (issue
28: Kafka messages decoded in worker processes like gRPC requests): spans per second (wall) and per CPU-second of
the processor and its decode processes.

Then shared mode (``--kafka-changelog-topic``) with 1, 2 and 3 replicas in one group over a fresh topic each:
total spans per second (wall) from the first span applied until the model's exported count reaches them all
(partitions handed over as replicas join included), and per processor CPU-second.

The topic (6 partitions) is written first with the load generator's requests (512 spans of 20 features each,
bench/loadgen.py); then a durable `otel-ml serve --kafka-brokers`, pinned to CPU 0, reads all of it, and its CPU
time from its first to its last applied message divides the spans. The gRPC figure is bench.ingest's durable
one-core run (its own load generator on the other CPU).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

from bench.ingest import cpu_seconds, free_port, run, taskset
from bench.loadgen import make_request
from bench.sketch_limit import rows_per_cpu_second
from otel_ml.receiver.config import kafka_error_text


def scraped(prom: int, metric: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{prom}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(metric))


def require_broker(bootstrap: str) -> None:
    """Exit in one line when no Kafka answers at ``bootstrap`` (before minutes of gRPC load)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    except KafkaException as e:
        raise SystemExit(f"no Kafka at --bootstrap {bootstrap} ({kafka_error_text(e)}); "
                         "start one with scripts/kafka.sh start") from None


def fill_topic(bootstrap: str, messages: int) -> str:
    """A new 6-partition topic with ``messages`` load-generator requests of 512 spans (one model)."""
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
    return topic


def kafka_run(bootstrap: str, messages: int, replicas: int = 0, decode_processes: int = 0,
              pinned: bool = True) -> dict[str, float]:
    """``replicas`` 0: one processor, journal mode, pinned to CPU 0 (``pinned`` False: its consumer thread and
    ``decode_processes`` decode processes on both CPUs). ``replicas`` N: N processors in one group in shared mode
    (changelog), replica i on CPU i % 2; done when the model's exported ``ml_predictions_total`` (one replica
    exports it) reaches every span. CPU time counts the processor's decode processes too."""
    topic = fill_topic(bootstrap, messages)
    procs = []
    shared = ("--kafka-changelog-topic", f"{topic}-changelog", "--evaluation-interval", "1") if replicas else ()
    for i in range(max(1, replicas)):
        state, prom = tempfile.mkdtemp(prefix="otel-ml-bench-kafka-"), free_port()
        pin = taskset([i % 2 if replicas else 0]) if replicas or pinned else []
        processes = ("--receiver-processes", str(decode_processes))
        proc = subprocess.Popen([*pin, sys.executable, "-m", "otel_ml.cli", "serve", *processes,
                                 "--state-dir", state, "--otlp-grpc-endpoint", f"127.0.0.1:{free_port()}",
                                 "--no-otlp-http", "--no-ui", "--prometheus-endpoint", f"127.0.0.1:{prom}",
                                 "--kafka-brokers", bootstrap, "--kafka-topic", topic, "--kafka-group", topic,
                                 "--log-level", "WARNING", *shared], stdout=subprocess.PIPE, text=True)
        procs.append((proc, prom))
    try:
        for proc, _ in procs:
            assert proc.stdout is not None and proc.stdout.readline().startswith("otel-ml serving")
        total = messages * 512

        def done() -> float:
            metric = "ml_predictions_total" if replicas else "otel_ml_spans_accepted_total"
            return sum(scraped(prom, metric) for _, prom in procs)

        first = None
        t0 = time.perf_counter()
        while True:
            got = sum(scraped(prom, "otel_ml_spans_accepted_total") for _, prom in procs)
            if first is None and got > 0:
                first = ([sum(cpu_seconds(p.pid)) for p, _ in procs], got, time.perf_counter())
            if first is not None and done() >= total:
                break
            if time.perf_counter() - t0 > 600:
                raise TimeoutError(f"only {done():,.0f} of {total:,} spans after 600 s")
            time.sleep(0.2)
        wall = time.perf_counter() - first[2]
        cpu = sum(sum(cpu_seconds(p.pid)) for p, _ in procs) - sum(first[0])
        spans = total - (0 if replicas else first[1])  # shared: the exported count moves once per evaluation
        return {"spans": spans, "cpu_s": cpu, "wall_s": wall, "spans_per_cpu_s": spans / cpu,
                "spans_per_s": spans / wall}
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:19092")
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the gRPC run")
    ap.add_argument("--decode-processes", type=int, nargs="*", default=[1],
                    help="journal-mode runs (not pinned) with this many decode processes, beside one with none")
    ap.add_argument("--replicas", type=int, nargs="*", default=[1, 2, 3],
                    help="shared-mode runs with this many replicas in one group (none: skip)")
    args = ap.parse_args()
    require_broker(args.bootstrap)
    limit = statistics.median(rows_per_cpu_second() for _ in range(3))
    grpc_run = run(True, args.seconds, 8, 1)
    kafka = kafka_run(args.bootstrap, args.messages)
    print(f"DataSketches alone (bench/sketch_limit.py, median of 3): {limit:,.0f} rows per CPU-second\n")
    print("| way in (durable, processor on 1 core) | spans | processor CPU s | spans per processor CPU-second | "
          "vs DataSketches alone |")
    print("|---|---|---|---|---|")
    print(f"| OTLP/gRPC (bench.ingest) | {grpc_run['spans']:,.0f} | {grpc_run['cpu_s']:.1f} | "
          f"{grpc_run['spans_per_cpu_s']:,.0f} | {grpc_run['spans_per_cpu_s'] / limit:.3f}× |")
    print(f"| Kafka, 6 partitions | {kafka['spans']:,.0f} | {kafka['cpu_s']:.1f} | {kafka['spans_per_cpu_s']:,.0f} | "
          f"{kafka['spans_per_cpu_s'] / limit:.3f}× |")
    print(f"\nKafka / gRPC: {kafka['spans_per_cpu_s'] / grpc_run['spans_per_cpu_s']:.2f}\n")
    if args.decode_processes:
        print("| journal mode, not pinned | spans | wall s | spans/s | processor CPU s (with decode processes) | "
              "spans per CPU-second |")
        print("|---|---|---|---|---|---|")
        for n in [0, *args.decode_processes]:
            r = kafka_run(args.bootstrap, args.messages, decode_processes=n, pinned=False)
            print(f"| {n} decode process{'es' if n != 1 else ''} | {r['spans']:,.0f} | {r['wall_s']:.1f} | "
                  f"{r['spans_per_s']:,.0f} | {r['cpu_s']:.1f} | {r['spans_per_cpu_s']:,.0f} |", flush=True)
        print()
    if args.replicas:
        print("| shared mode (changelog) | spans | wall s | spans/s (total) | processor CPU s | spans per CPU-second |")
        print("|---|---|---|---|---|---|")
        for n in args.replicas:
            r = kafka_run(args.bootstrap, args.messages, n)
            print(f"| {n} replica{'s' if n > 1 else ''} | {r['spans']:,.0f} | {r['wall_s']:.1f} | "
                  f"{r['spans_per_s']:,.0f} | {r['cpu_s']:.1f} | {r['spans_per_cpu_s']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
