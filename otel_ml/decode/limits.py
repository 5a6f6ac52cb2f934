"""What a decoded value may be: the limits one span (or ground-truth log record) must keep, and the rules for ids
and labels that both decoders, and the logs decoder, apply the same way."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from otel_ml import semconv


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on what one span may carry; over a limit the span is rejected with a reason. (The processor's
    further limits, on models kept and bytes in flight, are config.LimitsConfig.)"""

    max_batch_size: int = 100_000
    max_features_per_span: int = 2_000
    max_category_length: int = 256
    """Categorical values are truncated to this many characters before they are sketched."""
    max_name_length: int = 256
    """Longer model names, versions or feature names are rejected."""
    max_clock_skew_seconds: float = 3_600.0
    """Spans (and ground-truth log records) further than this ahead of the processor's clock are rejected
    (timestamp_in_future)."""
    max_id_length: int = 256
    """A longer ``ml.prediction.id`` is rejected (prediction_id_too_long): ids are compared whole, never cut."""
    max_embedding_dimension: int = 4_096
    """A longer ``ml.embedding`` vector is rejected (embedding_too_large)."""


NUMBER_LIMIT = 1e100
"""Numbers beyond ±this are counted invalid, like ±inf (their squares and differences overflow the sketches'
moments and grids); NaN is a missing value."""
ID_INT_LIMIT = 2**53
"""Integer ids beyond ±this are rejected (invalid_prediction_id): as numbers they would not stay distinct."""


def id_problem(v: AnyValue, max_length: int) -> tuple[str, str] | None:
    """Why one ``ml.prediction.id`` value is refused, as (reason, detail); None when it is usable (a string of at
    most ``max_length`` characters, "" meaning none, or an integer within ±2^53). Shared by spans and log records."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        if len(v.string_value) > max_length:
            return "prediction_id_too_long", (f"{semconv.PREDICTION_ID} of {len(v.string_value)} characters (limit "
                                              f"{max_length}; ids are compared whole)")
        return None
    if kind == "int_value":
        if abs(v.int_value) > ID_INT_LIMIT:
            return "invalid_prediction_id", f"integer {semconv.PREDICTION_ID} beyond ±2^53: send it as a string"
        return None
    if kind is None:
        return None
    return "invalid_prediction_id", f"{semconv.PREDICTION_ID} must be a string or an integer, got {kind}"


def truth_problem(v: AnyValue) -> tuple[str, str] | None:
    """Why one ``ml.ground_truth`` value is refused (a finite number within ±1e100, a non-empty string or a bool is
    a label; NaN, ±inf, "", bytes, arrays, maps and an empty value are not); None when it is usable."""
    kind = v.WhichOneof("value")
    if kind == "double_value" and abs(v.double_value) <= NUMBER_LIMIT:
        return None
    if kind in ("int_value", "bool_value") or (kind == "string_value" and v.string_value):
        return None
    shown = repr(v.double_value) if kind == "double_value" else '""' if kind == "string_value" else kind or "no value"
    return "invalid_ground_truth", (f"{semconv.GROUND_TRUTH} must be a finite number, a non-empty string or a bool, "
                                    f"got {shown}")


def probability_problem(name: str, v: AnyValue) -> tuple[str, str] | None:
    """Why one value of ``ml.prediction.probability`` (or ``.<class>``) is refused: a number outside [0, 1]
    (log loss and the estimates would take it as given); NaN is a missing value, other kinds are counted as a type
    mismatch like any feature's. None when it is usable."""
    kind = v.WhichOneof("value")
    x = v.double_value if kind == "double_value" else v.int_value if kind == "int_value" else None
    if x is None or x != x or 0 <= x <= 1:
        return None
    return "invalid_probability", f"ml.{name} must be within [0, 1], got {x!r}"
