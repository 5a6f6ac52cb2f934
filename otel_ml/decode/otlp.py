"""ExportTraceServiceRequest → ColumnarBatch per (model, version).

``decode_request`` is the one decoder interface. It runs the compiled decoder (``_otlp_columns.c``) when
it was built and agrees with the installed protobuf schema, and this module's pure-Python decoder
(``decode_request_python``) otherwise. The pure-Python decoder is the reference: the compiled one either
returns exactly its result or declines the request, and then the reference decodes it. It declines
malformed or non-canonical protobuf (a field given twice, unknown fields, invalid UTF-8...), float model
versions and a model's ``ml.embedding`` of two dimensions in one request; spans the reference would reject it
skips and hands back, and the reference states their reasons, so every rejection reason and message is defined
here once. Both gather an ``ml.embedding``'s numbers and leave its projection to decode/embedding.py, so their
columns are equal to the bit.
``tests/unit/test_decode_compiled.py`` holds both to that on SDK output and fuzzed input.
Set ``OTEL_ML_DECODER=python`` to run the reference only.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_ml import semconv
from otel_ml.decode.batch import SPAN_IDS_BYTES, ColumnarBatch, DecodeResult, parse_protobuf, span_ids
from otel_ml.decode.embedding import embedding_columns
from otel_ml.decode.evaluations import Evaluation, EvaluationRows, is_evaluation_attribute, read_evaluation
from otel_ml.decode.genai import GenAiConfig, genai_call
from otel_ml.decode.limits import NUMBER_LIMIT, DecodeLimits, id_problem, probability_problem, truth_problem
from otel_ml.decode.outcomes import split_outcomes

try:
    from otel_ml.decode import _otlp_columns
except ImportError:  # built without a C compiler (setup.py: optional=True)
    _otlp_columns = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
_FEATURE_PREFIX_LEN = len(semconv.FEATURE_PREFIX)
_ID = semconv.PREDICTION_ID_COLUMN
_TRUTH = semconv.GROUND_TRUTH_COLUMN
_PROBABILITY = semconv.PREDICTION_PROBABILITY_FEATURE
_CLASS_PROBABILITY = semconv.CLASS_PROBABILITY_COLUMN_PREFIX
_PREDICTION_COLUMNS = {
    semconv.PREDICTION: semconv.PREDICTION_FEATURE,
    semconv.PREDICTION_SCORE: semconv.PREDICTION_SCORE_FEATURE,
    semconv.PREDICTION_PROBABILITY: semconv.PREDICTION_PROBABILITY_FEATURE,
    semconv.PREDICTION_ID: semconv.PREDICTION_ID_COLUMN,
    semconv.GROUND_TRUTH: semconv.GROUND_TRUTH_COLUMN,
}


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _ColumnBuilder:
    """Accumulates one (model, version) group: row positions and values per column."""

    def __init__(self, model: str, version: str) -> None:
        self.model = model
        self.version = version
        self.n_rows = 0
        self.row_time: list[tuple[int, int]] = []  # (n rows, time) runs
        self.row_weight: list[tuple[int, float]] = []
        self.num_idx: dict[str, list[int]] = {}
        self.num_val: dict[str, list[float]] = {}
        self.cat_idx: dict[str, list[int]] = {}
        self.cat_val: dict[str, list[str]] = {}
        self.invalid: Counter[str] = Counter()
        self.span_end: list[int] = []
        self.span_dur: list[float] = []
        self.span_err: list[bool] = []
        self.span_stream: list[int] = []
        self.span_seq: list[int] = []
        self.span_rows: list[int] = []
        self.span_ids: list[bytes] = []
        self.embeddings: list[tuple[int, np.ndarray]] = []
        """(first row, n × d vectors) of each span with an ``ml.embedding``."""

    @staticmethod
    def _add(idx_of: dict[str, list[int]], values_of: dict[str, list], name: str, start: int, values: list,
             positions: list[int]) -> None:
        """Append values at rows ``start + positions`` (every row from ``start`` when positions is empty)."""
        idx_of.setdefault(name, []).extend((start + p for p in positions) if positions
                                           else range(start, start + len(values)))
        values_of.setdefault(name, []).extend(values)

    def add(self, name: str, start: int, split: tuple) -> None:
        """Add one attribute's values, as ``_split_values`` sorted them, to the rows from ``start``."""
        nums, cats, num_pos, cat_pos, bad = split
        if nums:
            self._add(self.num_idx, self.num_val, name, start, nums, num_pos)
        if cats:
            self._add(self.cat_idx, self.cat_val, name, start, cats, cat_pos)
        if bad:
            self.invalid[name] += bad

    def add_scalars(self, scalars: list[tuple[str, str | None, AnyValue]], max_len: int) -> None:
        """The common case, one value per attribute at row ``n_rows``, without the generic path's lists
        (this loop is most of the decoder's time)."""
        row = self.n_rows
        num_idx, num_val, cat_idx, cat_val = self.num_idx, self.num_val, self.cat_idx, self.cat_val
        for name, kind, value in scalars:
            if kind == "double_value":
                x = value.double_value
                if abs(x) > NUMBER_LIMIT:  # ±inf too; NaN stays a missing value
                    x = math.nan
                    self.invalid[name] += 1
            elif kind == "int_value":
                x = float(value.int_value)
            elif kind == "string_value" or kind == "bool_value":
                text = value.string_value[:max_len if name != _ID else None] if kind == "string_value" else (
                    "true" if value.bool_value else "false")
                idx = cat_idx.get(name)
                if idx is None:
                    idx = cat_idx[name] = []
                    cat_val[name] = []
                idx.append(row)
                cat_val[name].append(text)
                continue
            else:
                if kind is not None:  # bytes, maps: unusable
                    self.invalid[name] += 1
                continue
            idx = num_idx.get(name)
            if idx is None:
                idx = num_idx[name] = []
                num_val[name] = []
            idx.append(row)
            num_val[name].append(x)

    def build(self) -> ColumnarBatch:
        n = self.n_rows
        numeric = {}
        for name, idx in self.num_idx.items():
            col = np.full(n, np.nan)
            col[np.asarray(idx, dtype=np.int64)] = np.asarray(self.num_val[name], dtype=np.float64)
            numeric[name] = col
        categorical = {name: categorical_column(n, np.asarray(idx, dtype=np.int64), self.cat_val[name])
                       for name, idx in self.cat_idx.items()}
        dimension = 0
        if self.embeddings:
            vectors = embedding_rows(n, self.embeddings)
            dimension = vectors.shape[1]
            numeric.update(embedding_columns(vectors))
        return ColumnarBatch(
            model=self.model,
            version=self.version,
            n_rows=n,
            row_time_ns=np.repeat(
                np.asarray([t for _, t in self.row_time], dtype=np.int64),
                np.asarray([c for c, _ in self.row_time], dtype=np.int64),
            ),
            row_weight=np.repeat(
                np.asarray([w for _, w in self.row_weight], dtype=np.float64),
                np.asarray([c for c, _ in self.row_weight], dtype=np.int64),
            ),
            numeric=numeric,
            categorical=categorical,
            invalid=self.invalid,
            span_end_ns=np.asarray(self.span_end, dtype=np.int64),
            span_duration_s=np.asarray(self.span_dur, dtype=np.float64),
            span_error=np.asarray(self.span_err, dtype=bool),
            span_stream=np.asarray(self.span_stream, dtype=np.int64),
            span_seq=np.asarray(self.span_seq, dtype=np.int64),
            span_rows=np.asarray(self.span_rows, dtype=np.int64),
            span_ids=np.frombuffer(b"".join(self.span_ids), np.uint8).reshape(-1, SPAN_IDS_BYTES),
            embedding_dimension=dimension,
        )


