"""The compiled decoder against the reference (pure-Python) decoder: identical batches, or a decline.

Contract (otel_ml/decode/otlp.py): on every request the compiled decoder either returns exactly what the
reference returns, or declines (None) and the reference decides. These tests hold it to that on SDK
output, on structured garbage, on mutated bytes and on hand-made wire-format corner cases, and check that
it does not decline the traffic it exists for."""

from __future__ import annotations

import math
import os
import random
import struct
from collections import Counter
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_ml.decode import DecodeLimits, DecodeResult, otlp
from otel_ml.decode.otlp import decode_request_compiled, decode_request_python, installed_schema
from otel_ml.instrument import ModelMonitor
from tests.support import keys, scalars, spans, values

NOW = 1_800_000_000 * 10**9
FUZZ_EXAMPLES = int(os.environ.get("OTEL_ML_FUZZ_EXAMPLES", "150"))
"""Generated requests per differential fuzz: a quick pass in the unit run; the sanitizer run
(tests/e2e/test_decode_compiled.py) goes ten times deeper."""

LIMITS = DecodeLimits(max_batch_size=5, max_features_per_span=12, max_category_length=6, max_name_length=16,
                      max_clock_skew_seconds=60, max_id_length=8)


def test_compiled_decoder_is_built_and_matches_the_installed_schema() -> None:
    if otlp._otlp_columns is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the compiled decoder was not built (setup.py); CI must test it")
        pytest.skip("compiled decoder not built (no C compiler at install time)")
    assert otlp._otlp_columns.schema() == installed_schema()
    assert otlp.COMPILED or os.environ.get("OTEL_ML_DECODER") == "python"


def same(a: DecodeResult, b: DecodeResult) -> None:
    """Field-by-field equality of two decode results, dtypes and NaN positions included."""
    assert (a.spans_received, a.spans_accepted, a.spans_ignored) == (b.spans_received, b.spans_accepted,
                                                                     b.spans_ignored)
    assert a.rejected == b.rejected and a.examples == b.examples
    assert [x.key for x in a.batches] == [y.key for y in b.batches]
    for x, y in zip(a.batches, b.batches):
        assert x.n_rows == y.n_rows
        for field in ("row_time_ns", "row_weight", "span_end_ns", "span_duration_s", "span_error", "span_stream",
                      "span_seq", "span_rows", "span_ids"):
            u, v = getattr(x, field), getattr(y, field)
            assert u.dtype == v.dtype and np.array_equal(u, v, equal_nan=u.dtype.kind == "f"), field
        assert x.numeric.keys() == y.numeric.keys()
        for name in x.numeric:
            assert x.numeric[name].dtype == y.numeric[name].dtype == np.float64
            assert np.array_equal(x.numeric[name], y.numeric[name], equal_nan=True), name
        assert x.categorical.keys() == y.categorical.keys()
        for name in x.categorical:
            assert x.categorical[name].dtype == y.categorical[name].dtype, name
            assert x.categorical[name].tolist() == y.categorical[name].tolist(), name
        assert +x.invalid == +y.invalid
        assert x.embedding_dimension == y.embedding_dimension


def compare(data: bytes, limits: DecodeLimits = LIMITS) -> str:
    """'equal', 'declined' (the reference decoded it) or 'malformed' (both refused); asserts otherwise."""
    if otlp._otlp_columns is None:
        pytest.skip("compiled decoder not built")
    with mock.patch("time.time_ns", return_value=NOW):
        try:
            reference = decode_request_python(data, limits)
        except ValueError:
            assert decode_request_compiled(data, limits) is None, "accepted bytes the reference refuses"
            return "malformed"
        compiled = decode_request_compiled(data, limits)
    if compiled is None:
        return "declined"
    same(reference, compiled)
    return "equal"


