"""Hostile and broken input, in process: the decoder fuzzed, a million distinct categories bounded."""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_ml.decode import DecodeLimits, decode_request
from otel_ml.profile import CategoricalProfile
from tests.support import build, keys, spans, values

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


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


def test_overloaded_answer_carries_retry_info_in_both_trailers() -> None:
    from google.rpc import error_details_pb2, status_pb2

    from otel_ml.receiver.common import Overloaded
    from otel_ml.receiver.config import OtlpGrpcReceiverConfig
    from otel_ml.receiver.otlp_grpc import OtlpTraceReceiver

    def busy(_data: bytes, _signal: str = "traces", _admitted: bool = False):
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

    def busy(_data: bytes, _signal: str = "traces", _admitted: bool = False):
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