def categorical_column(n: int, rows: np.ndarray, values: list[str]) -> np.ndarray:
    """A categorical column of ``n`` rows holding ``values`` at ``rows`` and "" elsewhere.

    >>> categorical_column(3, np.array([0, 2]), ["a", "bc"]).tolist()
    ['a', '', 'bc']
    """
    vals = np.asarray(values, dtype=str)
    col = np.full(n, "", dtype=vals.dtype)
    col[rows] = vals
    return col


def _check_outcome(name: str, value: AnyValue, batch: bool, limits: DecodeLimits) -> None:
    """Raise _Rejected for an unusable id or label in a span (every element of a batch span's array)."""
    for v in (value.array_value.values if batch else (value,)):
        problem = id_problem(v, limits.max_id_length) if name == _ID else truth_problem(v)
        if problem is not None:
            raise _Rejected(*problem)


def _scalar_kind(v: AnyValue) -> str | None:
    return v.WhichOneof("value")


def _string_attr(v: AnyValue | None) -> str | None:
    if v is None:
        return None
    return v.string_value if _scalar_kind(v) == "string_value" else None


def _split_values(
    values: list[AnyValue], max_len: int | None
) -> tuple[list[float] | None, list[str] | None, list[int], list[int], int]:
    """Sort the elements of an attribute into numeric and categorical values.

    Returns (numeric values, categorical values, their positions, invalid count). Common case: all
    elements of one kind, returned without positions work.
    """
    kinds = [v.WhichOneof("value") for v in values]
    first = kinds[0] if kinds else None
    if first is not None and kinds.count(first) == len(kinds):
        if first == "double_value":
            nums = [v.double_value for v in values]
            bad = sum(1 for x in nums if abs(x) > NUMBER_LIMIT)
            if bad:
                nums = [math.nan if abs(x) > NUMBER_LIMIT else x for x in nums]
            return nums, None, [], [], bad
        if first == "int_value":
            return [float(v.int_value) for v in values], None, [], [], 0
        if first == "string_value":
            return None, [v.string_value[:max_len] for v in values], [], [], 0
        if first == "bool_value":
            return None, ["true" if v.bool_value else "false" for v in values], [], [], 0
    # Mixed or unusual element kinds: position by position.
    num_pos: list[int] = []
    cat_pos: list[int] = []
    nums: list[float] = []
    cats: list[str] = []
    bad = 0
    for i, (v, k) in enumerate(zip(values, kinds)):
        if k == "double_value" and not abs(v.double_value) > NUMBER_LIMIT:
            num_pos.append(i)
            nums.append(v.double_value)
        elif k == "int_value":
            num_pos.append(i)
            nums.append(float(v.int_value))
        elif k == "string_value":
            cat_pos.append(i)
            cats.append(v.string_value[:max_len])
        elif k == "bool_value":
            cat_pos.append(i)
            cats.append("true" if v.bool_value else "false")
        elif k is not None:
            bad += 1
    return nums, cats, num_pos, cat_pos, bad


