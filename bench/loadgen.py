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
import gzip
import http.client
import json
import random
import resource
import threading
import time

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def make_request(spans: int = 512, seed: int = 0, model: str = "bench-model", ids: bool = False,
                 regressor: bool = False) -> bytes:
    """``ids``: each span also carries ml.prediction.id (unique per request seed), ml.prediction and
    ml.prediction.probability, as a classifier whose ground truth comes later does. ``regressor``: a numeric
    ml.prediction (``regression_prediction`` of the features), as a regressor's spans do."""
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
        if regressor:
            values = {kv.key: kv.value for kv in span.attributes}
            span.attributes.append(KeyValue(key="ml.prediction", value=AnyValue(double_value=regression_prediction(
                [values[f"ml.feature.n{f}"].double_value for f in range(3)], values["ml.feature.c0"].string_value,
                rng.gauss(0, 1)))))
        if ids:
            p = rng.random()
            pid = f"{seed:08x}-{i:04x}-{rng.getrandbits(64):016x}"
            span.attributes.append(KeyValue(key="ml.prediction.id", value=AnyValue(string_value=pid)))
            span.attributes.append(KeyValue(key="ml.prediction", value=AnyValue(int_value=int(p >= 0.5))))
            span.attributes.append(KeyValue(key="ml.prediction.probability", value=AnyValue(double_value=p)))
    return req.SerializeToString()


def genai_request(spans: int = 512, seed: int = 0, content: bool = True) -> bytes:
    """``spans`` LLM calls as opentelemetry-instrumentation-openai-v2 describes them with the newest names
    (gen_ai_latest_experimental; ``content``: the messages captured on the span, as SPAN_ONLY does): what otel-ml
    reads as predictions of openai/gpt-4o-mini/chat (otel_ml/decode/genai.py)."""
    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    words = ["model", "data", "drift", "window", "label", "metric", "span", "trace"]
    for i in range(spans):
        span = ss.spans.add(name="chat gpt-4o-mini", trace_id=rng.randbytes(16), span_id=rng.randbytes(8), kind=3,
                            start_time_unix_nano=now + i * 1000, end_time_unix_nano=now + i * 1000 + 400_000_000)
        question = "What is a " + " ".join(rng.choices(words, k=rng.randint(2, 6))) + "?"
        answer = " ".join(["word"] * rng.randint(3, 15))
        attrs: dict[str, object] = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.request.temperature": rng.choice([0.0, 0.3, 0.7]), "gen_ai.request.max_tokens": 64,
            "gen_ai.response.finish_reasons": ["stop"], "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.response.id": f"chatcmpl-{rng.getrandbits(64):016x}",
            "gen_ai.usage.input_tokens": len(question.split()), "gen_ai.usage.output_tokens": len(answer.split()),
            "server.address": "api.openai.com", "server.port": 443}
        if content:
            attrs["gen_ai.input.messages"] = json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": question}]}])
            attrs["gen_ai.output.messages"] = json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}])
        for key, value in attrs.items():
            kv = span.attributes.add(key=key)
            if isinstance(value, str):
                kv.value.string_value = value
            elif isinstance(value, float):
                kv.value.double_value = value
            elif isinstance(value, int):
                kv.value.int_value = value
            else:
                kv.value.array_value.values.add(string_value=value[0])  # type: ignore[index]
    return req.SerializeToString()


def regression_prediction(n: list[float], c0: str, noise: float) -> float:
    """A regressor's output from the first three numeric features and c0: the truth 10 + n0 + 2 n1 − n2 plus an
    error that grows with |n0| and doubles for c0 = "a" (bench.ingest --dle fits its loss models on such rows)."""
    return 10 + n[0] + 2 * n[1] - n[2] + noise * (1 + abs(n[0])) * (2.0 if c0 == "a" else 1.0)


def label_request(spans: int = 512, seed: int = 0, model: str = "bench-model") -> bytes:
    """Ground truth of ``make_request(spans, seed, ids=True)``'s predictions: one OTLP log record of ``spans``
    labels (``ml.batch.size`` arrays), as ``otel-ml labels send`` sends them."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest as Req

    from otel_ml.instrument.labels import labels_request

    req = Req.FromString(make_request(spans, seed, model, ids=True))
    ids, values = [], []
    for span in req.resource_spans[0].scope_spans[0].spans:
        attrs = {kv.key: kv.value for kv in span.attributes}
        ids.append(attrs["ml.prediction.id"].string_value)
        values.append(int(random.Random(ids[-1]).random() < attrs["ml.prediction.probability"].double_value))
    return labels_request(model, "", ids, values, spans)[0][1]


def cpu_seconds_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def generate(endpoint: str, seconds: float, threads: int, spans: int, protocol: str = "grpc",
             ids: bool = False, labels: bool = False, regressor: bool = False,
             compression: str = "none", genai: bool = False) -> dict[str, float]:
    """``labels``: send the ground truth of the ``ids`` predictions (OTLP logs) instead. ``compression`` gzip:
    every request gzip-compressed, as the Collector's otlp exporter sends by default (gRPC message compression;
    HTTP Content-Encoding)."""
    payloads = ([label_request(spans, seed=i) for i in range(64)] if labels else
                [genai_request(spans, seed=i, content=False) for i in range(8)] if genai else
                [make_request(spans, seed=i, ids=ids, regressor=regressor) for i in range(64 if ids else 8)])
    gzipped = compression == "gzip"
    if gzipped and protocol == "http":
        payloads = [gzip.compress(p, compresslevel=1) for p in payloads]  # Go's BestSpeed, as the Collector
    method = LOGS_EXPORT if labels else EXPORT
    response_type = ExportLogsServiceResponse if labels else ExportTraceServiceResponse
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
                             headers={"Content-Type": "application/x-protobuf",
                                      **({"Content-Encoding": "gzip"} if gzipped else {})})
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
            export = ch.unary_unary(method, request_serializer=None, response_deserializer=response_type.FromString)
            i = k
            while not stop.is_set():
                try:
                    export(payloads[i % len(payloads)], timeout=30,
                           compression=grpc.Compression.Gzip if gzipped else None)
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
    parser.add_argument("--ids", action="store_true", help="spans carry prediction ids and probabilities")
    parser.add_argument("--labels", action="store_true", help="send the ground truth of the --ids predictions")
    parser.add_argument("--regressor", action="store_true", help="spans carry a numeric prediction (a regressor)")
    parser.add_argument("--compression", choices=["none", "gzip"], default="none",
                        help="gzip: compress every request, as the Collector's otlp exporter does by default")
    parser.add_argument("--genai", action="store_true",
                        help="LLM calls as GenAI spans (genai_request, content not captured: the instrumentations' "
                             "default) instead")
    args = parser.parse_args()
    print(json.dumps(generate(args.endpoint, args.seconds, args.threads, args.spans, args.protocol, args.ids,
                              args.labels, args.regressor, args.compression, args.genai)), flush=True)


if __name__ == "__main__":
    main()
