"""A load generator for the processor, as its own process: pre-serialized OTLP trace exports over gRPC or HTTP.

    .venv/bin/python -m bench.loadgen --endpoint 127.0.0.1:4317 --seconds 10 --threads 2 [--spans 512]
    .venv/bin/python -m bench.loadgen --protocol http --endpoint 127.0.0.1:4318 ...   (POST /v1/traces, protobuf,
                                                                                     one keep-alive connection each)

Sends requests of ``--spans`` spans (20 features: 18 numeric, 2 categorical, the shape of issue
"Performance") as fast as the processor answers, from ``--threads`` threads, for ``--seconds``; prints one
JSON line: spans acknowledged, requests refused (UNAVAILABLE and other errors), and this process's own CPU
seconds (so a benchmark can tell how much of the machine the load itself took). Requests are built once, so
the generator spends its CPU on gRPC only. Loopback only by default; stops by itself.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import resource
import threading
import time

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def make_request(spans: int = 512, seed: int = 0, model: str = "bench-model") -> bytes:
    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    for i in range(spans):
        span = ss.spans.add(name="predict", trace_id=rng.randbytes(16), span_id=rng.randbytes(8),
                            start_time_unix_nano=now + i * 1000, end_time_unix_nano=now + i * 1000 + 500_000)
        span.attributes.append(KeyValue(key="ml.model.name", value=AnyValue(string_value=model)))
        for f in range(18):
            span.attributes.append(KeyValue(key=f"ml.feature.n{f}", value=AnyValue(double_value=rng.gauss(0, 1))))
        for f in range(2):
            span.attributes.append(KeyValue(key=f"ml.feature.c{f}",
                                            value=AnyValue(string_value=rng.choice("abcdefgh"))))
    return req.SerializeToString()


def cpu_seconds_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def generate(endpoint: str, seconds: float, threads: int, spans: int, protocol: str = "grpc") -> dict[str, float]:
    payloads = [make_request(spans, seed=i) for i in range(8)]
    acked = [0] * threads
    refused = [0] * threads
    stop = threading.Event()

    def http_client(k: int) -> None:
        host, _, port = endpoint.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        i = k
        while not stop.is_set():
            try:
                conn.request("POST", "/v1/traces", body=payloads[i % len(payloads)],
                             headers={"Content-Type": "application/x-protobuf"})
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    acked[k] += spans
                else:
                    refused[k] += 1
                    time.sleep(0.01)
            except (OSError, http.client.HTTPException):
                refused[k] += 1
                conn.close()
                time.sleep(0.01)
            i += 1
        conn.close()

    def client(k: int) -> None:
        with grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
            export = ch.unary_unary(EXPORT, request_serializer=None,
                                    response_deserializer=ExportTraceServiceResponse.FromString)
            i = k
            while not stop.is_set():
                try:
                    export(payloads[i % len(payloads)], timeout=30)
                    acked[k] += spans
                except grpc.RpcError:
                    refused[k] += 1
                    time.sleep(0.01)
                i += 1

    cpu0 = cpu_seconds_self()
    t0 = time.perf_counter()
    workers = [threading.Thread(target=http_client if protocol == "http" else client, args=(k,))
               for k in range(threads)]
    for t in workers:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in workers:
        t.join()
    return {"spans": sum(acked), "refused": sum(refused), "wall_s": time.perf_counter() - t0,
            "cpu_s": cpu_seconds_self() - cpu0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", default="127.0.0.1:4317")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    args = parser.parse_args()
    print(json.dumps(generate(args.endpoint, args.seconds, args.threads, args.spans, args.protocol)), flush=True)


if __name__ == "__main__":
    main()