def decode_request(
    request: ExportTraceServiceRequest | bytes, limits: DecodeLimits | None = None, genai: GenAiConfig | None = None
) -> DecodeResult:
    """Decode one OTLP trace export into columnar batches, one per (model, version); ``genai``: whether (and how)
    GenAI spans are predictions (``otel_ml.decode.genai``; default: they are).

    Raises ValueError when the bytes are not an ExportTraceServiceRequest.

    >>> from opentelemetry.proto.trace.v1.trace_pb2 import Span
    >>> req = ExportTraceServiceRequest()
    >>> span = req.resource_spans.add().scope_spans.add().spans.add(end_time_unix_nano=10**18)
    >>> span.attributes.add(key="ml.model.name").value.string_value = "churn"
    >>> span.attributes.add(key="ml.feature.age").value.int_value = 42
    >>> batch = decode_request(req.SerializeToString()).batches[0]
    >>> batch.model, batch.n_rows, batch.numeric["age"].tolist()
    ('churn', 1, [42.0])
    """
    limits = limits or DecodeLimits()
    genai = genai or GenAiConfig()
    if COMPILED and isinstance(request, (bytes, bytearray, memoryview)):
        result = decode_request_compiled(bytes(request), limits, genai)
        if result is not None:
            return split_outcomes(result)
    return split_outcomes(decode_request_python(request, limits, genai))


