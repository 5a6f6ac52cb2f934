"""Record predictions as OTel spans with ml.* attributes. Imports opentelemetry-api only.

Rules for the serving path: never raise because of a feature value (an unusable value is dropped and
counted in ``ModelMonitor.dropped_values``), never block (spans go to whatever SpanProcessor the app
configured; the SDK's BatchSpanProcessor exports in the background), cost little when not sampled.

Every recorded span carries its place in this monitor's sequence (``ml.sequence``, ``ml.sequence.stream``): the
processor sees the gaps, i.e. spans an SDK queue, a Collector or the network dropped
(``ml_predictions_lost_ratio``). Above a few thousand predictions per second per process, the SDK cannot export
one span per prediction; ``batch_rows`` makes ``record`` collect predictions into batch spans
(docs/serving.md).
"""

from __future__ import annotations

import atexit
import datetime
import functools
import logging
import math
import os
import random
import re
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import metrics, trace

from otel_ml import semconv

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
Scalar = bool | int | float | str
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_Row = tuple[dict[str, Any], Any, Any, Any, Any, "int | None", Any, "Mapping[str, Any] | None"]
"""A row ``record`` collected with ``batch_rows``: features, prediction, score, id, probability, event time,
embedding."""

SPAN_NAME = "ml.predict"
_UNKNOWN = object()
_LATER_SINGLE = 6
"""Attributes a single-prediction span may get after its features: the prediction, score, probability and id,
ml.sequence and its stream."""


def _scalar(value: Any) -> Scalar | None:
    """A value an OTel attribute can carry, None for a missing value; TypeError for an unusable one."""
    if value is None:
        return None
    if isinstance(value, (bool, str)):
        return value if value != "" else None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    item = getattr(value, "item", None)  # numpy scalars, without importing numpy
    if callable(item):
        try:
            return _scalar(item())
        except (TypeError, ValueError):
            return None
    raise TypeError(type(value).__name__)


def class_key(cls: Any) -> str:
    """``ml.prediction.probability.<class>`` for a class label (a whole float reads as an int: 1.0 → ``1``)."""
    return semconv.CLASS_PROBABILITY_PREFIX + (str(int(cls)) if isinstance(cls, float) and cls.is_integer()
                                               else str(cls))


def probability_columns(values: Any) -> dict[str, Any]:
    """The attributes of a ``probability`` argument: a number (or a column of them) is the positive class's
    (``ml.prediction.probability``); a mapping of class → probability (or → column), or a column of such
    mappings, gives one ``ml.prediction.probability.<class>`` per class (multiclass).

    >>> probability_columns({"cat": 0.7, "dog": 0.3})
    {'ml.prediction.probability.cat': 0.7, 'ml.prediction.probability.dog': 0.3}
    >>> probability_columns([{"a": 0.9, "b": 0.1}, {"a": 0.2}])["ml.prediction.probability.b"]
    [0.1, None]
    """
    if isinstance(values, Mapping):
        return {class_key(c): v for c, v in values.items()}
    if isinstance(values, (list, tuple)) and any(isinstance(v, Mapping) for v in values):
        classes = dict.fromkeys(c for v in values if isinstance(v, Mapping) for c in v)
        return {class_key(c): [v.get(c) if isinstance(v, Mapping) else None for v in values] for c in classes}
    return {semconv.PREDICTION_PROBABILITY: values}


def _column(values: Sequence[Any]) -> list[Any]:
    """A homogeneous attribute array; missing numbers become NaN and missing strings "" (both read as
    missing by the processor). Raises TypeError when the values mix numbers and strings."""
    # A list is passed on as it is: the SDK copies an attribute's array when the span starts.
    raw = values if type(values) is list else values.tolist() if hasattr(values, "tolist") else list(values)
    if not raw:
        return raw
    # Fast paths, the usual cases (NaN already means missing in a float array, "" in a string one), each one C
    # loop over the column: at 20 columns a check per value in Python (or even set(map(type, ...))) cost more
    # than a tenth of the span's own attribute checks. A float column passes when it sums: every value is a
    # number (None or text raise TypeError); an int among the floats is a number to the processor as well, and a
    # bool one is counted there as a categorical value of a numeric feature.
    first = type(raw[0])
    try:
        if first is float:
            sum(raw)
            return raw
        if first is str:
            "".join(raw)
            return raw
    except (TypeError, OverflowError):  # not one kind of value, or an int beyond a float: the exact path
        pass
    if len(kinds := set(map(type, raw))) == 1 and kinds.pop() in (float, int, str):
        return raw
    items = [_scalar(v) for v in raw]
    present = [v for v in items if v is not None]
    if not present:
        return [math.nan] * len(items)
    if all(isinstance(v, bool) for v in present):
        # bools cannot carry a missing marker; categorical anyway, so use strings.
        return ["" if v is None else ("true" if v else "false") for v in items]
    if all(isinstance(v, str) for v in present):
        return ["" if v is None else v for v in items]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        if all(isinstance(v, int) for v in present) and len(present) == len(items):
            return items
        return [math.nan if v is None else float(v) for v in items]
    raise TypeError("mixed value types")


def embedding_attributes(vectors: Sequence[Any]) -> dict[str, Any]:
    """``ml.embedding`` (the vectors one after another, as floats) and ``ml.embedding.dimension`` for one vector per
    row; a row's None becomes NaN (missing). ValueError when the vectors differ in length or hold no numbers.

    >>> embedding_attributes([[1, 2], None])
    {'ml.embedding': [1.0, 2.0, nan, nan], 'ml.embedding.dimension': 2}
    """
    rows = [None if v is None else (v.tolist() if hasattr(v, "tolist") else list(v)) for v in vectors]
    dims = {len(r) for r in rows if r is not None}
    if len(dims) != 1 or 0 in dims:
        raise ValueError(f"embeddings of {len(dims)} different lengths" if dims else "no embedding in the rows")
    d = dims.pop()
    flat = [math.nan if x is None else float(x) for r in rows for x in (r if r is not None else [None] * d)]
    if any(math.isinf(x) for x in flat):
        raise ValueError("an embedding holds ±inf")
    return {semconv.EMBEDDING: flat, semconv.EMBEDDING_DIMENSION: d}


_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
                  r"\s*(Z|z|[+-]\d{2}:?\d{2})?")