def sdk_request(rows: int = 40) -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "churn-api"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monitor = ModelMonitor("churn", "3", tracer_provider=provider)
    rng = random.Random(7)
    for _i in range(rows):
        monitor.record({"age": rng.randint(18, 90), "income": rng.lognormvariate(10, 1), "plan": rng.choice("abc"),
                        "opted_in": rng.random() < 0.5, "note": "ü" * rng.randint(0, 9)},
                       prediction=rng.random(), score=rng.random())
    monitor.record_batch({"age": [30, 40, 50], "plan": ["a", "b", "zzzzzzzzzz"], "score": [0.5, float("inf"), 1]},
                         predictions=[0, 1, 1])
    with monitor.predict({"age": 33, "plan": "c"}) as p:
        p.set_prediction(1)
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def test_sdk_output_decodes_identically_and_is_never_declined() -> None:
    before = Counter(otlp.DECLINED)
    assert compare(sdk_request(), DecodeLimits()) == "equal"
    assert before == otlp.DECLINED


def test_bench_shaped_requests_decode_identically() -> None:
    from bench.loadgen import make_request

    for seed in range(3):
        assert compare(make_request(spans=64, seed=seed), DecodeLimits()) == "equal"

times = st.one_of(st.just(0), st.integers(0, 2**64 - 1), st.integers(NOW - 10**12, NOW + 2 * 60 * 10**9))


@st.composite
def batch_span(draw) -> list[tuple[str, AnyValue]]:
    """A batch span whose arrays mostly have the declared length, so the batch path gets exercised."""
    n = draw(st.integers(1, 5))
    attrs = [("ml.model.name", AnyValue(string_value=draw(st.sampled_from(["m", "n", "ü-model"])))),
             ("ml.batch.size", AnyValue(int_value=n))]
    # Keys may repeat, and ml.feature.prediction may stand beside ml.prediction: both decoders must reject those
    # spans alike (duplicate_attribute, reserved_feature_name), whatever rows the arrays fill.
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "prediction"]), max_size=4, unique=True))
    names += draw(st.lists(st.sampled_from(names or ["a"]), max_size=1))  # sometimes one key again
    keys = [f"ml.feature.{name}" for name in names]
    if draw(st.integers(0, 3)) == 0:  # the model output beside, or colliding with, a feature
        keys = ["ml.feature.a", "ml.prediction", *draw(st.lists(st.just("ml.feature.prediction"), max_size=1))]
    if draw(st.integers(0, 3)) == 0:  # per-class probabilities, sometimes repeated or colliding with a feature
        keys += draw(st.lists(st.sampled_from(["ml.prediction.probability.a", "ml.prediction.probability.b",
                                               "ml.prediction.probability.", "ml.feature.prediction.probability.a",
                                               "ml.prediction.probability"]),
                              max_size=3))
    if draw(st.integers(0, 3)) == 0:  # segment keys (ml.segment.<key>), sometimes colliding with a feature
        keys += draw(st.lists(st.sampled_from(["ml.segment.region", "ml.segment.tier", "ml.segment.",
                                               "ml.feature.segment.region"]), max_size=2))
    if draw(st.integers(0, 3)) == 0:  # attributions (ml.attribution.<feature>), sometimes colliding with a feature
        keys += draw(st.lists(st.sampled_from(["ml.attribution.a", "ml.attribution.b", "ml.attribution.",
                                               "ml.feature.attribution.a", "ml.feature.(attribution)"]), max_size=2))
    if draw(st.integers(0, 2)) == 0:  # ids and labels: whole ids (longer ones rejected), valid labels or a rejection
        keys += draw(st.lists(st.sampled_from(["ml.prediction.id", "ml.ground_truth"]), max_size=2, unique=True))
    if draw(st.integers(0, 3)) == 0:  # an embedding: n·d numbers (NaN: a missing vector), sometimes malformed
        # One dimension for every span: two for one model in one request are declined (the reference decides,
        # tests/unit/test_multivariate_state.py), and this test is about what the compiled path decodes.
        d = 2
        length = n * d if draw(st.integers(0, 4)) else draw(st.integers(0, 7))
        element = st.one_of(st.floats(-1e6, 1e6).map(lambda v: AnyValue(double_value=v)),
                            st.integers(-9, 9).map(lambda i: AnyValue(int_value=i)),
                            st.sampled_from([AnyValue(double_value=math.nan), AnyValue(double_value=math.inf),
                                             AnyValue(string_value="x"), AnyValue()]))
        arr = AnyValue()
        arr.array_value.values.extend(draw(st.lists(element, min_size=length, max_size=length)))
        attrs.append(("ml.embedding", arr if draw(st.integers(0, 5)) else AnyValue(double_value=1.0)))
        if draw(st.booleans()):
            attrs.append(("ml.embedding.dimension", AnyValue(int_value=draw(st.sampled_from([d, d + 1, 0])))))
    for key in keys:
        elems = draw(st.lists(scalars | st.just(AnyValue()), min_size=n, max_size=n))
        if draw(st.booleans()):  # one kind for the whole array, the common case (all ±inf included)
            kind = draw(st.sampled_from([lambda v: AnyValue(double_value=v), lambda v: AnyValue(int_value=int(v)),
                                         lambda v: AnyValue(string_value=str(v)),
                                         lambda v: AnyValue(double_value=math.copysign(math.inf, v))]))
            elems = [kind(draw(st.floats(-1e6, 1e6))) for _ in range(n)]
        arr = AnyValue()
        arr.array_value.values.extend(elems)
        attrs.append((key, arr))
    return attrs