def decode_request_compiled(data: bytes, limits: DecodeLimits, genai: GenAiConfig | None = None) -> DecodeResult | None:
    """The compiled decoder's result, or None where it declines (the reference decoder then decides)."""
    now_ns = time.time_ns()
    future_limit = now_ns + limits.max_clock_skew_seconds * 1e9  # the reference compares ints to this float
    out = _otlp_columns.decode(data, limits.max_batch_size, limits.max_features_per_span, limits.max_category_length,
                               limits.max_name_length, limits.max_id_length, limits.max_embedding_dimension, now_ns,
                               min(max(math.floor(future_limit), 0), 2**64 - 1), _genai_mode(genai or GenAiConfig()))
    if isinstance(out, int):
        DECLINED[_DECLINE_REASONS[out]] += 1
        return None
    received, accepted, ignored, groups, rejected = out
    result = DecodeResult(batches=[], spans_received=received, spans_accepted=accepted, spans_ignored=ignored,
                          received_ns=now_ns)
    # Spans the compiled decoder skipped as invalid: the reference states why (reasons are defined once, here).
    spans = np.frombuffer(rejected, dtype=np.int64).reshape(-1, 4).tolist()
    for span_at, span_len, res_at, res_len in spans:
        res_model, res_version = _resource_model(Resource.FromString(data[res_at:res_at + res_len])) \
            if res_at >= 0 else (None, None)
        try:
            _decode_span(Span.FromString(data[span_at:span_at + span_len]), res_model, res_version, {}, limits, now_ns,
                         genai or GenAiConfig())
        except _Rejected as r:
            result.rejected[r.reason] += 1
            result.examples.setdefault(r.reason, r.detail)
            continue
        DECLINED["disagreement"] += 1  # a bug: let the reference decode the whole request
        log.error("compiled decoder rejected a span the reference accepts; please report this request")
        return None
    for (model, version, n, row_time, row_weight, span_end, span_dur, span_err, span_stream, span_seq, span_rows,
         numeric, categorical, invalid, dimension, vectors, ids) in groups:
        columns = {name: np.frombuffer(col, dtype=np.float64) for name, col in numeric.items()}
        if dimension:  # the same vectors the reference gathers, projected by the same function
            columns.update(embedding_columns(np.frombuffer(vectors, dtype=np.float64).reshape(n, dimension)))
        result.batches.append(ColumnarBatch(
            model=model,
            version=version,
            n_rows=n,
            row_time_ns=np.frombuffer(row_time, dtype=np.int64),
            row_weight=np.frombuffer(row_weight, dtype=np.float64),
            numeric=columns,
            # numpy str storage filled by the decoder: no Python object per row
            categorical={name: np.frombuffer(cells, dtype=f"<U{width}")
                         for name, (cells, width) in categorical.items()},
            invalid=Counter(invalid),
            span_end_ns=np.frombuffer(span_end, dtype=np.int64),
            span_duration_s=np.frombuffer(span_dur, dtype=np.float64),
            span_error=np.frombuffer(span_err, dtype=bool),
            span_stream=np.frombuffer(span_stream, dtype=np.int64),
            span_seq=np.frombuffer(span_seq, dtype=np.int64),
            span_rows=np.frombuffer(span_rows, dtype=np.int64),
            span_ids=np.frombuffer(ids, dtype=np.uint8).reshape(-1, SPAN_IDS_BYTES),
            embedding_dimension=int(dimension),
        ))
    return result


def _genai_mode(genai: GenAiConfig) -> int:
    """What the compiled decoder does with GenAI spans: 0 ordinary traffic (GenAI off), 2 decode them with the default
    mapping, 1 decline them (overrides in ``genai.features``: genai.py applies those); plus 4 when calls are keyed
    for their evaluation results (``genai.evaluations``: then a request with a result in a span event is declined,
    otlp.py reads those)."""
    if not genai.enabled:
        return 0
    return (1 if genai.features else 2) | (4 if genai.evaluations else 0)


_DECLINE_REASONS = {1: "wire_format", 2: "float_model_version", 5: "embedding_dimension_mismatch", 6: "genai_span"}
DECLINED: Counter[str] = Counter()
"""Requests the compiled decoder handed to the reference decoder, by reason (for tests and benchmarks)."""


def _repeated(f: FieldDescriptor) -> bool:
    flag = getattr(f, "is_repeated", None)  # protobuf >= 6; ``label`` is deprecated there
    return bool(flag) if flag is not None else f.label == FieldDescriptor.LABEL_REPEATED