def iso_time_ns(text: str) -> int:
    """Unix nanoseconds of an ISO 8601 time (UTC unless it says otherwise), to the nanosecond, alike on every
    Python version (``datetime.fromisoformat`` takes neither ``Z`` nor more than 6 decimals before 3.11, and drops
    the nanoseconds after). Raises ValueError naming the text.

    >>> iso_time_ns("2026-11-01T00:00:00.123456789Z"), iso_time_ns("2026-11-01 01:00+01:00"), iso_time_ns("1970-01-02")
    (1793491200123456789, 1793491200000000000, 86400000000000)
    """
    m = _ISO.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"Invalid isoformat string: {text[:64]!r}")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    moment = datetime.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                               tzinfo=datetime.timezone.utc)
    offset = 0
    if zone and zone not in "Zz":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds - offset) * 10**9 + int((fraction or "0").ljust(9, "0"))


def event_time_ns(value: Any) -> int:
    """Unix nanoseconds of an event time given as a ``datetime`` (naive: UTC; a pandas Timestamp is one), a
    numpy ``datetime64``, ISO 8601 text, or Unix seconds (int or float). Raises ValueError or TypeError.

    >>> import datetime as dt
    >>> event_time_ns(dt.datetime(2026, 11, 1)), event_time_ns("2026-11-01T00:00:00Z"), event_time_ns(1793491200)
    (1793491200000000000, 1793491200000000000, 1793491200000000000)
    """
    if isinstance(value, str):
        return iso_time_ns(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000 + int(
            getattr(value, "nanosecond", 0))  # pandas keeps nanoseconds apart
    if isinstance(value, datetime.date):
        return event_time_ns(datetime.datetime(value.year, value.month, value.day))
    if isinstance(value, bool):
        raise TypeError("a bool is not a time")
    if isinstance(value, int):
        return value * 10**9
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a time")
        return round(value * 1e9)
    if type(value).__name__ == "datetime64":  # numpy, without importing it
        ns = value.astype("datetime64[ns]").astype("int64")
        if ns == -(2**63):  # NaT
            raise ValueError("NaT is not a time")
        return int(ns)
    item = getattr(value, "item", None)  # numpy numbers
    if callable(item):
        return event_time_ns(item())
    raise TypeError(f"{type(value).__name__} is not a time (a datetime, ISO 8601 text or Unix seconds)")


def _by_time(times: Sequence[int | None]) -> list[tuple[int | None, list[int]]]:
    """The row indexes of each distinct time, earliest first (None, i.e. now, last): one span per time, sent in
    event order, since the processor's event clock follows the data."""
    groups: dict[int | None, list[int]] = {}
    for i, t in enumerate(times):
        groups.setdefault(t, []).append(i)
    return sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))


def _row_times(timestamps: Sequence[Any] | None, n: int) -> list[int | None]:
    """Each of ``n`` rows' event time in Unix ns (None: now), from ``timestamps`` (None: every row now)."""
    if timestamps is None:
        return [None] * n
    times = [None if t is None else event_time_ns(t) for t in timestamps]
    if len(times) != n:
        raise ValueError(f"timestamps differ in length from the rows: {len(times)} for {n}")
    return times


def _ground_truth_attributes(model: str, version: str, prediction_ids: Sequence[str],
                             values: Sequence[Any]) -> dict[str, Any]:
    """A label span's attributes: one id and label, or ``ml.batch.size`` arrays of them."""
    attrs: dict[str, Any] = {semconv.MODEL_NAME: model}
    if version:
        attrs[semconv.MODEL_VERSION] = version
    if len(values) == 1:
        attrs[semconv.PREDICTION_ID] = str(prediction_ids[0])
        attrs[semconv.GROUND_TRUTH] = _scalar(values[0])
    else:
        attrs[semconv.BATCH_SIZE] = len(values)
        attrs[semconv.PREDICTION_ID] = [str(i) for i in prediction_ids]
        attrs[semconv.GROUND_TRUTH] = _column(list(values))
    if attrs[semconv.GROUND_TRUTH] is None:
        raise ValueError(f"ground truth {values[0]!r} is not a number, string or bool")
    return attrs


def _reason_of(why: object) -> str:
    """A short reason for a dropped value, for the counter's ``reason`` attribute."""
    text = str(why)
    if "mixed" in text:
        return "mixed_types"
    if "differ in length" in text:
        return "length_mismatch"
    if isinstance(why, TypeError):
        return "unsupported_type"
    return "other"


def attribution_columns(attributions: Mapping[str, Any] | None,
                        drop: Callable[..., None] | None = None) -> dict[str, Any]:
    """``ml.attribution.<feature>`` for each feature's attribution (one value, or one per row of a batch); none when
    ``attributions`` is no mapping (``drop`` is told: the serving code never gets an exception).

    >>> attribution_columns({"income": 0.31, "age": -0.02})
    {'ml.attribution.income': 0.31, 'ml.attribution.age': -0.02}
    """
    try:
        return {semconv.ATTRIBUTION_PREFIX + str(k): v for k, v in (attributions or {}).items()}
    except Exception as e:  # a list or a string where a mapping belongs
        if drop is not None:
            drop("attributions", e, "unreadable_attributions")
        return {}


def explained(explainer: Any, X: Any, names: list[str], classes: list[int] | None) -> dict[str, list[float]]:
    """Each feature's attributions (one per row of ``X``) from ``explainer``: an object with ``shap_values(X)``
    (shap's explainers), or a callable returning an array or an object with ``.values`` (shap's ``Explanation``).
    Rows × features as is; rows × features × classes (or one array per class): a binary classifier's positive
    class, else the class ``classes`` says each row was predicted."""
    import numpy as np

    out = explainer.shap_values(X) if hasattr(explainer, "shap_values") else explainer(X)
    values = out if isinstance(out, list) else getattr(out, "values", out)
    arr = np.stack([np.asarray(v, dtype=float) for v in values], axis=-1) if isinstance(values, list) else \
        np.asarray(values, dtype=float)
    if arr.ndim == 3:
        if arr.shape[2] == 2:
            arr = arr[:, :, 1]
        elif classes is not None:
            arr = arr[np.arange(arr.shape[0]), :, np.asarray(classes)]
        else:
            raise ValueError(f"the explainer gave {arr.shape[2]} classes' attributions and the predicted class is "
                             "unknown (predict_proba, or predict of a model with classes_)")
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise ValueError(f"the explainer gave attributions of shape {arr.shape} for {len(names)} features")
    return {name: arr[:, j].tolist() for j, name in enumerate(names)}


def _add_embedding(attrs: dict[str, Any], vectors: list[Any], drop: Callable[..., None]) -> None:
    try:
        attrs.update(embedding_attributes(vectors))
    except Exception as e:  # never raise into serving code
        drop(semconv.EMBEDDING, e, "invalid_embedding")


