"""Which Kafka client for the processor (issue 13): consume throughput per CPU-second of OTLP-sized messages.

    scripts/kafka.sh start && python -m bench.kafka_clients [--messages 4000] && scripts/kafka.sh stop

Needs ``pip install confluent-kafka kafka-python`` (the ``bench`` extra) and a broker (scripts/kafka.sh: Apache
Kafka from Maven Central's jars, one KRaft node on loopback). Each message is an ExportTraceServiceRequest of 512
prediction spans (bench/loadgen.py), what the Collector's kafka exporter writes with ``encoding: otlp_proto``.
The topic is written once (confluent-kafka's producer); each client then reads it all in a consumer group of
its own, and its process CPU time (user + system, this process and its threads: librdkafka's included) divides
the messages read. Decoding the messages (the compiled decoder) is measured beside it: the share of a Kafka-mode
processor's CPU the client would take.
"""

from __future__ import annotations

import argparse
import resource
import time
import uuid

from bench.kafka_ingest import require_broker
from bench.loadgen import make_request
from otel_ml.decode import decode_request


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def produce(bootstrap: str, topic: str, payloads: list[bytes], n: int) -> float:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "none",
                  "message.max.bytes": 16 << 20})
    t = time.perf_counter()
    for i in range(n):
        while True:
            try:
                p.produce(topic, payloads[i % len(payloads)], key=f"model-{i % 7}".encode())
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(60)
    return time.perf_counter() - t


def consume_confluent(bootstrap: str, topic: str, n: int) -> tuple[int, float, float]:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "fetch.max.bytes": 64 << 20})
    c.subscribe([topic])
    got = size = 0
    c0, t0 = cpu(), time.perf_counter()
    while got < n:
        for m in c.consume(500, 1.0):
            if m.error() is None:
                got += 1
                size += len(m.value())
    elapsed, spent = time.perf_counter() - t0, cpu() - c0
    c.close()
    return got, spent, elapsed


def consume_kafka_python(bootstrap: str, topic: str, n: int) -> tuple[int, float, float]:
    from kafka import KafkaConsumer

    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4()}",
                      auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_bytes=64 << 20,
                      max_partition_fetch_bytes=16 << 20)
    got = 0
    c0, t0 = cpu(), time.perf_counter()
    while got < n:
        for records in c.poll(timeout_ms=1000, max_records=500).values():
            got += len(records)
    elapsed, spent = time.perf_counter() - t0, cpu() - c0
    c.close()
    return got, spent, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:19092")
    ap.add_argument("--messages", type=int, default=4000)
    args = ap.parse_args()
    require_broker(args.bootstrap)
    payloads = [make_request(512, seed=i) for i in range(16)]
    topic = f"otel-ml-bench-{uuid.uuid4().hex[:8]}"
    wall = produce(args.bootstrap, topic, payloads, args.messages)
    size = sum(len(p) for p in payloads) / len(payloads)
    print(f"topic {topic}: {args.messages:,} messages of {size / 1024:.0f} KB (512 spans each) written in "
          f"{wall:.1f} s\n")
    c0 = cpu()
    for p in payloads * 20:
        decode_request(p)
    decode_cpu = (cpu() - c0) / (len(payloads) * 20)
    print("| client | messages | CPU s | messages per CPU-second | spans per CPU-second (consume only) | "
          "consume CPU per message / decode CPU per message |")
    print("|---|---|---|---|---|---|")
    for name, fn in (("confluent-kafka (librdkafka)", consume_confluent), ("kafka-python (pure Python)",
                                                                         consume_kafka_python)):
        got, spent, _ = fn(args.bootstrap, topic, args.messages)
        print(f"| {name} | {got:,} | {spent:.2f} | {got / spent:,.0f} | {got * 512 / spent:,.0f} | "
              f"{spent / got / decode_cpu:.2f} |", flush=True)
    print(f"\nDecoding one message (compiled decoder): {decode_cpu * 1e3:.2f} ms CPU.")


if __name__ == "__main__":
    main()