def installed_schema() -> dict[str, dict[int, tuple[str, str, bool, bool]]]:
    """The trace schema of the installed opentelemetry-proto, in the form ``_otlp_columns.schema()`` uses."""
    wire = {FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_BYTES: "bytes",
            FieldDescriptor.TYPE_MESSAGE: "message", FieldDescriptor.TYPE_DOUBLE: "fixed64",
            FieldDescriptor.TYPE_FIXED64: "fixed64", FieldDescriptor.TYPE_FIXED32: "fixed32"}
    out: dict[str, dict[int, tuple[str, str, bool, bool]]] = {}
    todo = [ExportTraceServiceRequest.DESCRIPTOR]
    while todo:
        d = todo.pop()
        if d.full_name in out:
            continue
        out[d.full_name] = {
            f.number: (wire.get(f.type, "varint"), f.message_type.full_name if f.message_type else "",
                       _repeated(f), f.containing_oneof is not None)
            for f in d.fields}
        todo.extend(f.message_type for f in d.fields if f.message_type)
    return out


def _compiled_usable() -> bool:
    if _otlp_columns is None or os.environ.get("OTEL_ML_DECODER", "").lower() == "python":
        return False
    if _otlp_columns.schema() != installed_schema():
        # A different opentelemetry-proto: the compiled decoder would not validate like upb does.
        log.warning("compiled OTLP decoder disabled: the installed opentelemetry-proto schema differs from the one "
                    "it was written for; using the pure-Python decoder")
        return False
    return True


def decode_request_python(
    request: ExportTraceServiceRequest | bytes, limits: DecodeLimits | None = None, genai: GenAiConfig | None = None
) -> DecodeResult:
    """The reference decoder, in pure Python: what ``decode_request`` returns, whichever decoder runs.

    >>> from opentelemetry.proto.trace.v1.trace_pb2 import Span
    >>> req = ExportTraceServiceRequest()
    >>> span = req.resource_spans.add().scope_spans.add().spans.add(end_time_unix_nano=10**18)
    >>> span.attributes.add(key="ml.model.name").value.string_value = "churn"
    >>> span.attributes.add(key="ml.feature.age").value.int_value = 42
    >>> result = decode_request_python(req)
    >>> batch = result.batches[0]
    >>> batch.model, batch.n_rows, batch.numeric["age"].tolist()
    ('churn', 1, [42.0])
    """
    limits = limits or DecodeLimits()
    genai = genai or GenAiConfig()
    if isinstance(request, (bytes, bytearray, memoryview)):
        request = parse_protobuf(ExportTraceServiceRequest, request)
    builders: dict[tuple[str, str], _ColumnBuilder] = {}
    now_ns = time.time_ns()
    result = DecodeResult(batches=[], received_ns=now_ns)
    evaluations = EvaluationRows()
    for rs in request.resource_spans:
        res_model, res_version = _resource_model(rs.resource)
        for ss in rs.scope_spans:
            for span in ss.spans:
                result.spans_received += 1
                try:
                    ok = _decode_span(span, res_model, res_version, builders, limits, now_ns, genai)
                except _Rejected as r:
                    result.rejected[r.reason] += 1
                    result.examples.setdefault(r.reason, r.detail)
                    continue
                if genai.enabled and genai.evaluations and span.events:
                    try:
                        ok = _evaluation_events(span, ok, evaluations) or ok
                    except _Rejected as r:
                        result.rejected[r.reason] += 1
                        result.examples.setdefault(r.reason, r.detail)
                        continue
                if ok:
                    result.spans_accepted += 1
                else:
                    result.spans_ignored += 1
    result.batches = [b.build() for b in builders.values() if b.n_rows or b.span_end]
    result.labels.extend(evaluations.batches())
    return result


def _evaluation_events(span: Span, is_call: bool, evaluations: EvaluationRows) -> bool:
    """Add the span's ``gen_ai.evaluation.result`` events: results for the span itself when it is a GenAI call
    (``is_call``), else for its parent. True when any was taken. OTLP counts spans, not events: a span neither
    taken otherwise nor for any result is rejected with the first unusable result's reason; an unusable result on a
    span that is taken is left out (the span's other results and its call are kept)."""
    taken = False
    problem: tuple[str, str] | None = None
    for event in span.events:
        if event.name != semconv.GENAI_EVALUATION_EVENT:
            continue
        ev = read_evaluation({kv.key: kv.value for kv in event.attributes if is_evaluation_attribute(kv.key)})
        if not isinstance(ev, Evaluation):
            problem = problem or ev
        elif evaluations.add(ev, span.span_id if is_call else span.parent_span_id,
                             event.time_unix_nano or span.end_time_unix_nano):
            taken = True
        else:
            problem = problem or ("evaluation_without_call", f"a {semconv.GENAI_EVALUATION_EVENT} event on a span "
                                  f"that is no GenAI call and has no parent, naming no {semconv.GENAI_RESPONSE_ID}")
    if problem is not None and not taken and not is_call:
        raise _Rejected(*problem)
    return taken