class PredictionRecord:
    """Handle of one prediction being recorded; set the output once the model answered."""

    def __init__(self, monitor: ModelMonitor, span: trace.Span) -> None:
        self._monitor = monitor
        self.span = span

    def set_feature(self, name: str, value: Any) -> None:
        key = self._monitor._feature_key(name)
        if key is not None:
            self._monitor._set(self.span, key, value)

    def set_segment(self, key: str, value: Any) -> None:
        """The prediction's segment by ``key`` (``ml.segment.<key>``: a region, a customer tier), not a feature."""
        self._monitor._set(self.span, semconv.SEGMENT_PREFIX + key, value)

    def set_prediction(self, value: Any, score: float | None = None, prediction_id: str | None = None,
                       probability: float | None = None) -> None:
        """The model's output; ``prediction_id`` (or the one ``predict(prediction_id=...)`` gave) lets a later
        ``record_ground_truth`` find it; ``probability``: of the positive class (binary classifiers), or a
        mapping class → probability (multiclass)."""
        self._monitor._set(self.span, semconv.PREDICTION, value)
        if score is not None:
            self._monitor._set(self.span, semconv.PREDICTION_SCORE, score)
        if probability is not None:
            for key, value in probability_columns(probability).items():
                self._monitor._set(self.span, key, value)
        if prediction_id is not None:
            self.prediction_id = prediction_id
            self._monitor._set(self.span, semconv.PREDICTION_ID, prediction_id)

    prediction_id: str | None = None
    """The id this prediction carries (given, or generated with ``predict(prediction_id=True)``)."""


class _NotSampled(PredictionRecord):
    def set_feature(self, name: str, value: Any) -> None:
        pass

    def set_prediction(self, value: Any, score: float | None = None, prediction_id: str | None = None,
                       probability: float | None = None) -> None:
        if prediction_id is not None:
            self.prediction_id = prediction_id


def span_attribute_limit(tracer: trace.Tracer) -> int:
    """The span attribute limit of the SDK behind ``tracer`` (``SpanLimits.max_span_attributes``); without one to
    read, the SDK's default as the environment sets it (128 unless OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT or
    OTEL_ATTRIBUTE_COUNT_LIMIT say otherwise).

    >>> from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    >>> span_attribute_limit(TracerProvider(span_limits=SpanLimits(max_span_attributes=1000)).get_tracer("app"))
    1000
    """
    sdk_tracer = getattr(tracer, "_real_tracer", None) or tracer  # a ProxyTracer's SDK tracer
    limit = getattr(getattr(sdk_tracer, "_span_limits", None), "max_span_attributes", _UNKNOWN)
    if limit is _UNKNOWN:
        for name in ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"):
            try:
                return int(os.environ[name])
            except (KeyError, ValueError):
                continue
        return 128
    return limit if isinstance(limit, int) and limit >= 0 else 2**31  # None: no limit


_STATIC_SAMPLERS = {"StaticSampler", "_AlwaysOn", "_AlwaysOff"}
_PARENT_BASED_SAMPLERS = {"ParentBased", "_ParentBasedAlwaysOn", "_ParentBasedAlwaysOff"}


def sampler_decisions(tracer: trace.Tracer) -> tuple[bool, bool, bool, bool, bool] | None:
    """Whether the SDK behind ``tracer`` records a span (root, remote parent sampled / not, local parent sampled /
    not), when its sampler decides from the parent alone: the SDK's ALWAYS_ON, ALWAYS_OFF and ParentBased over
    them (the default). None for any other sampler (a ratio, a custom one): only the span can tell.

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> sampler_decisions(TracerProvider().get_tracer("app"))
    (True, True, False, True, False)
    """
    sampler = getattr(getattr(tracer, "_real_tracer", None) or tracer, "sampler", None)

    def static(s: object) -> bool | None:
        if type(s).__name__ not in _STATIC_SAMPLERS or type(s).__module__ != _SAMPLING_MODULE:
            return None
        return bool(s._decision.is_recording())  # type: ignore[attr-defined]

    if type(sampler).__module__ != _SAMPLING_MODULE:
        return None
    if type(sampler).__name__ in _PARENT_BASED_SAMPLERS:
        parts = [static(getattr(sampler, name, None)) for name in (
            "_root", "_remote_parent_sampled", "_remote_parent_not_sampled", "_local_parent_sampled",
            "_local_parent_not_sampled")]
    else:
        parts = [static(sampler)] * 5
    return None if None in parts else tuple(parts)  # type: ignore[return-value]


_SAMPLING_MODULE = "opentelemetry.sdk.trace.sampling"


