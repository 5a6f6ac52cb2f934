"""Processor ingest over loopback gRPC: spans per second per core of *processor* CPU time.

    .venv/bin/python -m bench.ingest [--seconds 10] [--clients 2] [--durable both|on|off]

Each request holds 512 spans of 20 features (18 numeric, 2 categorical), the shape of issue "Performance".
Clients send pre-serialized requests (so the client's cost does not limit the figure); the processor's CPU time
(user + system, from /proc) over the run divides the spans it accepted. A bench, not a test: figures vary with
the machine; compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def make_request(spans: int = 512, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    for i in range(spans):
        span = ss.spans.add(name="predict", trace_id=rng.randbytes(16), span_id=rng.randbytes(8),
                            start_time_unix_nano=now + i * 1000, end_time_unix_nano=now + i * 1000 + 500_000)
        span.attributes.append(KeyValue(key="ml.model.name", value=AnyValue(string_value="bench-model")))
        for f in range(18):
            span.attributes.append(KeyValue(key=f"ml.feature.n{f}", value=AnyValue(double_value=rng.gauss(0, 1))))
        for f in range(2):
            span.attributes.append(KeyValue(key=f"ml.feature.c{f}",
                                            value=AnyValue(string_value=rng.choice("abcdefgh"))))
    return req.SerializeToString()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(durable: bool, seconds: float, clients: int, cores: int | None = None) -> dict[str, float]:
    """One processor run; ``cores`` pins the processor to that many CPUs (taskset), None leaves it free."""
    port, prom = free_port(), free_port()
    state = tempfile.mkdtemp(prefix="otel-ml-bench-")
    cfg = Path(state) / "c.yaml"
    cfg.write_text(f"state:\n  durable: {'true' if durable else 'false'}\n")
    pin = ["taskset", "-c", ",".join(str(c) for c in range(cores))] if cores else []
    proc = subprocess.Popen([*pin, sys.executable, "-m", "otel_ml.cli", "serve", "--config", str(cfg),
                             "--state-dir", state, "--otlp-grpc-endpoint", f"127.0.0.1:{port}", "--prometheus-endpoint", f"127.0.0.1:{prom}",
                             "--no-otlp-http", "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().startswith("otel-ml serving")
    payloads = [make_request(seed=i) for i in range(8)]
    sent = [0] * clients
    stop = threading.Event()

    def client(k: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            export = ch.unary_unary(EXPORT, request_serializer=None,
                                    response_deserializer=ExportTraceServiceResponse.FromString)
            i = 0
            while not stop.is_set():
                try:
                    export(payloads[i % len(payloads)], timeout=30)
                    sent[k] += 512
                except grpc.RpcError:
                    time.sleep(0.01)
                i += 1

    cpu0 = cpu_seconds(proc.pid)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(proc.pid) - cpu0
    proc.terminate()
    proc.wait(timeout=60)
    spans = sum(sent)
    return {"spans": spans, "wall_s": wall, "cpu_s": cpu, "spans_per_cpu_s": spans / cpu, "spans_per_s": spans / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--durable", choices=["both", "on", "off"], default="both")
    args = parser.parse_args()
    modes = {"both": [False, True], "on": [True], "off": [False]}[args.durable]
    results = {}
    print("| mode | spans | wall s | processor CPU s | spans per processor CPU-second | spans/s wall |")
    print("|---|---|---|---|---|---|")
    for durable in modes:
        r = run(durable, args.seconds, args.clients)
        results[durable] = r
        print(f"| {'durable (default)' if durable else 'not durable'} | {r['spans']:,.0f} | {r['wall_s']:.1f} | "
              f"{r['cpu_s']:.1f} | {r['spans_per_cpu_s']:,.0f} | {r['spans_per_s']:,.0f} |", flush=True)
    if len(results) == 2:
        on, off = results[True], results[False]
        print(f"\nDurable / not durable: {on['spans_per_s'] / off['spans_per_s']:.2f} (wall), "
              f"{on['spans_per_cpu_s'] / off['spans_per_cpu_s']:.2f} (per CPU-second).")


if __name__ == "__main__":
    main()