def _resource_model(resource: Resource) -> tuple[AnyValue | None, AnyValue | None]:
    """``ml.model.name`` and ``ml.model.version`` of a resource (the last one given wins), for its spans."""
    model = version = None
    for kv in resource.attributes:
        if kv.key == semconv.MODEL_NAME:
            model = kv.value
        elif kv.key == semconv.MODEL_VERSION:
            version = kv.value
    return model, version


def _decode_span(
    span,
    res_model: AnyValue | None,
    res_version: AnyValue | None,
    builders: dict[tuple[str, str], _ColumnBuilder],
    limits: DecodeLimits,
    now_ns: int,
    genai: GenAiConfig,
) -> bool:
    """Add one span to its group (a GenAI call's too: ``genai``); False for a non-ML span; raises _Rejected for
    unusable ML spans."""
    model_v = res_model
    version_v = res_version
    batch_v: AnyValue | None = None
    ratio_v: AnyValue | None = None
    seq_v: AnyValue | None = None
    stream_v: AnyValue | None = None
    columns: list[tuple[str, AnyValue]] = []
    reserved: str | None = None
    embedding_v: AnyValue | None = None
    dimension_v: AnyValue | None = None
    for kv in span.attributes:
        key = kv.key
        if not key.startswith("ml."):
            continue
        if key.startswith(semconv.FEATURE_PREFIX):
            name = key[_FEATURE_PREFIX_LEN:]
            if semconv.is_reserved_feature(name):
                reserved = key
            columns.append((name, kv.value))
        elif key.startswith((semconv.CLASS_PROBABILITY_PREFIX, semconv.SEGMENT_PREFIX, semconv.ATTRIBUTION_PREFIX)):
            # ml.prediction.probability.<class>, ml.segment.<key>, ml.attribution.<feature>: the columns
            # prediction.probability.<class>, segment.<key>, attribution.<feature>
            columns.append((key[3:], kv.value))
        elif key in _PREDICTION_COLUMNS:
            columns.append((_PREDICTION_COLUMNS[key], kv.value))
        elif key == semconv.MODEL_NAME:
            model_v = kv.value
        elif key == semconv.MODEL_VERSION:
            version_v = kv.value
        elif key == semconv.BATCH_SIZE:
            batch_v = kv.value
        elif key == semconv.SAMPLING_RATIO:
            ratio_v = kv.value
        elif key == semconv.SEQUENCE:
            seq_v = kv.value
        elif key == semconv.SEQUENCE_STREAM:
            stream_v = kv.value
        elif key == semconv.EMBEDDING:
            embedding_v = kv.value
        elif key == semconv.EMBEDDING_DIMENSION:
            dimension_v = kv.value
    if model_v is None:
        if embedding_v is not None:
            columns.append((semconv.EMBEDDING, embedding_v))  # ML data all the same: rejected below
        if columns:  # ML data whose model is unknown: most often an SDK attribute limit evicted ml.model.name
            raise _Rejected("model_name_missing", f"{len(columns)} ml.* column(s) (e.g. '{columns[0][0]}') but no "
                            f"{semconv.MODEL_NAME} on the span or its resource; an SDK's span attribute limit "
                            "(OTEL_ATTRIBUTE_COUNT_LIMIT, 128 by default) evicts the oldest attributes first")
        call = genai_call(span, genai)
        if call is None:
            return False
        model_v, version_v = AnyValue(string_value=call.model), AnyValue(string_value=call.version)
        columns = call.columns
    model = _string_attr(model_v)
    if not model:
        raise _Rejected("invalid_model_name", f"{semconv.MODEL_NAME} must be a non-empty string")
    version = "" if version_v is None else _string_attr(version_v)
    if version is None:
        kind = version_v.WhichOneof("value")
        if kind == "int_value":
            version = str(version_v.int_value)
        elif kind == "double_value":
            version = str(version_v.double_value)
        else:
            raise _Rejected("invalid_model_version", f"{semconv.MODEL_VERSION} must be a string")
    longest = max((len(name) for name, _ in columns), default=0)
    if len(model) > limits.max_name_length or len(version) > limits.max_name_length or \
            longest > limits.max_name_length:
        raise _Rejected("name_too_long", f"a model, version or feature name is over {limits.max_name_length} "
                                         "characters")
    if len(columns) > limits.max_features_per_span:
        raise _Rejected(
            "too_many_features", f"{len(columns)} features in one span (limit {limits.max_features_per_span})"
        )
    if reserved is not None:
        raise _Rejected("reserved_feature_name", f"'{reserved}' would merge with the model output; rename the "
                                                 "feature")
    if len(columns) > 1 and len({name for name, _ in columns}) != len(columns):
        # OTLP requires unique attribute keys; of two values for one column neither is known to be the right one.
        seen: set[str] = set()
        for name, _ in columns:
            if name in seen:
                raise _Rejected("duplicate_attribute", f"column '{name}' is given twice in one span")
            seen.add(name)

    weight = 1.0
    if ratio_v is not None:
        kind = ratio_v.WhichOneof("value")
        ratio = ratio_v.double_value if kind == "double_value" else (
            float(ratio_v.int_value) if kind == "int_value" else math.nan)
        if not (0.0 < ratio <= 1.0):
            raise _Rejected("invalid_sampling_ratio", f"{semconv.SAMPLING_RATIO} must be in (0, 1], got {ratio}")
        weight = 1.0 / ratio

    n = 1
    if batch_v is not None:
        if batch_v.WhichOneof("value") != "int_value" or not (1 <= batch_v.int_value <= limits.max_batch_size):
            raise _Rejected(
                "invalid_batch_size",
                f"{semconv.BATCH_SIZE} must be an int in [1, {limits.max_batch_size}]",
            )
        n = batch_v.int_value

    seq, stream = -1, 0
    if seq_v is not None or stream_v is not None:
        if seq_v is None or stream_v is None or seq_v.WhichOneof("value") != "int_value" or \
                stream_v.WhichOneof("value") != "int_value" or seq_v.int_value < 0 or stream_v.int_value == 0:
            raise _Rejected("invalid_sequence", f"{semconv.SEQUENCE} (int >= 0) and {semconv.SEQUENCE_STREAM} "
                                                "(int, not 0) go together")
        seq, stream = seq_v.int_value, stream_v.int_value

    vectors = _embedding(embedding_v, dimension_v, n, limits) if embedding_v is not None else None
    # Validate every column before touching the builder so a rejected span leaves no trace.
    decoded: list[tuple[str, tuple]] = []
    scalars: list[tuple[str, str | None, AnyValue]] = []
    for name, value in columns:
        kind = value.WhichOneof("value")
        if batch_v is None:
            if kind == "array_value":
                raise _Rejected("array_without_batch_size",
                                f"'{name}' is an array but the span has no {semconv.BATCH_SIZE}")
            scalars.append((name, kind, value))
        else:
            if kind != "array_value":
                raise _Rejected("batch_value_not_array", f"'{name}' is not an array in a batch span")
            elems = value.array_value.values
            if len(elems) != n:
                raise _Rejected(
                    "batch_length_mismatch",
                    f"'{name}' has {len(elems)} values, {semconv.BATCH_SIZE} is {n}",
                )
            decoded.append((name, _split_values(list(elems), limits.max_category_length if name != _ID else None)))
    for name, value in columns:
        if name in (_ID, _TRUTH):
            _check_outcome(name, value, batch_v is not None, limits)
        elif name == _PROBABILITY or name.startswith(_CLASS_PROBABILITY):
            for v in (value.array_value.values if batch_v is not None else (value,)):
                problem = probability_problem(name, v)
                if problem is not None:
                    raise _Rejected(*problem)

    end = span.end_time_unix_nano or span.start_time_unix_nano or now_ns
    if end > now_ns + limits.max_clock_skew_seconds * 1e9:
        # A clock far ahead would move every window of the model into the future and evict the present.
        raise _Rejected("timestamp_in_future", f"span ends {(end - now_ns) / 1e9:.0f}s in the future "
                                               f"(limit {limits.max_clock_skew_seconds:.0f}s)")
    # A zero-length span (ModelMonitor.record, a batch collected by ModelMonitor(batch_rows=...)) says when, not how
    # long: it has no latency to report.
    dur = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9 if (
        span.start_time_unix_nano and span.end_time_unix_nano > span.start_time_unix_nano) else math.nan

    b = builders.get((model, version))
    if b is None:
        b = builders[(model, version)] = _ColumnBuilder(model, version)
    if vectors is not None:
        if b.embeddings and b.embeddings[0][1].shape[1] != vectors.shape[1]:
            raise _Rejected("embedding_dimension_mismatch", f"{semconv.EMBEDDING} of dimension {vectors.shape[1]} in a "
                            f"request whose earlier spans of this model have {b.embeddings[0][1].shape[1]}")
        b.embeddings.append((b.n_rows, vectors))
    for name, split in decoded:
        b.add(name, b.n_rows, split)
    if scalars:
        b.add_scalars(scalars, limits.max_category_length)
    b.n_rows += n
    b.row_time.append((n, end))
    b.row_weight.append((n, weight))
    b.span_end.append(end)
    b.span_dur.append(dur)
    b.span_err.append(span.status.code == _STATUS_ERROR)
    b.span_stream.append(stream)
    b.span_seq.append(seq)
    b.span_rows.append(n)
    b.span_ids.append(span_ids(span.trace_id, span.span_id))
    return True