class SpanSequence:
    """A sender's numbering of the spans it exports (``ml.sequence``, ``ml.sequence.stream``): the processor
    tracks each stream apart and reads a gap as spans lost. A span the app's sampler drops takes no number (it
    would read as lost).

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> numbers = SpanSequence(TracerProvider().get_tracer("app"))
    >>> attrs = {}; numbers.number_at_start(attrs, 3), attrs["ml.sequence"], numbers.take(1)
    (False, 0, 3)
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self.stream = random.SystemRandom().getrandbits(63) or 1
        self._tracer = tracer
        self._next = 0
        self._lock = threading.Lock()
        self._facts_of: object = None
        self._facts: tuple[tuple[bool, bool, bool, bool, bool] | None, int] = (None, 128)

    def take(self, rows: int) -> int:
        """The next ``rows`` numbers; the first of them."""
        with self._lock:
            seq = self._next
            self._next = seq + rows
        return seq

    def number(self, span: trace.Span, rows: int) -> None:
        """Number a started span, if it is recorded."""
        if span.is_recording():
            span.set_attributes({semconv.SEQUENCE: self.take(rows), semconv.SEQUENCE_STREAM: self.stream})

    def number_at_start(self, attrs: dict[str, Any], rows: int) -> bool:
        """Put the number of a span about to start into its ``attrs`` when the sampler's decision is known
        beforehand (``will_record``): set_attributes after the start cost ~2.9 us of ``record``'s ~4.5 us overhead
        on a bare span (docs/benchmarks.md). True when it is not known: ``number`` the span once started."""
        will_record = self.will_record()
        if will_record:
            attrs[semconv.SEQUENCE] = self.take(rows)
            attrs[semconv.SEQUENCE_STREAM] = self.stream
        return will_record is None

    def will_record(self) -> bool | None:
        """Whether a span started now will be recorded, when the sampler decides from the parent alone (the SDK's
        default), else None."""
        decisions = self.facts()[0]
        if decisions is None:
            return None
        parent = trace.get_current_span().get_span_context()
        if not parent.is_valid:
            return decisions[0]
        return decisions[(1 if parent.is_remote else 3) + (0 if parent.trace_flags.sampled else 1)]

    def facts(self) -> tuple[tuple[bool, bool, bool, bool, bool] | None, int]:
        """The sampler's decisions (``sampler_decisions``) and the span attribute limit of the SDK behind the
        tracer, read once per SDK tracer: reading them at every record cost a tenth of its overhead."""
        sdk_tracer = getattr(self._tracer, "_real_tracer", None) or self._tracer
        if sdk_tracer is not self._facts_of:  # a ProxyTracer gets its SDK tracer when the app sets a provider
            self._facts = (sampler_decisions(sdk_tracer), span_attribute_limit(sdk_tracer))
            # Without an SDK (a ProxyTracer before the app sets a provider), read again each time.
            self._facts_of = sdk_tracer if hasattr(sdk_tracer, "sampler") else None
        return self._facts


def _outputs(prediction: Any, score: Any, prediction_id: Any, probability: Any, attributions: Any,
             drop: Callable[..., None]) -> list[tuple[str, Any]]:
    """``record``'s outputs as (attribute, value) pairs, probabilities and attributions only when given: most calls
    pass a prediction alone, and building the pairs of all of them cost a tenth of record()'s overhead on a bare
    span."""
    outputs = [(semconv.PREDICTION, prediction), (semconv.PREDICTION_SCORE, score),
               (semconv.PREDICTION_ID, prediction_id)]
    if probability is not None:
        outputs += probability_columns(probability).items()
    if attributions is not None:
        outputs += attribution_columns(attributions, drop).items()
    return outputs


def _warn_attribute_limit(model: str, features: list[str], limit: int, over: int) -> None:
    log.warning("otel-ml: %s: %d features, but the TracerProvider keeps %d attributes per span; %d features are left "
                "out of every record (the first: %s). Raise the limit in the serving process: "
                "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=%d (or SpanLimits(max_span_attributes=...))",
                model, len(features), limit, over, features[len(features) - over][11:], len(features) + 16)


class _PendingRows:
    """The rows ``record`` collected with ``batch_rows`` until a batch span takes them, and the thread that
    flushes them every ``batch_seconds`` (started with the first row)."""

    def __init__(self) -> None:
        self.rows: list[_Row] = []
        self.lock = threading.Lock()
        self.flusher: threading.Thread | None = None

    def add(self, row: _Row, monitor: ModelMonitor) -> bool:
        """Keep ``row``; True when a batch is full."""
        with self.lock:
            self.rows.append(row)
            if self.flusher is None:
                self.flusher = threading.Thread(target=_flush_every, args=(weakref.ref(monitor), monitor.batch_seconds),
                                                name=f"otel-ml-batch-{monitor.model_name}", daemon=True)
                self.flusher.start()
            return len(self.rows) >= monitor.batch_rows

    def __len__(self) -> int:
        return len(self.rows)

    def take(self) -> list[_Row]:
        with self.lock:
            rows, self.rows = self.rows, []
        return rows


class ModelMonitor:
    """One per served model: records predictions as spans.

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> spans = InMemorySpanExporter(); provider = TracerProvider()
    >>> provider.add_span_processor(SimpleSpanProcessor(spans))
    >>> monitor = ModelMonitor("churn", "3", tracer_provider=provider)
    >>> with monitor.predict({"age": 42, "plan": "pro", "bad": object()}) as p:
    ...     p.set_prediction(0.83)
    >>> attrs = spans.get_finished_spans()[0].attributes
    >>> attrs["ml.feature.age"], attrs["ml.prediction"], monitor.dropped_values
    (42, 0.83, 1)
    """

    def __init__(
        self,
        model_name: str,
        model_version: str = "",
        *,
        tracer_provider: trace.TracerProvider | None = None,
        sampling_ratio: float = 1.0,
        span_name: str = SPAN_NAME,
        meter_provider: metrics.MeterProvider | None = None,
        batch_rows: int = 0,
        batch_seconds: float = 1.0,
    ) -> None:
        if not 0.0 < sampling_ratio <= 1.0:
            raise ValueError("sampling_ratio must be in (0, 1]")
        if batch_rows < 0 or not batch_seconds > 0:
            raise ValueError("batch_rows must be >= 0 and batch_seconds > 0")
        self.model_name = model_name
        self.model_version = model_version
        self.sampling_ratio = sampling_ratio
        self.span_name = span_name
        self.dropped_values = 0
        """Feature or prediction values that could not be recorded; by reason in ``dropped_by_reason`` and in the
        app's metrics (``otel_ml.client.values.dropped{reason}``, through ``meter_provider`` or the global one)."""
        self.dropped_by_reason: Counter[str] = Counter()
        self._warned_limit = False
        self._dropped_counter = metrics.get_meter("otel_ml.instrument", meter_provider=meter_provider).create_counter(
            semconv.METRIC_CLIENT_VALUES_DROPPED, unit="{value}",
            description="Feature or prediction values the otel-ml instrumentation could not record, by reason")
        self._tracer = trace.get_tracer("otel_ml.instrument", tracer_provider=tracer_provider)
        self._base: dict[str, Any] = {semconv.MODEL_NAME: model_name}
        if model_version:
            self._base[semconv.MODEL_VERSION] = model_version
        if sampling_ratio < 1.0:
            self._base[semconv.SAMPLING_RATIO] = sampling_ratio
        self._random = random.Random()
        self._keys: dict[Any, str] = {}
        self._sequence = SpanSequence(self._tracer)
        self.batch_rows = batch_rows
        """0: ``record`` emits one span per prediction. N: ``record`` collects predictions and emits one batch span
        per N of them, or after ``batch_seconds``, whichever comes first (and at ``flush``/exit)."""
        self.batch_seconds = batch_seconds
        self._pending = _PendingRows()
        if batch_rows:
            atexit.register(_flush_at_exit, weakref.ref(self))  # before the SDK's own exit handler exports
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    def _restart_after_fork(self) -> None:
        """A forked worker (gunicorn, multiprocessing) is a new sender: a stream of its own (two processes on one
        stream would overlap and hide each other's losses), nothing of the parent's pending rows (the parent
        sends those), and its own flush thread when it records."""
        self._sequence = SpanSequence(self._tracer)
        self._pending = _PendingRows()
        self._random = random.Random()

    # --- helpers -------------------------------------------------------------------------------
    def _drop(self, key: str, why: object, reason: str | None = None) -> None:
        """Count a value (or a batch) that could not be recorded; the first of each reason is logged, then every
        10,000th drop."""
        reason = reason or _reason_of(why)
        self.dropped_values += 1
        self.dropped_by_reason[reason] += 1
        attrs = {semconv.MODEL_NAME: self.model_name, semconv.MODEL_VERSION: self.model_version,
                 semconv.ATTR_REASON: reason}
        self._dropped_counter.add(1, attrs)
        if self.dropped_by_reason[reason] == 1 or self.dropped_values % 10_000 == 0:
            log.warning("otel-ml: %s: dropped a value of %s (%s: %s); %d dropped so far (%s)", self.model_name, key,
                        reason, why, self.dropped_values, dict(self.dropped_by_reason))

    def _checked(self, key: str, value: Any) -> Scalar | None:
        """The attribute value for ``value``, or None (missing, or unusable: dropped and counted)."""
        try:
            return _scalar(value)
        except Exception as e:  # never raise into serving code
            self._drop(key, e)
            return None

    def _set(self, span: trace.Span, key: str, value: Any) -> None:
        v = self._checked(key, value)
        if v is not None:
            span.set_attribute(key, v)

    def _feature_key(self, name: Any) -> str | None:
        """``ml.feature.<name>``, or None for a name the processor would reject (the value is dropped and
        counted: a feature named like the model output would merge with it)."""
        key = self._keys.get(name)
        if key is None:
            key = semconv.FEATURE_PREFIX + str(name)
            if semconv.is_reserved_feature(str(name)):
                self._drop(key, "it would merge with the model output; rename the feature", "reserved_name")
                return None
            self._keys[name] = key
        return key

    def _fit(self, attrs: dict[str, Any], later: int) -> dict[str, Any]:
        """``attrs`` with features left out so that they and ``later`` attributes set afterwards stay within the
        SDK's span attribute limit. The SDK evicts a span's *oldest* attributes first, i.e. the model's identity:
        the whole span would be lost (``model_name_missing`` at the processor). The last features are left out,
        counted (``attribute_limit``) and named once in a warning."""
        limit = self._sequence.facts()[1]
        if len(attrs) + later <= limit:
            return attrs
        features = [k for k in attrs if k.startswith(semconv.FEATURE_PREFIX)]
        over = min(len(features), len(attrs) + later - limit)
        for key in features[len(features) - over:]:
            del attrs[key]
        self.dropped_values += over
        self.dropped_by_reason["attribute_limit"] += over
        self._dropped_counter.add(over, {semconv.MODEL_NAME: self.model_name,
                                         semconv.MODEL_VERSION: self.model_version,
                                         semconv.ATTR_REASON: "attribute_limit"})
        if not self._warned_limit:
            self._warned_limit = True
            _warn_attribute_limit(self.model_name, features, limit, over)
        return attrs

    def _attributes(self, features: Mapping[str, Any] | None) -> dict[str, Any]:
        return self._fit(self._attributes_of(features), _LATER_SINGLE)

    def _attributes_of(self, features: Mapping[str, Any] | None) -> dict[str, Any]:
        attrs = dict(self._base)
        if features:
            try:
                items = list(features.items())
            except Exception as e:
                self._drop("features", e, "unreadable_features")
                return attrs
            keys = self._keys
            for name, value in items:
                key = keys.get(name) or self._feature_key(name)  # the dict first: a call per feature costs 5%
                if key is None:
                    continue
                t = type(value)
                # Fast path for plain values (the serving path runs this for every prediction).
                if t is float:
                    if value == value:  # not NaN
                        attrs[key] = value
                    continue
                if t is int or t is bool or (t is str and value):
                    attrs[key] = value
                    continue
                v = self._checked(key, value)
                if v is not None:
                    attrs[key] = v
        return attrs

    def _sampled(self) -> bool:
        return self.sampling_ratio >= 1.0 or self._random.random() < self.sampling_ratio

    # --- one prediction ------------------------------------------------------------------------
    @contextmanager
    def predict(self, features: Mapping[str, Any] | None = None,
                prediction_id: str | bool | None = None) -> Iterator[PredictionRecord]:
        """Context manager around one model call; the span's duration is the call's latency and an
        exception marks the span as an error (and still propagates). ``prediction_id``: the id a later
        ``record_ground_truth`` names (``True``: generate one, read it from the record's ``prediction_id``)."""
        pid = uuid.uuid4().hex if prediction_id is True else (prediction_id or None)
        if not self._sampled():
            rec = _NotSampled(self, trace.INVALID_SPAN)
            rec.prediction_id = pid if isinstance(pid, str) else None
            yield rec
            return
        with self._tracer.start_as_current_span(self.span_name, attributes=self._attributes(features)) as span:
            rec = PredictionRecord(self, span)
            if isinstance(pid, str):
                rec.prediction_id = pid
                self._set(span, semconv.PREDICTION_ID, pid)
            try:
                yield rec
            finally:
                self._sequence.number(span, 1)

    def record_ground_truth(self, prediction_id: str, value: Any, model_version: str | None = None,
                            timestamp: Any = None) -> None:
        """The true outcome of the prediction ``prediction_id`` (recorded earlier, by any process): a zero-length
        span with ``ml.ground_truth``, at ``timestamp`` (when the outcome became known: a datetime, ISO 8601
        text or Unix seconds; default now). Never sampled: the processor counts labels of unrecorded
        predictions as ``unknown``."""
        self.record_ground_truth_batch([prediction_id], [value], model_version,
                                       None if timestamp is None else [timestamp])

    def record_ground_truth_batch(self, prediction_ids: Sequence[str], values: Sequence[Any],
                                  model_version: str | None = None, timestamps: Sequence[Any] | None = None) -> None:
        """Many labels at once: one span with ``ml.batch.size`` arrays per distinct time in ``timestamps`` (when
        each outcome became known, as in ``record_ground_truth``; default now), earliest first."""
        try:
            if len(prediction_ids) != len(values):
                raise ValueError(f"{len(prediction_ids)} ids but {len(values)} values")
            version = self.model_version if model_version is None else model_version
            for at, rows in _by_time(_row_times(timestamps, len(values))):
                attrs = _ground_truth_attributes(self.model_name, version, [prediction_ids[i] for i in rows],
                                                 [values[i] for i in rows])
                self._emit(attrs, at, name=f"{self.span_name} ground truth")
        except Exception as e:  # never raise into serving code
            self._drop(semconv.GROUND_TRUTH, e)

    def _emit(self, attrs: dict[str, Any], at: int | None, rows: int | None = None, name: str | None = None) -> None:
        """A zero-length span (when, not how long) at ``at`` (Unix ns; None: now); ``rows``: its sequence place."""
        at = time.time_ns() if at is None else at
        after = rows is not None and self._sequence.number_at_start(attrs, rows)
        span = self._tracer.start_span(name or self.span_name, attributes=attrs, start_time=at)
        if after:
            self._sequence.number(span, rows)  # type: ignore[arg-type]
        span.end(end_time=at)

    def record(self, features: Mapping[str, Any], prediction: Any = None, score: float | None = None,
               prediction_id: str | None = None, probability: float | None = None, timestamp: Any = None,
               embedding: Sequence[float] | None = None, attributions: Mapping[str, float] | None = None) -> None:
        """Record a prediction that already happened: a zero-length span (it says when, not how long), or a row
        of the next batch span with ``batch_rows``. ``timestamp``: when it happened (a datetime, naive ones UTC;
        ISO 8601 text; Unix seconds), for a backfill; default now. ``embedding``: the input's ``ml.embedding``.
        ``attributions``: feature → this prediction's attribution to it (``ml.attribution.<feature>``, e.g. SHAP)."""
        if not self._sampled():
            return
        try:
            at = None if timestamp is None else event_time_ns(timestamp)
        except (TypeError, ValueError, OverflowError) as e:  # never raise into serving code
            self._drop("timestamp", e, "invalid_timestamp")
            return
        if self.batch_rows:  # a row of the next batch span
            try:
                row = dict(features)
            except Exception as e:
                self._drop("features", e, "unreadable_features")
                return
            attributed = attribution_columns(attributions, self._drop) or None
            if self._pending.add((row, prediction, score, prediction_id, probability, at, embedding, attributed), self):
                self.flush()
            return
        attrs = self._attributes(features)
        for key, value in _outputs(prediction, score, prediction_id, probability, attributions, self._drop):
            if value is not None:
                t = type(value)
                if (t is float and value == value) or t is int or t is bool or (t is str and value):  # plain values
                    attrs[key] = value
                elif (v := self._checked(key, value)) is not None:
                    attrs[key] = v
        if embedding is not None:
            _add_embedding(attrs, [embedding], self._drop)
        self._emit(attrs, at, 1)

    # --- record() with batch_rows: predictions collected into batch spans ----------------------------
    def flush(self) -> None:
        """Emit what ``record`` collected (with ``batch_rows``) now: a batch span per event time. Called by a background
        thread every ``batch_seconds`` and at interpreter exit; call it before shutting the TracerProvider down."""
        pending = self._pending.take()
        for at, indexes in _by_time([r[5] for r in pending]):  # one span per event time (a backfill has many)
            self._flush_rows([pending[i] for i in indexes], at)

    def _flush_rows(self, rows: list[_Row], at: int | None) -> None:
        try:
            names: dict[Any, None] = {}
            for features, *_ in rows:
                names.update(dict.fromkeys(features))
            columns: dict[str, Sequence[Any]] = {}
            for name in names:
                key = self._feature_key(name)
                if key is not None:
                    columns[key] = [features.get(name) for features, *_ in rows]
            for key, index in ((semconv.PREDICTION, 1), (semconv.PREDICTION_SCORE, 2), (semconv.PREDICTION_ID, 3)):
                if any(r[index] is not None for r in rows):
                    columns[key] = [r[index] for r in rows]
            if any(r[4] is not None for r in rows):
                columns.update(probability_columns([r[4] for r in rows]))
            if any(r[6] is not None for r in rows):
                columns[semconv.EMBEDDING] = [r[6] for r in rows]
            attributed = dict.fromkeys(key for r in rows for key in (r[7] or {}))  # ml.attribution.<feature>
            columns.update({key: [(r[7] or {}).get(key) for r in rows] for key in attributed})
            # Rows were sampled when recorded; a zero-length span at their time (else the flush's): no latency.
            attrs = self._batch_attributes(columns, sample=False)
            if attrs is not None:
                self._emit(attrs, at, attrs[semconv.BATCH_SIZE])
        except Exception as e:  # never raise into serving code
            self._drop("batch", e)

    def trace(self, fn: F) -> F:
        """Decorator for ``fn(features: Mapping, ...) -> prediction``: records the features (first
        argument) and a scalar return value as the prediction."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            features = args[0] if args and isinstance(args[0], Mapping) else kwargs.get("features")
            with self.predict(features if isinstance(features, Mapping) else None) as p:
                result = fn(*args, **kwargs)
                p.set_prediction(result)
                return result

        return wrapper  # type: ignore[return-value]

    # --- many predictions in one span -------------------------------------------------------------
    def record_batch(
        self,
        features: Mapping[str, Sequence[Any]],
        predictions: Sequence[Any] | None = None,
        scores: Sequence[float] | None = None,
        prediction_ids: Sequence[str] | None = None,
        probabilities: Sequence[float] | None = None,
        timestamps: Sequence[Any] | None = None,
        embeddings: Sequence[Sequence[float]] | None = None,
        segments: Mapping[str, Sequence[Any]] | None = None,
        attributions: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        """Record N predictions as one span: every column becomes an array attribute of length N and
        ``ml.batch.size`` = N. With sampling, each row is kept with probability ``sampling_ratio``.
        ``prediction_ids`` let ``record_ground_truth_batch`` name them later; ``probabilities``: of the positive
        class (binary classifiers), or a mapping class → column (multiclass). ``timestamps``: when each
        prediction was made (as in ``record``), for a backfill: one zero-length span per distinct time, earliest
        first (round them, e.g. to the second, to keep spans few; the processor's windows are far wider).
        ``embeddings``: one vector per row, N × d (``ml.embedding``, flattened, and ``ml.embedding.dimension``).
        ``segments``: key → one value per row, each row's segment (``ml.segment.<key>``), e.g. ``{"tier": [...]}``.
        ``attributions``: feature → each row's attribution to it (``ml.attribution.<feature>``, e.g. SHAP values)."""
        try:
            columns: dict[str, Sequence[Any]] = {}
            for name, values in features.items():
                key = self._feature_key(name)
                if key is not None:
                    columns[key] = values
            if predictions is not None:
                columns[semconv.PREDICTION] = predictions
            if scores is not None:
                columns[semconv.PREDICTION_SCORE] = scores
            if prediction_ids is not None:
                columns[semconv.PREDICTION_ID] = [str(i) for i in prediction_ids]
            if probabilities is not None:
                columns.update(probability_columns(probabilities))
            if embeddings is not None:
                columns[semconv.EMBEDDING] = list(embeddings)
            columns.update({semconv.SEGMENT_PREFIX + str(k): v for k, v in (segments or {}).items()})
            columns.update(attribution_columns(attributions, self._drop))
            if timestamps is None:
                self._record_columns(columns)
                return
            lists = {k: (v.tolist() if hasattr(v, "tolist") else list(v)) for k, v in columns.items()}
            n = len(next(iter(lists.values()), timestamps))
            for at, rows in _by_time(_row_times(timestamps, n)):
                self._record_columns({k: [v[i] for i in rows] if len(v) == n else v for k, v in lists.items()}, at)
        except Exception as e:  # never raise into serving code
            self._drop("batch", e)

    def _record_columns(self, columns: dict[str, Sequence[Any]], at: int | None = None) -> None:
        attrs = self._batch_attributes(columns)
        if attrs is not None:
            self._emit(attrs, at, attrs[semconv.BATCH_SIZE])

    def _batch_attributes(self, columns: dict[str, Sequence[Any]], sample: bool = True) -> dict[str, Any] | None:
        """The attributes of a batch span for ``columns`` (rows sampled unless ``sample`` is False), or None when
        no row is kept."""
        lists = {k: (v.tolist() if hasattr(v, "tolist") else list(v)) for k, v in columns.items()}
        lengths = {len(v) for v in lists.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns differ in length: {sorted(lengths)}")
        n = lengths.pop()
        if sample and self.sampling_ratio < 1.0:
            keep = [i for i in range(n) if self._random.random() < self.sampling_ratio]
            lists = {k: [v[i] for i in keep] for k, v in lists.items()}
            n = len(keep)
        if n == 0:
            return None
        attrs = dict(self._base)
        attrs[semconv.BATCH_SIZE] = n
        vectors = lists.pop(semconv.EMBEDDING, None)
        for key, values in lists.items():
            try:
                attrs[key] = _column(values)
            except Exception as e:
                self._drop(key, e)
        if vectors is not None:
            _add_embedding(attrs, vectors, self._drop)
        return self._fit(attrs, 2)  # ml.sequence and its stream come later

    def wrap(self, model: Any, feature_names: Sequence[str] | None = None,
             prediction_id: str | Callable[[Any], Sequence[Any]] | None = None,
             explainer: Any = None, explain_ratio: float = 1.0) -> MonitoredModel:
        """Wrap a scikit-learn-style model: ``predict``/``predict_proba`` record a batch span per call.
        ``prediction_id`` names each prediction for ``record_ground_truth``: a column of DataFrame inputs (taken
        out before the model sees them), or a callable from the input to one id per row. ``explainer``: called on
        each input for its rows' attributions (``ml.attribution.<feature>``; ``explained``), e.g. a
        ``shap.TreeExplainer(model)``. The span ends when the model answered: explaining is not in its latency, but it
        runs in the caller's thread (TreeExplainer: ~17× a LightGBM predict_proba), so ``explain_ratio`` < 1 explains
        only that share of the calls, at random (the importance is a mean over the rows that have attributions)."""
        return MonitoredModel(model, self, feature_names, prediction_id, explainer, explain_ratio)


class MonitoredModel:
    """A model whose ``predict``/``predict_proba`` calls are recorded, one batch span per call, the span around
    the call (its duration is the model's time; an exception is recorded as an ERROR span and raised again).
    Everything else passes through to the model.

    Each prediction is counted once: ``predict_proba`` right after ``predict`` on the same input object (or the
    reverse) records nothing more. Column names come from ``feature_names``, a DataFrame's columns or the model's
    ``feature_names_in_``; names that do not match the input's width are refused (ValueError when wrapping, an
    error log and a dropped batch when called). Picklable: the monitor is rebuilt on load (global TracerProvider).

    With ``prediction_id`` (a column name, or a callable from the input to one id per row), each recorded row
    carries its id, so that labels sent later (``record_ground_truth_batch``, ``otel-ml labels send``) join it:

    >>> import pandas as pd
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> class Doubler:
    ...     def predict(self, X):
    ...         assert list(X.columns) == ["x"]  # the id column never reaches the model
    ...         return (X["x"] * 2).tolist()
    >>> spans = InMemorySpanExporter(); provider = TracerProvider()
    >>> provider.add_span_processor(SimpleSpanProcessor(spans))
    >>> model = ModelMonitor("m", tracer_provider=provider).wrap(Doubler(), prediction_id="request_id")
    >>> model.predict(pd.DataFrame({"request_id": ["a", "b"], "x": [1.0, 2.0]}))
    [2.0, 4.0]
    >>> spans.get_finished_spans()[0].attributes["ml.prediction.id"]
    ('a', 'b')
    """

    def __init__(self, model: Any, monitor: ModelMonitor, feature_names: Sequence[str] | None = None,
                 prediction_id: str | Callable[[Any], Sequence[Any]] | None = None, explainer: Any = None,
                 explain_ratio: float = 1.0) -> None:
        if isinstance(explain_ratio, bool) or not isinstance(explain_ratio, (int, float)) or \
                not 0 < explain_ratio <= 1:
            raise ValueError(f"explain_ratio must be a number in (0, 1], got {explain_ratio!r}")
        self._model = model
        self._monitor = monitor
        self._prediction_id = prediction_id
        self._explainer = explainer
        self._explain_ratio = explain_ratio
        self._feature_names = list(feature_names) if feature_names is not None else None
        expected = getattr(model, "n_features_in_", None)
        if self._feature_names is not None and expected is not None and len(self._feature_names) != expected:
            raise ValueError(f"feature_names has {len(self._feature_names)} names, the model takes {expected} "
                             "features")
        self._last = threading.local()
        self._warned: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_model", "_monitor", "_feature_names", "_last", "_warned",
                                             "_prediction_id", "_explainer", "_explain_ratio"):
            raise AttributeError(name)  # not set yet (unpickling): never look these up on the model
        return getattr(self._model, name)

    def __getstate__(self) -> dict[str, Any]:
        m = self._monitor
        return {"model": self._model, "feature_names": self._feature_names, "prediction_id": self._prediction_id,
                "explainer": self._explainer, "explain_ratio": self._explain_ratio,
                "monitor": (m.model_name, m.model_version, m.sampling_ratio, m.span_name)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        name, version, ratio, span_name = state["monitor"]
        self.__init__(state["model"], ModelMonitor(name, version, sampling_ratio=ratio, span_name=span_name),
                      state["feature_names"], state.get("prediction_id"), state.get("explainer"),
                      state.get("explain_ratio", 1.0))

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _features(self, X: Any) -> dict[str, Sequence[Any]] | None:
        if hasattr(X, "columns"):  # a DataFrame
            return {str(c): X[c].tolist() for c in X.columns}
        rows = X.tolist() if hasattr(X, "tolist") else [list(r) for r in X]
        width = len(rows[0]) if rows else 0
        names = self._feature_names or [str(n) for n in getattr(self._model, "feature_names_in_", [])]
        if not names:
            self._warn_once("unnamed", "otel-ml: %s inputs have no column names: recorded as x0..x%d; pass "
                            "feature_names= to wrap() so they match your baseline", self._monitor.model_name, width - 1)
            names = [f"x{i}" for i in range(width)]
        if len(names) != width:
            if "width" not in self._warned:
                self._warned.add("width")
                log.error("otel-ml: %s: %d feature names for inputs of %d columns: batches are not recorded "
                          "(counted in dropped_values) until feature_names= matches", self._monitor.model_name,
                          len(names), width)
            return None
        return {name: [r[i] for r in rows] for i, name in enumerate(names)}

    def _call(self, method: str, X: Any, args: tuple, kwargs: dict,
              outputs: Callable[[Any], tuple[dict[str, Sequence[Any]], list[int] | None]]) -> Any:
        previous = getattr(self._last, "call", None)
        if previous is not None and previous[0] is X and previous[1] != method:  # the same predictions again
            self._last.call = None
            return getattr(self._model, method)(X, *args, **kwargs)
        self._last.call = (X, method)
        ids, X = self._ids(X)
        monitor = self._monitor
        span = monitor._tracer.start_span(monitor.span_name)  # before the call: the span times the model
        try:
            result = getattr(self._model, method)(X, *args, **kwargs)
        except Exception as e:
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(e).__name__))
            self._end(span, X, None, ids=ids)
            raise
        self._end(span, X, result, outputs, ids, time.time_ns())
        return result

    def _ids(self, X: Any) -> tuple[list[str] | None, Any]:
        """(one id per row or None, the input the model gets: without the id column)."""
        pid = self._prediction_id
        if pid is None:
            return None, X
        if callable(pid):
            try:
                return [str(i) for i in pid(X)], X
            except Exception as e:  # never raise into serving code: the rows go without ids
                self._monitor._drop("prediction_id", e, "prediction_id_unreadable")
                return None, X
        if not hasattr(X, "columns") or pid not in X.columns:
            self._warn_once("no_id_column", "otel-ml: %s: the input has no column %r (prediction_id): predictions "
                            "are recorded without ids", self._monitor.model_name, pid)
            return None, X
        return [str(i) for i in X[pid].tolist()], X.drop(columns=[pid])

    def _end(self, span: trace.Span, X: Any, result: Any,
             outputs: Callable[[Any], tuple[dict[str, Sequence[Any]], list[int] | None]] | None = None,
             ids: list[str] | None = None, answered_ns: int | None = None) -> None:
        """Set the batch's attributes on ``span`` and end it (at ``answered_ns``, when the model answered); a failure
        here drops the batch, never raises. ``outputs``: the model output's columns and each row's predicted class
        index (None: not a classifier's)."""
        try:
            columns: dict[str, Sequence[Any]] | None = None
            features = self._features(X)
            if features is None:
                self._monitor._drop("features", "feature names do not match the input", "feature_names_mismatch")
            else:
                columns = {self._monitor._feature_key(k) or "": v for k, v in features.items()}
                columns.pop("", None)
                if outputs is not None:
                    out, classes = outputs(result)
                    columns.update(out)
                    if self._explainer is not None and (self._explain_ratio >= 1 or
                                                        self._monitor._random.random() < self._explain_ratio):
                        columns.update(self._attributions(X, list(features), classes))
                if ids is not None:
                    columns[semconv.PREDICTION_ID] = ids
                attrs = self._monitor._batch_attributes(columns)
                if attrs is not None:
                    span.set_attributes(attrs)
                    self._monitor._sequence.number(span, attrs[semconv.BATCH_SIZE])
        except Exception as e:
            self._monitor._drop("batch", e)
        span.end(end_time=answered_ns)

    def _attributions(self, X: Any, names: list[str], classes: list[int] | None) -> dict[str, list[float]]:
        """The explainer's attributions as ``ml.attribution.*`` columns; none (dropped, counted) when it fails."""
        try:
            return attribution_columns(explained(self._explainer, X, names, classes))
        except Exception as e:  # never raise into serving code: the predictions go without attributions
            self._monitor._drop("attributions", e, "explainer_failed")
            return {}

    def _classes(self, labels: Sequence[Any]) -> list[Any]:
        """A classifier's (a model with ``classes_``) predicted labels as text: the processor then treats it as
        one (chi-squared on its outputs, accuracy and F1 with labels) instead of as a regressor of 0s and 1s.
        Whole numbers read as the labels sent for them will (``1``, not ``1.0``)."""
        if not hasattr(self._model, "classes_"):
            return list(labels)
        out = []
        for v in labels:
            v = v.item() if hasattr(v, "item") else v
            out.append(str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
        return out

    def _class_indexes(self, labels: Sequence[Any]) -> list[int] | None:
        """Each predicted label's index in the model's ``classes_`` (None: not a classifier's labels)."""
        classes = list(getattr(self._model, "classes_", []))
        try:
            return [classes.index(v) for v in labels] if classes else None
        except ValueError:
            return None

    def predict(self, X: Any, *args: Any, **kwargs: Any) -> Any:
        return self._call("predict", X, args, kwargs,
                          lambda y: ({semconv.PREDICTION: self._classes(list(y))}, self._class_indexes(list(y))))

    def predict_proba(self, X: Any, *args: Any, **kwargs: Any) -> Any:
        def outputs(proba: Any) -> tuple[dict[str, list], list[int]]:
            rows = proba.tolist() if hasattr(proba, "tolist") else [list(r) for r in proba]
            classes = list(getattr(self._model, "classes_", range(len(rows[0]) if rows else 0)))
            best = [max(range(len(r)), key=r.__getitem__) for r in rows]
            out = {semconv.PREDICTION: self._classes([classes[i] for i in best]),
                   semconv.PREDICTION_SCORE: [r[i] for r, i in zip(rows, best)]}
            if len(classes) == 2:  # binary: the positive class's probability, for label-free estimates (CBPE)
                out[semconv.PREDICTION_PROBABILITY] = [r[1] for r in rows]
            else:  # multiclass: each class's probability (multiclass ROC AUC, log loss and estimates)
                for j, name in enumerate(self._classes(classes)):
                    out[class_key(name)] = [r[j] for r in rows]
            return out, best

        return self._call("predict_proba", X, args, kwargs, outputs)


def _flush_every(monitor_ref: weakref.ref[ModelMonitor], seconds: float) -> None:
    """A monitor's background flush (``batch_rows``): holds it weakly, so a dropped monitor's thread ends."""
    while True:
        time.sleep(seconds)
        monitor = monitor_ref()
        if monitor is None:
            return
        monitor.flush()
        del monitor


def _flush_at_exit(monitor_ref: weakref.ref[ModelMonitor]) -> None:
    monitor = monitor_ref()
    if monitor is not None:
        monitor.flush()


def _after_fork(monitor_ref: weakref.ref[ModelMonitor]) -> None:
    monitor = monitor_ref()
    if monitor is not None:
        monitor._restart_after_fork()
