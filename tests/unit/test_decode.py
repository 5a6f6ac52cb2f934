"""Decoding OTLP trace requests into columns: every attribute type, arrays, missing values, rejections."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otel_ml.decode import DecodeLimits, decode_request
from tests.support import T0, any_value, request


def test_every_scalar_type_and_missing_values() -> None:
    req = request(
        {"ml.model.name": "m", "ml.feature.i": 3, "ml.feature.d": 2.5, "ml.feature.s": "x", "ml.feature.b": True,
         "ml.prediction": "yes", "ml.prediction.score": 0.9},
        {"ml.model.name": "m", "ml.feature.i": 4, "ml.feature.d": math.nan, "ml.feature.s": "",
         "ml.feature.b": False},
        {"ml.model.name": "m"},  # every feature absent
    )
    result = decode_request(req.SerializeToString())
    assert (result.spans_received, result.spans_accepted, result.spans_rejected) == (3, 3, 0)
    [b] = result.batches
    assert (b.model, b.version, b.n_rows) == ("m", "", 3)
    np.testing.assert_array_equal(b.numeric["i"], [3.0, 4.0, np.nan])
    np.testing.assert_array_equal(b.numeric["d"], [2.5, np.nan, np.nan])
    assert b.categorical["s"].tolist() == ["x", "", ""]
    assert b.categorical["b"].tolist() == ["true", "false", ""]
    assert b.categorical["prediction"].tolist() == ["yes", "", ""]
    np.testing.assert_array_equal(b.numeric["prediction.score"], [0.9, np.nan, np.nan])
    np.testing.assert_allclose(b.span_duration_s, [0.002] * 3)
    assert b.row_time_ns.tolist() == [T0 + 2_000_000, T0 + 3_000_000, T0 + 4_000_000]


def test_batch_spans_arrays_and_sampling_weight() -> None:
    req = request(
        {"ml.model.name": "m", "ml.model.version": "7", "ml.batch.size": 3, "ml.sampling.ratio": 0.25,
         "ml.feature.x": [1.0, math.nan, 3.0], "ml.feature.n": [1, 2, 3], "ml.feature.c": ["a", "", "b"],
         "ml.prediction": [True, False, True]},
        {"ml.model.name": "m", "ml.model.version": "7", "ml.feature.x": 9.0},
    )
    [b] = decode_request(req).batches
    assert (b.version, b.n_rows) == ("7", 4)
    np.testing.assert_array_equal(b.numeric["x"], [1.0, np.nan, 3.0, 9.0])
    np.testing.assert_array_equal(b.numeric["n"], [1.0, 2.0, 3.0, np.nan])
    assert b.categorical["c"].tolist() == ["a", "", "b", ""]
    assert b.categorical["prediction"].tolist() == ["true", "false", "true", ""]
    assert b.row_weight.tolist() == [4.0, 4.0, 4.0, 1.0]
    assert len(b.span_end_ns) == 2


def test_mixed_types_go_to_both_columns_and_unusable_values_are_counted() -> None:
    req = request(
        {"ml.model.name": "m", "ml.feature.f": 1.5},
        {"ml.model.name": "m", "ml.feature.f": "oops"},
        {"ml.model.name": "m", "ml.feature.f": b"\x00", "ml.feature.g": math.inf},
        {"ml.model.name": "m", "ml.batch.size": 3, "ml.feature.f": [1, "a", 2.0]},
    )
    [b] = decode_request(req).batches
    np.testing.assert_array_equal(b.numeric["f"], [1.5, np.nan, np.nan, 1.0, np.nan, 2.0])
    assert b.categorical["f"].tolist() == ["", "oops", "", "", "a", ""]
    assert b.invalid == {"f": 1, "g": 1}


def test_model_from_resource_and_groups_per_model_version() -> None:
    req = request({"ml.feature.x": 1}, {"ml.feature.x": 2, "ml.model.version": "2"},
                  {"ml.model.name": "other", "ml.feature.x": 3}, resource={"ml.model.name": "res"})
    batches = {b.key: b for b in decode_request(req).batches}
    assert set(batches) == {("res", ""), ("res", "2"), ("other", "")}
    assert batches[("other", "")].numeric["x"].tolist() == [3.0]


def test_non_ml_spans_are_ignored_not_rejected() -> None:
    result = decode_request(request({"http.route": "/x"}, {"ml.model.name": "m", "ml.feature.x": 1}))
    assert (result.spans_ignored, result.spans_accepted, result.spans_rejected) == (1, 1, 0)


@pytest.mark.parametrize("as_bytes", [True, False], ids=["compiled", "reference"])
def test_ml_columns_without_a_model_are_rejected_with_a_reason(as_bytes: bool) -> None:
    """Issue 31 case 1: an SDK attribute limit evicts ml.model.name first; such a span was counted as ordinary
    traffic and its model vanished without a word."""
    req = request({"ml.feature.age": 1, "ml.prediction": 0.5}, {"http.route": "/x", "ml.sampling.ratio": 0.5})
    result = decode_request(req.SerializeToString() if as_bytes else req)
    assert (result.spans_ignored, result.spans_rejected) == (1, 1)
    assert result.message().startswith("model_name_missing: 1 span(s), e.g. 2 ml.* column(s) (e.g. 'age') but no "
                                       "ml.model.name"), result.message()
    assert "OTEL_ATTRIBUTE_COUNT_LIMIT" in result.message()


@pytest.mark.parametrize("attrs,reason", [
    ({"ml.model.name": 5}, "invalid_model_name"),
    ({"ml.model.name": ""}, "invalid_model_name"),
    ({"ml.model.name": "m", "ml.model.version": [1]}, "invalid_model_version"),
    ({"ml.model.name": "m", "ml.batch.size": 0, "ml.feature.x": []}, "invalid_batch_size"),
    ({"ml.model.name": "m", "ml.batch.size": "3"}, "invalid_batch_size"),
    ({"ml.model.name": "m", "ml.batch.size": 2, "ml.feature.x": [1.0]}, "batch_length_mismatch"),
    ({"ml.model.name": "m", "ml.batch.size": 2, "ml.feature.x": 1.0}, "batch_value_not_array"),
    ({"ml.model.name": "m", "ml.feature.x": [1.0, 2.0]}, "array_without_batch_size"),
    ({"ml.model.name": "m", "ml.sampling.ratio": 0.0}, "invalid_sampling_ratio"),
    ({"ml.model.name": "m", "ml.sampling.ratio": 1.5}, "invalid_sampling_ratio"),
])


def test_unusable_ml_spans_are_rejected_with_a_reason(attrs: dict[str, object], reason: str) -> None:
    result = decode_request(request(attrs, {"ml.model.name": "m", "ml.feature.x": 1.0}))
    assert result.rejected == {reason: 1}
    assert result.spans_accepted == 1
    assert reason in result.message()
    # The rejected span left nothing behind.
    [b] = result.batches
    assert b.n_rows == 1


def test_limits() -> None:
    limits = DecodeLimits(max_batch_size=10, max_features_per_span=3, max_category_length=4)
    attrs = {"ml.model.name": "m", **{f"ml.feature.f{i}": i for i in range(4)}}
    assert decode_request(request(attrs), limits).rejected == {"too_many_features": 1}
    big = {"ml.model.name": "m", "ml.batch.size": 11, "ml.feature.x": [1] * 11}
    assert decode_request(request(big), limits).rejected == {"invalid_batch_size": 1}
    [b] = decode_request(request({"ml.model.name": "m", "ml.feature.c": "abcdefgh"}), limits).batches
    assert b.categorical["c"].tolist() == ["abcd"]


def test_malformed_bytes_raise_value_error() -> None:
    with pytest.raises(ValueError):
        decode_request(b"\xff\xff\xff\xff")


def test_status_error_is_recorded() -> None:
    [b] = decode_request(request({"ml.model.name": "m"}, {"ml.model.name": "m"}, status_codes=[2, 1])).batches
    assert b.span_error.tolist() == [True, False]


def test_split_by_window() -> None:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for t in (0.5, 1.5, 1.7, 3.2):
        span = ss.spans.add(end_time_unix_nano=int(T0 + t * 1e9))
        span.attributes.append(KeyValue(key="ml.model.name", value=any_value("m")))
        span.attributes.append(KeyValue(key="ml.feature.x", value=any_value(t)))
    [b] = decode_request(req).batches
    parts = b.split_by_window(10**9)
    assert sorted((k - T0) // 10**9 for k in parts) == [0, 1, 3]
    assert [parts[k].numeric["x"].tolist() for k in sorted(parts)] == [[0.5], [1.5, 1.7], [3.2]]


def _label_span_request(value: AnyValue, pid: AnyValue | None = None, t_ns: int | None = None) -> bytes:
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add(end_time_unix_nano=t_ns or time.time_ns())
    span.attributes.add(key="ml.model.name").value.string_value = "m"
    span.attributes.add(key="ml.prediction.id").value.CopyFrom(pid or AnyValue(string_value="r1"))
    span.attributes.add(key="ml.ground_truth").value.CopyFrom(value)
    return req.SerializeToString()


def _label_log_request(value: AnyValue, pid: AnyValue | None = None, t_ns: int | None = None) -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    req = ExportLogsServiceRequest()
    rec = req.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=t_ns or time.time_ns())
    rec.attributes.add(key="ml.model.name").value.string_value = "m"
    rec.attributes.add(key="ml.prediction.id").value.CopyFrom(pid or AnyValue(string_value="r1"))
    rec.attributes.add(key="ml.ground_truth").value.CopyFrom(value)
    return req.SerializeToString()


def _kvlist() -> AnyValue:
    v = AnyValue()
    v.kvlist_value.values.add(key="a").value.int_value = 1
    return v

BAD_LABELS = [AnyValue(double_value=math.nan), AnyValue(double_value=math.inf), AnyValue(double_value=-1.7e308),
              AnyValue(bytes_value=b"x"), _kvlist(), AnyValue(string_value=""), AnyValue()]

BAD_IDS = [(AnyValue(double_value=1.5), "invalid_prediction_id"), (AnyValue(bool_value=True), "invalid_prediction_id"),
           (AnyValue(int_value=2**60), "invalid_prediction_id"),
           (AnyValue(string_value="k" * 257), "prediction_id_too_long")]


@pytest.mark.parametrize("value", BAD_LABELS, ids=lambda v: str(v).strip() or "empty")
def test_an_unusable_label_is_refused_with_its_reason_in_spans_and_in_log_records(value: AnyValue) -> None:
    from otel_ml.decode.outcomes import decode_logs_request

    for result in (decode_request(_label_span_request(value)), decode_logs_request(_label_log_request(value))):
        assert result.rejected == {"invalid_ground_truth": 1}, result.rejected
        assert not result.batches and not result.labels and result.spans_accepted == 0  # never a prediction


@pytest.mark.parametrize(("pid", "reason"), BAD_IDS, ids=lambda v: str(v)[:30])
def test_an_unusable_id_is_refused_in_spans_and_in_log_records(pid: AnyValue, reason: str) -> None:
    from otel_ml.decode.outcomes import decode_logs_request

    for result in (decode_request(_label_span_request(AnyValue(int_value=1), pid)),
                   decode_logs_request(_label_log_request(AnyValue(int_value=1), pid))):
        assert result.rejected == {reason: 1}, result.rejected


def test_ids_are_compared_whole_and_labels_from_the_future_are_refused_on_both_signals() -> None:
    from otel_ml.decode.outcomes import decode_logs_request

    ids = [decode_request(_label_span_request(AnyValue(int_value=1), AnyValue(string_value=s))).labels[0]
           .prediction_id[0] for s in ("k" * 255, "k" * 256)]
    assert ids[0] != ids[1]
    assert decode_logs_request(_label_log_request(AnyValue(int_value=1), AnyValue(string_value="k" * 256))) \
        .labels[0].prediction_id[0] == ids[1]
    future = time.time_ns() + 2 * 3600 * 10**9
    assert decode_logs_request(_label_log_request(AnyValue(int_value=1), t_ns=future)).rejected == \
        {"timestamp_in_future": 1}
    assert decode_request(_label_span_request(AnyValue(int_value=1), t_ns=future)).rejected == \
        {"timestamp_in_future": 1}
