"""Hostile and broken input through `otel-ml serve`: fuzzed receivers, limits, oversized requests, overload."""

from __future__ import annotations

import http.client
import json
import os
import random
import select as io_select
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.support import build, make_batches, select, wait_for
from tests.unit.test_hostile import EXPORT


def test_fuzzed_receivers_keep_serving_healthy_traffic(tmp_path: Path, serve_factory) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("receiver:\n  otlp_grpc:\n    max_message_bytes: 1000000\n"
                   "limits:\n  max_models: 20\n  max_features_per_span: 100\n")
    sp = serve_factory("--config", str(cfg), "--evaluation-interval", "0.5")
    stop = threading.Event()
    outcomes: dict[str, int] = {}
    rng = random.Random(1)
    valid = build([[("ml.model.name", AnyValue(string_value="fuzz")), ("ml.feature.x", AnyValue(double_value=1))]],
                  [])

    def fuzz() -> None:
        with grpc.insecure_channel(sp.grpc_endpoint) as ch:
            export = ch.unary_unary(EXPORT, request_serializer=None,
                                    response_deserializer=ExportTraceServiceResponse.FromString)
            while not stop.is_set():
                kind = rng.choice(["random", "mutated", "http"])
                if kind == "random":
                    data = os.urandom(rng.randint(0, 2000))
                else:
                    data = bytearray(valid)
                    for _ in range(rng.randint(1, 8)):
                        data[rng.randrange(len(data))] = rng.randrange(256)
                    data = bytes(data)
                try:
                    if kind == "http":
                        req = urllib.request.Request(f"http://127.0.0.1:{sp.http_port}/v1/traces", data=data,
                                                     headers={"Content-Type": "application/x-protobuf"})
                        code = urllib.request.urlopen(req, timeout=10).status
                        key = f"http {code}"
                    else:
                        export(data, timeout=10)
                        key = "grpc OK"
                except urllib.error.HTTPError as e:
                    key = f"http {e.code}"
                except grpc.RpcError as e:
                    key = f"grpc {e.code().name}"
                except (http.client.HTTPException, OSError) as e:
                    key = f"http {type(e).__name__}"
                outcomes[key] = outcomes.get(key, 0) + 1

    fuzzer = threading.Thread(target=fuzz, daemon=True)
    fuzzer.start()
    try:
        exporter = OTLPSpanExporter(endpoint=f"http://{sp.grpc_endpoint}", insecure=True)
        for batch in make_batches(40, 25):
            assert exporter.export(batch) == SpanExportResult.SUCCESS
        # Limits while the fuzzer runs: 10,000 features in one span, and more models than allowed.
        wide = build([[("ml.model.name", AnyValue(string_value="wide"))]
                      + [(f"ml.feature.f{i}", AnyValue(double_value=i)) for i in range(10_000)]], [])
        many = build([[("ml.model.name", AnyValue(string_value=f"model-{i}")),
                       ("ml.feature.x", AnyValue(double_value=1))] for i in range(100)], [])
        huge = build([[("ml.model.name", AnyValue(string_value="big")),
                       ("ml.feature.blob", AnyValue(string_value="x" * 2_000_000))]], [])
        with grpc.insecure_channel(sp.grpc_endpoint) as ch:
            export = ch.unary_unary(EXPORT, request_serializer=None,
                                    response_deserializer=ExportTraceServiceResponse.FromString)
            resp = export(wide, timeout=10)
            assert resp.partial_success.rejected_spans == 1
            assert "too_many_features" in resp.partial_success.error_message
            resp = export(many, timeout=10)
            assert 0 < resp.partial_success.rejected_spans <= 100
            assert "too_many_models" in resp.partial_success.error_message
            with pytest.raises(grpc.RpcError) as err:
                export(huge, timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        req = urllib.request.Request(f"http://127.0.0.1:{sp.http_port}/v1/traces", data=b"\0" * 70_000_000,
                                     headers={"Content-Type": "application/x-protobuf"})
        with pytest.raises(urllib.error.HTTPError) as http_err:
            urllib.request.urlopen(req, timeout=30)
        assert http_err.value.code == 413
        time.sleep(1.0)
    finally:
        stop.set()
        fuzzer.join(timeout=15)
    assert sp.proc.poll() is None, "the processor survived"
    assert sum(outcomes.values()) > 50, outcomes
    assert set(outcomes) <= {"grpc OK", "grpc INVALID_ARGUMENT", "http 200", "http 400"}, (outcomes, "".join(sp.log))
    counts = {s.labels["ml_model_name"]: s.value for s in select(sp.scrape(), "ml_predictions_total")}
    assert sum(v for k, v in counts.items() if k in {"m0", "m1", "m2"}) == 1000, (
        counts, [line for line in sp.log if "released" in line][:20])
    assert len(counts) <= 20


def test_overload_answers_unavailable_with_retry_info_and_memory_stays_bounded(tmp_path: Path,
                                                                             serve_factory) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("limits:\n  max_inflight_bytes: 100000\n  retry_after_seconds: 0.2\n")
    sp = serve_factory("--config", str(cfg), "--evaluation-interval", "1", "--no-otlp-http")
    batches = make_batches(60, 500)
    sent = sum(len(b) for b in batches)
    peak_rss = 0

    def rss_kb() -> int:
        for line in Path(f"/proc/{sp.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def sender(part: list) -> None:
        exporter = OTLPSpanExporter(endpoint=f"http://{sp.grpc_endpoint}", insecure=True, timeout=60)
        for batch in part:
            while exporter.export(batch) != SpanExportResult.SUCCESS:
                pass

    threads = [threading.Thread(target=sender, args=(batches[i::6],), daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak_rss = max(peak_rss, rss_kb())
        time.sleep(0.05)
    refused = wait_for(lambda: select(sp.scrape(), "otel_ml_requests_refused_total"), what="refusals counted")
    assert refused[0].value > 0
    total = wait_for(lambda: (c := sum(s.value for s in select(sp.scrape(), "ml_predictions_total"))) == sent and c,
                     timeout=20, what="every span counted once")
    print(f"overload: {sent} spans from 6 senders, {refused[0].value:.0f} requests refused with RetryInfo, "
          f"counted {total:.0f}, peak RSS {peak_rss / 1024:.0f} MiB")
    assert peak_rss < 600 * 1024


def test_cardinality_caps_limit_exported_series(tmp_path: Path, serve_factory) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("export:\n  cardinality:\n    max_models: 2\n    max_features_per_model: 3\n")
    sp = serve_factory("--config", str(cfg), "--evaluation-interval", "0.3", "--no-otlp-http")
    req = ExportTraceServiceRequest()
    spans_ = req.resource_spans.add().scope_spans.add().spans
    for m in range(5):
        for _ in range(10 * (m + 1)):  # model-4 busiest
            span = spans_.add(end_time_unix_nano=time.time_ns())
            span.attributes.append(KeyValue(key="ml.model.name", value=AnyValue(string_value=f"model-{m}")))
            for f in range(6):
                span.attributes.append(KeyValue(key=f"ml.feature.f{f}", value=AnyValue(double_value=f)))
    with grpc.insecure_channel(sp.grpc_endpoint) as ch:
        ch.unary_unary(EXPORT)(req.SerializeToString(), timeout=10)

    def exported():
        samples = sp.scrape()
        models = {s.labels["ml_model_name"] for s in select(samples, "ml_reference_ready")}
        overflow = {s.labels["kind"]: s.value for s in select(samples, "otel_ml_export_overflow")}
        return (models, overflow) if models else None

    models, overflow = wait_for(exported, what="capped series")
    assert models == {"model-4", "model-3"}
    assert overflow["model"] == 3
    # The prediction counter is one series per model, bounded by limits.max_models, and not capped here.
    assert len(select(sp.scrape(), "ml_predictions_total")) == 5


def test_every_rejection_reason_is_declared_and_exported_from_the_start(serve_factory) -> None:
    """semconv.REJECTION_REASONS lists every reason the decoder and the service give (each is exported at 0 from
    the start, so alert rules on rate() see the first rejection)."""
    import re
    from pathlib import Path

    from otel_ml import semconv

    root = Path(__file__).resolve().parents[2] / "otel_ml"
    text = "".join((root / f).read_text() for f in ("decode/otlp.py", "decode/outcomes.py", "core/live.py"))
    used = set(re.findall(r'(?:_Rejected|reject)\(\s*"([a-z_]+)"', text)) | set(
        re.findall(r'rejected\["([a-z_]+)"\]', text)) | set(
        re.findall(r'refuse\([^"]*?,\s*"([a-z_]+)"', text)) | set(
        re.findall(r'return "([a-z_]+)", ', (root / "decode/limits.py").read_text())) | set(  # id_problem, ...
        re.findall(r'return "([a-z_]+)", ', (root / "decode/evaluations.py").read_text()))  # read_evaluation
    assert used == set(semconv.REJECTION_REASONS), used ^ set(semconv.REJECTION_REASONS)
    sp = serve_factory()
    exported = {s.labels["reason"]: s.value for s in select(sp.scrape(), "otel_ml_spans_rejected_total")}
    assert exported == dict.fromkeys(semconv.REJECTION_REASONS, 0.0)
    for name in ("otel_ml_spans_received_total", "otel_ml_requests_refused_total", "otel_ml_models_released_total"):
        assert select(sp.scrape(), name), name


def _stalled_grpc_stream(port: int, deadline: float) -> float | None:
    """An HTTP/2 connection that starts an Export and never finishes its message (its frames written by hand: no
    gRPC client can be made to stall). Answers the server's SETTINGS and PINGs like a live peer; returns the
    seconds until the server closed the connection, or None if it was still open at ``deadline``."""
    import socket
    import struct

    def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload

    def literal(name: str, value: str) -> bytes:  # HPACK literal without indexing, no Huffman (lengths < 127)
        return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()

    headers = b"".join(literal(k, v) for k, v in (
        (":method", "POST"), (":scheme", "http"), (":path", EXPORT), (":authority", f"127.0.0.1:{port}"),
        ("content-type", "application/grpc"), ("te", "trailers")))
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 4, 1, headers)
                  + frame(0, 0, 1, b"\x00" + struct.pack(">I", 1000) + b"\x0a\x05"))  # 2 of 1000 bytes
        buf = b""
        s.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                data = s.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return time.monotonic() - started
            if not data:
                return time.monotonic() - started
            buf += data
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                kind, flags, payload = buf[3], buf[4], buf[9:9 + length]
                buf = buf[9 + length:]
                if kind == 4 and not flags & 1:
                    s.sendall(frame(4, 1, 0, b""))  # SETTINGS ack
                elif kind == 6 and not flags & 1:
                    s.sendall(frame(6, 1, 0, payload))  # PING ack
    return None


def test_streams_that_never_finish_do_not_hold_grpc_connections(tmp_path: Path, serve_factory) -> None:
    """Issue 30 case 6: HTTP/2 streams that never finish their message kept their connections open indefinitely.
    Connections are now asked to go away after receiver.otlp_grpc.max_connection_age_seconds and closed the grace
    later, like the Collector's keepalive.server_parameters; a real client's export works throughout."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = tmp_path / "c.yaml"
    cfg.write_text("receiver:\n  otlp_grpc:\n    max_connection_age_seconds: 2\n"
                   "    max_connection_age_grace_seconds: 1\n    worker_processes: 0\n")
    sp = serve_factory("--config", str(cfg))
    port = int(sp.grpc_endpoint.rsplit(":", 1)[1])
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(50) as pool:
        closed = list(pool.map(lambda _: _stalled_grpc_stream(port, deadline), range(50)))
    assert all(t is not None for t in closed), closed
    assert max(closed) < 30, closed  # age 2 s + grace 1 s (+ the server's jitter of the age, ±10%)
    exporter = OTLPSpanExporter(endpoint=sp.grpc_endpoint, insecure=True)
    from opentelemetry.sdk.trace import TracerProvider
    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("p", attributes={"ml.model.name": "after", "ml.feature.x": 1.0})
    span.end()
    assert exporter.export([span]) == SpanExportResult.SUCCESS
    exporter.shutdown()


def test_bodies_being_received_count_against_the_inflight_bound(tmp_path: Path, serve_factory) -> None:
    """Issue 30 case 2: 40 connections each sending 60 MB minus one byte and stalling took RSS from 229 MB to
    2,992 MB: limits.max_inflight_bytes counted only bodies already received. A body now counts from its first
    byte (its Content-Length): past the bound a sender is answered 503 + Retry-After at once, without its body
    being read, and memory stays within the bound; a small export still goes through."""
    import socket

    cfg = tmp_path / "c.yaml"
    cfg.write_text("limits:\n  max_inflight_bytes: 16000000\nreceiver:\n  otlp_http:\n    max_message_bytes: 12000000\n"
                   "http:\n  body_timeout_seconds: 300\n")
    sp = serve_factory("--config", str(cfg))
    rss_before = int(next(line.split()[1] for line in Path(f"/proc/{sp.proc.pid}/status").read_text().splitlines()
                          if line.startswith("VmRSS:")))
    length = 12_000_000 - 1
    chunk = b"\x0a" * (1 << 20)
    senders = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", sp.http_port), timeout=10)
        s.sendall(f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                  f"Content-Length: {length}\r\n\r\n".encode())
        try:
            for _ in range(10):  # 10 of its 12 MB, then it stalls
                s.sendall(chunk)
        except OSError:  # refused and closed while sending
            pass
        senders.append(s)
    # 10 MB can sit in loopback socket buffers before the server has looked at the headers, so an answer may come
    # after the last byte was sent: wait until 18 refusals have arrived (or a minute, well inside the body timeout).
    answers: dict[socket.socket, bytes] = {}
    deadline = time.monotonic() + 60
    while sum(a.startswith(b"HTTP/1.1 503") for a in answers.values()) < 18 and time.monotonic() < deadline:
        waiting = [s for s in senders if s not in answers]
        for s in io_select.select(waiting, [], [], 0.5)[0]:
            try:
                answers[s] = s.recv(4096)
            except ConnectionResetError:
                answers[s] = b"reset"
    refused = 0
    held = [s for s in senders if s not in answers]
    for s, answer in answers.items():
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"Retry-After: " in answer
        refused += 1
        s.close()
    rss = int(next(line.split()[1] for line in Path(f"/proc/{sp.proc.pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:")))
    assert len(held) <= 2 and refused >= 18, (len(held), refused)
    assert (rss - rss_before) / 1024 < 16 + 64, (rss_before, rss)  # the bound plus a stated constant, MiB
    for s in held:
        s.close()
    time.sleep(0.5)
    body = build([[("ml.model.name", AnyValue(string_value="small")), ("ml.feature.x", AnyValue(double_value=1))]],
                 [])
    req = urllib.request.Request(f"http://127.0.0.1:{sp.http_port}/v1/traces", data=body,
                                 headers={"Content-Type": "application/x-protobuf"})
    assert urllib.request.urlopen(req, timeout=10).status == 200


@pytest.mark.parametrize("ahead_s", [1000, 3500])
def test_one_span_from_a_clock_ahead_does_not_make_the_models_other_rows_late(serve_factory, ahead_s: int) -> None:
    """Issue 49 A: one span stamped 1,000 s (or 3,500 s) ahead, inside limits.max_clock_skew_seconds, then 5,000
    spans stamped now: all 5,000 were counted late. The model's clock never passes the processor's own when the
    request came; the span ahead waits in its own window."""
    import time

    from tests.support import TRACES, export, predictions_request

    sp = serve_factory("--window", "60", "--horizon", "900", "--evaluation-interval", "0.5")
    now = time.time_ns()
    assert export(sp, TRACES, predictions_request("skewed", [{"ml.feature.x": 1.0}],
                                                  now + ahead_s * 10**9)).partial_success.rejected_spans == 0
    for _ in range(10):
        export(sp, TRACES, predictions_request("skewed", [{"ml.feature.x": float(i)} for i in range(500)],
                                               time.time_ns()))

    def counted() -> float | None:
        got = sum(s.value for s in select(sp.scrape(), "ml_predictions_total", ml_model_name="skewed"))
        return got if got == 5001 else None

    wait_for(counted, what="5,001 predictions counted")
    assert sum(s.value for s in select(sp.scrape(), "otel_ml_rows_late_total")) == 0

    def in_horizon() -> float | None:
        rows = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models", timeout=10)
                          .read())["models"]
        got = next((m["current_rows"] for m in rows if m["model"] == "skewed"), None)
        return got if got is not None and got >= 5000 else None

    wait_for(in_horizon, what="the 5,000 rows stamped now in the model's horizon")