span_attrs = st.one_of(spans, batch_span(),
                       st.lists(st.tuples(st.sampled_from(["ml.feature.a", "ml.feature.b", "ml.prediction",
                                                           "ml.prediction.id", "ml.ground_truth",
                                                           "ml.prediction.probability.x", "ml.segment.r",
                                                           "ml.attribution.a"]),
                                          scalars), max_size=5).map(
                           lambda kv: [("ml.model.name", AnyValue(string_value="m")), *kv]))

sequence_attrs = st.one_of(
    st.just([]),
    st.tuples(st.integers(0, 2**63 - 1), st.integers(-2**63, 2**63 - 1).filter(bool)).map(
        lambda p: [("ml.sequence", AnyValue(int_value=p[0])), ("ml.sequence.stream", AnyValue(int_value=p[1]))]),
    st.lists(st.tuples(st.sampled_from(["ml.sequence", "ml.sequence.stream"]),
                       st.one_of(st.integers(-3, 3).map(lambda i: AnyValue(int_value=i)),
                                 st.floats(0, 9).map(lambda f: AnyValue(double_value=f)))), max_size=2))


@st.composite
def requests(draw) -> bytes:
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 3))):
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(KeyValue(key=k, value=v)
                                      for k, v in draw(st.lists(st.tuples(keys, values), max_size=3)))
        for _ in range(draw(st.integers(1, 2))):
            ss = rs.scope_spans.add()
            ss.scope.name = draw(st.text(max_size=5))
            for attrs in draw(st.lists(span_attrs, max_size=5)):
                span = ss.spans.add(start_time_unix_nano=draw(times), end_time_unix_nano=draw(times),
                                    name=draw(st.text(max_size=5)))
                # enum values outside the defined ones are legal on the wire (proto3 enums are open)
                span.status.code = draw(st.sampled_from([0, 1, 2, 258, -1, -2**31]))
                span.attributes.extend(KeyValue(key=k, value=v) for k, v in attrs + draw(sequence_attrs))
    return req.SerializeToString()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_fuzzed_requests_decode_identically_or_are_declined(data: bytes) -> None:
    compare(data)


def test_most_fuzzed_requests_are_decoded_not_declined() -> None:
    """The fuzz above must exercise the compiled path, not only its declines. Derandomized: the share is a
    property of the strategy, and a random draw of ~90 examples fell below 90% about one run in twelve (declines
    come in bursts when hypothesis explores one shape), which failed CI on a correct build."""
    outcomes: Counter[str] = Counter()

    @settings(max_examples=FUZZ_EXAMPLES // 4 + 50, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(requests())
    def run(data: bytes) -> None:
        outcomes[compare(data)] += 1

    run()
    assert outcomes["equal"] >= 0.9 * sum(outcomes.values()), outcomes


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.sampled_from("sid")),
                            min_size=1, max_size=4))


