"""Hostile and broken input: fuzzed decoder and receivers, limits, oversized requests, overload."""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_ml.decode import DecodeLimits, decode_request
from otel_ml.profile import CategoricalProfile
from tests.conftest import select, wait_for
from tests.test_durability import make_batches

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

scalars = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), st.text(max_size=40)),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-2**63, 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=20)),
)


def _array(values: list[AnyValue]) -> AnyValue:
    out = AnyValue()
    out.array_value.values.extend(values)
    return out


values = st.one_of(scalars, st.lists(scalars, max_size=6).map(_array),
                   st.lists(st.lists(scalars, max_size=3).map(_array), max_size=3).map(_array))
keys = st.one_of(st.sampled_from(["ml.model.name", "ml.model.version", "ml.batch.size", "ml.sampling.ratio",
                                  "ml.prediction", "ml.prediction.score", "ml.feature.a", "ml.feature.b",
                                  "ml.feature.", "http.route", "ml.prediction.id", "ml.ground_truth"]),
                 st.text(max_size=12).map(lambda s: "ml.feature." + s))
spans = st.lists(st.tuples(keys, values), max_size=8)


def build(span_attrs: list[list[tuple[str, AnyValue]]], resource: list[tuple[str, AnyValue]]) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(KeyValue(key=k, value=v) for k, v in resource)
    ss = rs.scope_spans.add()
    for attrs in span_attrs:
        span = ss.spans.add(end_time_unix_nano=time.time_ns())
        span.attributes.extend(KeyValue(key=k, value=v) for k, v in attrs)
    return req.SerializeToString()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(spans, max_size=6), st.lists(st.tuples(keys, values), max_size=3))
def test_decoder_never_crashes_on_structured_garbage(span_attrs, resource) -> None:
    result = decode_request(build(span_attrs, resource), DecodeLimits(max_batch_size=5))
    assert result.spans_received == len(span_attrs)
    assert result.spans_accepted + result.spans_ignored + result.spans_rejected == result.spans_received
    for b in result.batches:
        assert all(len(col) == b.n_rows for col in [*b.numeric.values(), *b.categorical.values()])
        assert not any(np.isinf(col).any() for col in b.numeric.values())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_raises_only_value_error_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        decode_request(data)


def test_a_million_distinct_categories_stay_bounded() -> None:
    p = CategoricalProfile()
    for start in range(0, 1_000_000, 100_000):
        p.update(np.array([f"user-{i}" for i in range(start, start + 100_000)]))
    assert p.count == 1_000_000
    assert len(p.sketch.serialize()) < 64 * 1024  # lg_max_map_size 10: at most 1024 counters
    assert not p.is_exact()


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


def test_overloaded_answer_carries_retry_info_in_both_trailers() -> None:
    from google.rpc import error_details_pb2, status_pb2

    from otel_ml.receiver.common import Overloaded
    from otel_ml.receiver.config import OtlpGrpcReceiverConfig
    from otel_ml.receiver.otlp_grpc import OtlpTraceReceiver

    def busy(_data: bytes, _signal: str = "traces"):
        raise Overloaded("busy", 0.25)

    receiver = OtlpTraceReceiver(OtlpGrpcReceiverConfig(endpoint="127.0.0.1:0"), busy)
    receiver.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{receiver.port}") as ch, pytest.raises(grpc.RpcError) as err:
            ch.unary_unary(EXPORT)(b"", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        trailers = dict(err.value.trailing_metadata())
        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])  # what Go clients read
        info = error_details_pb2.RetryInfo()
        assert status.code == 14 and status.details[0].Unpack(info)
        assert info.retry_delay.ToNanoseconds() == 250_000_000
        python_sdk = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
        assert python_sdk.retry_delay.ToNanoseconds() == 250_000_000
    finally:
        receiver.shutdown()


def test_overloaded_http_answer_is_503_with_retry_after_and_retry_info() -> None:
    from google.rpc import error_details_pb2, status_pb2

    from otel_ml.receiver.common import Overloaded
    from otel_ml.receiver.config import OtlpHttpReceiverConfig
    from otel_ml.receiver.otlp_http import OtlpHttpTraceReceiver

    def busy(_data: bytes, _signal: str = "traces"):
        raise Overloaded("busy", 2.0)

    receiver = OtlpHttpTraceReceiver(OtlpHttpReceiverConfig(endpoint="127.0.0.1:0"), busy)
    receiver.start()
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{receiver.port}/v1/traces", data=b"",
                                     headers={"Content-Type": "application/x-protobuf"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 503 and err.value.headers["Retry-After"] == "2"
        status = status_pb2.Status.FromString(err.value.read())
        info = error_details_pb2.RetryInfo()
        assert status.code == 14 and status.details[0].Unpack(info)
        assert info.retry_delay.ToNanoseconds() == 2_000_000_000
    finally:
        receiver.shutdown()


def test_every_rejection_reason_is_declared_and_exported_from_the_start(serve_factory) -> None:
    """semconv.REJECTION_REASONS lists every reason the decoder and the service give (each is exported at 0 from
    the start, so alert rules on rate() see the first rejection)."""
    import re
    from pathlib import Path

    from otel_ml import semconv

    root = Path(__file__).resolve().parents[1] / "otel_ml"
    text = "".join((root / f).read_text() for f in ("decode/otlp.py", "decode/outcomes.py", "core/live.py"))
    used = set(re.findall(r'(?:_Rejected|reject)\(\s*"([a-z_]+)"', text)) | set(
        re.findall(r'rejected\["([a-z_]+)"\]', text)) | set(
        re.findall(r'return "([a-z_]+)", ', (root / "decode/limits.py").read_text()))  # id_problem, truth_problem
    assert used == set(semconv.REJECTION_REASONS), used ^ set(semconv.REJECTION_REASONS)
    sp = serve_factory()
    exported = {s.labels["reason"]: s.value for s in select(sp.scrape(), "otel_ml_spans_rejected_total")}
    assert exported == dict.fromkeys(semconv.REJECTION_REASONS, 0.0)
    for name in ("otel_ml_spans_received_total", "otel_ml_requests_refused_total", "otel_ml_models_released_total"):
        assert select(sp.scrape(), name), name