def _embedding(value: AnyValue, dimension_v: AnyValue | None, n: int, limits: DecodeLimits) -> np.ndarray:
    """A span's ``ml.embedding`` as ``n × d`` vectors; _Rejected when it is not ``n·d`` finite numbers."""
    if value.WhichOneof("value") != "array_value":
        raise _Rejected("invalid_embedding", f"{semconv.EMBEDDING} must be an array of numbers")
    elems = value.array_value.values
    kinds = {e.WhichOneof("value") for e in elems}
    if not elems or not kinds <= {"double_value", "int_value"}:
        raise _Rejected("invalid_embedding", f"{semconv.EMBEDDING} must be a non-empty array of numbers, got "
                        f"{', '.join(sorted(str(k) for k in kinds)) or 'no values'}")
    x = np.array([e.double_value for e in elems] if kinds == {"double_value"} else
                 [e.double_value if e.WhichOneof("value") == "double_value" else float(e.int_value) for e in elems])
    if (np.abs(x) > NUMBER_LIMIT).any():  # NaN passes: a vector with one is a missing row (every column NaN)
        raise _Rejected("invalid_embedding", f"{semconv.EMBEDDING} holds ±inf or a number beyond ±1e100")
    if dimension_v is not None:
        d = dimension_v.int_value if dimension_v.WhichOneof("value") == "int_value" else 0
        if d < 1 or len(x) != n * d:
            raise _Rejected("embedding_length_mismatch", f"{semconv.EMBEDDING} has {len(x)} numbers; "
                            f"{semconv.EMBEDDING_DIMENSION} (an int >= 1) times the span's rows ({n}) must equal it")
    elif len(x) % n:
        raise _Rejected("embedding_length_mismatch", f"{semconv.EMBEDDING} has {len(x)} numbers, not a multiple of "
                        f"the span's {n} rows")
    d = len(x) // n
    if d > limits.max_embedding_dimension:
        raise _Rejected("embedding_too_large", f"{semconv.EMBEDDING} of dimension {d} (limit "
                        f"{limits.max_embedding_dimension})")
    return x.reshape(n, d)


def embedding_rows(n: int, parts: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """The ``n × d`` vectors of a group's rows (NaN: a row whose span had no embedding)."""
    out = np.full((n, parts[0][1].shape[1]), np.nan)
    for start, vectors in parts:
        out[start:start + len(vectors)] = vectors
    return out


COMPILED = _compiled_usable()
"""True when ``decode_request`` runs the compiled decoder."""