def test_mutated_bytes_decode_identically_declined_or_refused_by_both(data: bytes, edits) -> None:
    buf = bytearray(data)
    for pos, byte, op in edits:
        pos = pos % (len(buf) + 1)
        if op == "s" and pos < len(buf):
            buf[pos] = byte
        elif op == "i":
            buf.insert(pos, byte)
        elif op == "d" and pos < len(buf):
            del buf[pos]
    compare(bytes(buf))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_refused_by_both_or_decoded_identically(data: bytes) -> None:
    compare(data)


def tag(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def ld(field: int, payload: bytes) -> bytes:
    return tag(field, 2) + varint(len(payload)) + payload


def kv(key: str, value: bytes) -> bytes:
    return ld(1, key.encode()) + ld(2, value)


def request_of(span: bytes, resource: bytes = b"") -> bytes:
    rs = (ld(1, resource) if resource else b"") + ld(2, ld(2, span))
    return ld(1, rs)

MODEL = ld(9, kv("ml.model.name", ld(1, b"m")))

END = tag(8, 1) + struct.pack("<Q", NOW)

CORNER_CASES = [
    ("plain", MODEL + END + ld(9, kv("ml.feature.x", tag(4, 1) + struct.pack("<d", 2.5))), "equal"),
    ("end time given twice", MODEL + END + END, "declined"),
    ("two oneof members", MODEL + END + ld(9, kv("ml.feature.x", ld(1, b"a") + tag(3, 0) + varint(4))), "declined"),
    ("unknown field", MODEL + END + tag(99, 0) + varint(1), "declined"),
    ("wire type mismatch", MODEL + END + tag(6, 1) + b"\0" * 8, "declined"),
    ("invalid utf-8 in span name", MODEL + END + ld(5, b"\xff\xfe"), "malformed"),
    ("surrogate in a feature name", MODEL + END + ld(9, ld(1, b"ml.feature.\xed\xa0\x80")), "malformed"),
    ("truncated", (MODEL + END)[:-3], "malformed"),
    ("a group (wire type 3)", MODEL + END + tag(20, 3) + tag(20, 4), "declined"),
    ("integer version", MODEL + END + ld(9, kv("ml.model.version", tag(3, 0) + varint(7))), "equal"),
    ("float version", MODEL + END + ld(9, kv("ml.model.version", tag(4, 1) + struct.pack("<d", 2.0))), "declined"),
    ("negative status code", MODEL + END + ld(15, tag(3, 0) + varint(2**64 - 1)), "equal"),
    ("status code 258", MODEL + END + ld(15, tag(3, 0) + varint(258)), "equal"),
    ("status code over 32 bits", MODEL + END + ld(15, tag(3, 0) + varint(2**32 + 2)), "equal"),
    ("batch of ±inf only", MODEL + END + ld(9, kv("ml.batch.size", tag(3, 0) + varint(2))) +
     ld(9, kv("ml.feature.x", ld(5, ld(1, tag(4, 1) + struct.pack("<d", math.inf)) * 2))), "equal"),
    ("rejected span (array without batch size)", MODEL + END + ld(9, kv("ml.feature.x", ld(5, b""))), "equal"),
    ("feature named twice (rejected)", MODEL + END + ld(9, kv("ml.feature.x", tag(3, 0) + varint(1))) * 2,
     "equal"),
    ("a text feature twice, the later one shorter", MODEL + END + ld(9, kv("ml.feature.c", ld(1, b"long"))) +
     ld(9, kv("ml.feature.c", ld(1, b"s"))), "equal"),
    ("feature named twice, two kinds", MODEL + END + ld(9, kv("ml.feature.x", tag(3, 0) + varint(1))) +
     ld(9, kv("ml.feature.x", ld(1, b"a"))) + ld(9, kv("ml.feature.x", tag(3, 0) + varint(2))), "equal"),
    ("key after value", MODEL + END + ld(9, ld(2, tag(3, 0) + varint(5)) + ld(1, b"ml.feature.x")), "equal"),
    ("empty value", MODEL + END + ld(9, kv("ml.feature.x", b"")), "equal"),
    # scalar attributes in the SDKs' layout are read by a straight path (scalar_key_value); its edges:
    ("negative integer (10-byte varint)", MODEL + END + ld(9, kv("ml.feature.x", tag(3, 0) + varint(2**64 - 5))),
     "equal"),
    ("integer varint over 64 bits", MODEL + END + ld(9, kv("ml.feature.x", tag(3, 0) + b"\xff" * 10 + b"\x01")),
     "malformed"),
    ("bool then a second member", MODEL + END + ld(9, kv("ml.feature.x", tag(2, 0) + varint(1) + tag(3, 0) +
                                                             varint(1))), "declined"),
    ("bool 7", MODEL + END + ld(9, kv("ml.feature.b", tag(2, 0) + varint(7))), "equal"),
    ("text of 127 bytes", MODEL + END + ld(9, kv("ml.feature.c", ld(1, b"a" * 127))), "equal"),
    ("text of 128 bytes", MODEL + END + ld(9, kv("ml.feature.c", ld(1, b"a" * 128))), "equal"),
    ("invalid utf-8 in a text value", MODEL + END + ld(9, kv("ml.feature.c", ld(1, b"ab\xc3"))), "malformed"),
    ("invalid utf-8 in a scalar's key", MODEL + END + ld(9, ld(1, b"ml.feature.\xc3") + ld(2, tag(4, 1) +
                                                                                          b"\0" * 8)), "malformed"),
    ("double cut short", MODEL + END + ld(9, kv("ml.feature.x", tag(4, 1) + b"\0" * 7)), "malformed"),
    ("double then a byte more", MODEL + END + ld(9, kv("ml.feature.x", tag(4, 1) + b"\0" * 8 + b"\0")), "malformed"),
]


@pytest.mark.parametrize("case, span, expected", CORNER_CASES)
def test_wire_format_corner_cases(case: str, span: bytes, expected: str) -> None:
    assert compare(request_of(span), DecodeLimits()) == expected, case

REPEATED_BATCH_COLUMN = bytes.fromhex(
    "0a88011285011282014a140a0d6d6c2e6d6f64656c2e6e616d6512030a016d410000b49376e2fa184a130a0d6d6c2e62617463682e"
    "73697a65120218024a280a0c6d6c2e666561747572652e7812182a160a0921000000000000f03f0a092100000000000000404a220a"
    "0c6d6c2e666561747572652e7812122a100a092100000000000008400a030a0161")


def rejected_by_both(data: bytes) -> DecodeResult:
    """Both decoders agree on ``data`` and accept no span of it; returns the reference's result."""
    assert compare(data, DecodeLimits()) == "equal"
    with mock.patch("time.time_ns", return_value=NOW):
        result = decode_request_python(data, DecodeLimits())
    assert result.spans_accepted == 0 and result.batches == []
    return result


def test_a_batch_span_naming_a_column_twice_is_rejected_by_both_decoders() -> None:
    result = rejected_by_both(REPEATED_BATCH_COLUMN)
    assert result.rejected == Counter(duplicate_attribute=1)
    assert result.examples["duplicate_attribute"] == "column 'x' is given twice in one span"


def test_probabilities_outside_zero_to_one_are_rejected_by_both_decoders() -> None:
    """Issue 49 E: class probabilities of 5.0 and -3.0 were taken (log loss 6.27 for an accuracy-1.0 model)."""
    for key in ("ml.prediction.probability", "ml.prediction.probability.gold"):
        for value in (tag(4, 1) + struct.pack("<d", 5.0), tag(4, 1) + struct.pack("<d", -3.0), tag(3, 0) + varint(2)):
            result = rejected_by_both(request_of(MODEL + END + ld(9, kv(key, value))))
            assert result.rejected == Counter(invalid_probability=1), result.rejected
            assert "must be within [0, 1]" in result.examples["invalid_probability"]
        for value in (tag(4, 1) + struct.pack("<d", 0.25), tag(4, 1) + struct.pack("<d", math.nan),
                      tag(3, 0) + varint(1)):
            assert compare(request_of(MODEL + END + ld(9, kv(key, value))), DecodeLimits()) == "equal"


def test_a_feature_named_prediction_is_rejected_not_merged_with_the_model_output() -> None:
    for feature in ("prediction", "prediction.score", "prediction.probability.cat", "(multivariate)",
                    "attribution.age", "(attribution)", "gen_ai.call.id"):
        alone = MODEL + END + ld(9, kv(f"ml.feature.{feature}", tag(3, 0) + varint(1)))
        beside_output = alone + ld(9, kv("ml." + feature, tag(3, 0) + varint(0)))
        for span in (alone, beside_output):
            result = rejected_by_both(request_of(span))
            assert result.rejected == Counter(reserved_feature_name=1), feature
            assert f"'ml.feature.{feature}' would merge with the model output" in result.examples[
                "reserved_feature_name"]


def test_the_model_output_given_twice_is_rejected() -> None:
    span = MODEL + END + ld(9, kv("ml.prediction", tag(3, 0) + varint(1))) * 2
    assert rejected_by_both(request_of(span)).rejected == Counter(duplicate_attribute=1)


@pytest.mark.parametrize("width", [2, 8, 9, 40, 300])
def test_a_repeated_column_is_found_at_any_span_width(width: int) -> None:
    """Narrow spans are checked pair by pair, wide ones through a hash table: both paths, first and last key."""
    names = [f"f{i}" for i in range(width)]
    for repeated in ([names[0], names[-1]], [names[-1], names[-2]]):
        span = MODEL + END + b"".join(ld(9, kv(f"ml.feature.{n}", tag(3, 0) + varint(i)))
                                      for i, n in enumerate(names + repeated[:1]))
        limits = DecodeLimits(max_features_per_span=1000)
        assert compare(request_of(span), limits) == "equal"
        with mock.patch("time.time_ns", return_value=NOW):
            assert decode_request_python(request_of(span), limits).rejected == Counter(duplicate_attribute=1)
    distinct = MODEL + END + b"".join(ld(9, kv(f"ml.feature.{n}", tag(3, 0) + varint(1))) for n in names)
    assert compare(request_of(distinct), DecodeLimits(max_features_per_span=1000)) == "equal"
    with mock.patch("time.time_ns", return_value=NOW):
        assert decode_request_python(request_of(distinct)).spans_accepted == 1


def test_spans_naming_the_last_spans_columns_or_others_decode_identically() -> None:
    """The compiled decoder reuses the last written span's columns when a span names the same ones in the same order
    (no duplicate check, no lookup): spans that share, reorder, extend, repeat or move a model's names must still
    land in their own columns, and a duplicate after a matching span must still be rejected."""

    def span(model: str, names: list[str], value: int) -> bytes:
        return ld(2, ld(9, kv("ml.model.name", ld(1, model.encode()))) + END +
                  b"".join(ld(9, kv(f"ml.feature.{n}", tag(3, 0) + varint(value + i))) for i, n in enumerate(names)))

    layouts = [("m", ["a", "b", "c"]), ("m", ["a", "b", "c"]), ("n", ["a", "b", "c"]), ("m", ["a", "b", "c"]),
               ("m", ["c", "b", "a"]), ("m", ["a", "b"]), ("m", ["a", "b", "c", "d"]), ("m", ["a", "b", "a"]),
               ("m", ["a", "b", "c"]), ("m", ["a", "bb", "c"]), ("m", ["a", "b", "cc"]), ("n", ["a", "b", "cc"]),
               ("m", ["a", "b", "a"]), ("m", ["a", "b", "a"]), ("m", ["a", "b", "c"])]
    data = ld(1, ld(2, b"".join(span(m, names, 10 * k) for k, (m, names) in enumerate(layouts))))
    assert compare(data, DecodeLimits()) == "equal"
    with mock.patch("time.time_ns", return_value=NOW):
        result = decode_request_python(data, DecodeLimits())
    assert result.rejected == Counter(duplicate_attribute=3)
    m = next(b for b in result.batches if b.key[0] == "m")
    assert m.numeric["c"].tolist()[:4] == [2, 12, 32, 40]  # a name written in its own column in every layout


@pytest.mark.parametrize("name", ["abcdefgh", "abcdefghü", "abcdefghijklmnopü", "üabcdefghijklmnop", "abcdefg€xyz1234",
                                  "abcdefghijklmno😀"])
def test_names_decode_identically_whichever_word_holds_the_first_non_ascii_byte(name: str) -> None:
    """UTF-8 is checked eight ASCII bytes at a time until a byte with the high bit: the non-ASCII character may
    start in any of the first words or after them."""
    span = MODEL + END + ld(9, kv(f"ml.feature.{name}", ld(1, name.encode())))
    assert compare(request_of(span), DecodeLimits()) == "equal"
    bad = f"ml.feature.{name}".encode()[:-1] + b"\xff"  # invalid at the end, after whole ASCII words
    assert compare(request_of(MODEL + END + ld(9, ld(1, bad) + ld(2, tag(3, 0) + varint(1)))), DecodeLimits()) == \
        "malformed"


def test_resource_after_its_spans_still_names_the_model() -> None:
    span = END + ld(9, kv("ml.feature.x", tag(3, 0) + varint(3)))
    rs = ld(2, ld(2, span)) + ld(1, ld(1, kv("ml.model.name", ld(1, b"late"))))
    assert compare(ld(1, rs), DecodeLimits()) == "equal"


def test_nesting_deeper_than_the_compiled_limit_is_declined_not_refused() -> None:
    value = tag(3, 0) + varint(1)
    for _ in range(40):
        value = ld(5, ld(1, value))  # AnyValue{array_value{values: [value]}}
    span = MODEL + END + ld(9, kv("other.attribute", value))
    assert compare(request_of(span), DecodeLimits()) == "declined"


def test_decode_request_runs_the_compiled_path() -> None:
    from bench.loadgen import make_request

    if not otlp.COMPILED:
        pytest.skip("compiled decoder not in use")
    before = Counter(otlp.DECLINED)
    with mock.patch.object(otlp, "decode_request_python", side_effect=AssertionError("reference ran")):
        assert otlp.decode_request(make_request(spans=64)).spans_accepted == 64
    assert before == otlp.DECLINED


def test_many_models_features_and_rows_grow_every_table() -> None:
    """Past the initial sizes of the compiled decoder's tables and arrays: 100 models (groups), 80 features per
    model (columns), batch spans of 5,000 rows, and names that collide in a small hash table."""
    rng = random.Random(3)
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    for i in range(300):
        span = spans.add(start_time_unix_nano=NOW - 10**9, end_time_unix_nano=NOW - rng.randint(0, 10**9))
        span.attributes.add(key="ml.model.name").value.string_value = f"model-{i % 100}"
        span.attributes.add(key="ml.model.version").value.int_value = i % 3
        for f in rng.sample(range(120), 80):
            value = span.attributes.add(key=f"ml.feature.f{f}").value
            if f % 3:
                value.double_value = rng.gauss(0, 1)
            else:
                value.string_value = rng.choice(["a", "bb", "ccc", "ü" * 9])
    batch = spans.add(end_time_unix_nano=NOW)
    batch.attributes.add(key="ml.model.name").value.string_value = "model-0"
    batch.attributes.add(key="ml.batch.size").value.int_value = 5000
    for name in ("x", "y"):
        arr = batch.attributes.add(key=f"ml.feature.{name}").value.array_value
        for _ in range(5000):
            arr.values.add().double_value = rng.random()
    limits = DecodeLimits(max_features_per_span=200, max_batch_size=10_000)
    assert compare(req.SerializeToString(), limits) == "equal"
