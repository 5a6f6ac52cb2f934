"""Backfill of past predictions from a file (``otel-ml replay``): a table's rows sent as OTLP batch spans at
their own times, and their labels as ground-truth spans at theirs, so last month shows in windows, the archive,
the pages and ``otel-ml report`` as if it had been monitored live.

The processor's event clock follows the data (never past when a request arrives), so everything is sent in time
order: rows are grouped by their time rounded down to ``resolution_s`` (a span carries one time; the processor's
windows are far wider than a second), one zero-length batch span per group of up to ``batch`` rows, and a
group's labels after its predictions. Like ``otel-ml labels send``, an OTLP/gRPC client: the processor answers
``partial_success`` for what it rejects, UNAVAILABLE (retried here, with backoff) when busy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from otel_ml import semconv
from otel_ml.instrument.labels import (
    _add_labels,
    _any_value,
    event_times,
    export_all,
    read_table,
    refusal_lines,
    require_columns,
)
from otel_ml.instrument.monitor import SPAN_NAME, _by_time, _column, class_key


@dataclass
class ReplayColumns:
    """Which column of the file is what. Features: ``features`` if given, else every column not named here
    and not in ``exclude``."""

    time: str
    prediction: str | None = None
    score: str | None = None
    probability: str | None = None
    prediction_id: str | None = None
    target: str | None = None
    """Ground truth, sent as labels of ``prediction_id`` (required with it)."""
    target_time: str | None = None
    """When each label became known; default: the prediction's time."""
    features: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    class_probability: dict[str, str] = field(default_factory=dict)
    """A multiclass model's class → the column of its probability (``ml.prediction.probability.<class>``)."""
    time_unit: str | None = None
    """What a numeric time column counts: s, ms, us or ns (None: guessed from its magnitude, and said)."""

    def outputs(self) -> dict[str, str | None]:
        return {semconv.PREDICTION: self.prediction, semconv.PREDICTION_SCORE: self.score,
                semconv.PREDICTION_PROBABILITY: self.probability, semconv.PREDICTION_ID: self.prediction_id,
                **{class_key(c): col for c, col in self.class_probability.items()}}


@dataclass
class Replay:
    """What a file holds, ready to send: ``requests`` (rows, serialized ExportTraceServiceRequest) in time
    order."""

    predictions: int
    labels: int
    first_ns: int
    last_ns: int
    features: list[str]
    requests: list[tuple[int, bytes]]
    notes: list[str] = field(default_factory=list)
    """What the command says besides its summary: rows refused with their place, the unit times were read in."""
    rows_refused: int = 0
    """Rows left out (a time that is empty or not one the processor takes)."""


def _array(span: Any, key: str, values: list[Any]) -> None:
    array = span.attributes.add(key=key).value.array_value
    for v in values:
        _any_value(v, array.values.add())


def capture_table(path: str, capture_format: str, mapping_path: str | None,
                  max_record_bytes: int | None = None) -> tuple[Any, ReplayColumns, Any]:
    """A platform's capture (instrument/capture.py) as a table, which of its columns is what, and the
    ``CaptureTable`` read (what was refused, repeated ids): the one reading ``replay`` and ``baseline build`` share."""
    import pyarrow as pa

    from otel_ml.instrument.capture import (
        ID_COLUMN,
        MAX_RECORD_BYTES,
        OUTPUT_NAMES,
        TIME_COLUMN,
        load_mapping,
        read_capture,
    )

    capture = read_capture(path, capture_format, load_mapping(mapping_path),
                           MAX_RECORD_BYTES if max_record_bytes is None else max_record_bytes)
    arrays = {}
    for name, values in capture.columns.items():
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # numbers and text in one column: its text
            arrays[name] = pa.array([None if v is None else _text(v) for v in values])
    present = {column: column if column in capture.columns else None for column in OUTPUT_NAMES.values()}
    return pa.table(arrays), ReplayColumns(
        time=TIME_COLUMN, prediction=present[semconv.PREDICTION_FEATURE],
        score=present[semconv.PREDICTION_SCORE_FEATURE], probability=present[semconv.PREDICTION_PROBABILITY_FEATURE],
        prediction_id=ID_COLUMN, time_unit="ns"), capture


def build_replay(path: str, model: str, version: str, columns: ReplayColumns, batch: int = 1000,
                 resolution_s: float = 1.0, max_request_span_s: float = 60.0, table: Any = None) -> Replay:
    """Read ``path`` (CSV or Parquet; or take ``table``, read from it) and build its requests; ValueError naming
    the file (and column, row) for what cannot be sent. A request holds up to ``batch`` rows whose times lie
    within ``max_request_span_s``: the processor moves its event clock to a request's newest span before it
    applies the request, so rows older than its horizon within one request would count as late."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    if batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    if not max_request_span_s >= 0:
        raise ValueError(f"--max-request-span must be >= 0 seconds, got {max_request_span_s}")
    max_span_ns = round(max_request_span_s * 1e9)
    if columns.target is not None and columns.prediction_id is None:
        raise ValueError("labels (--target-column) need the prediction ids they belong to (--id-column)")
    text = [c for c in (columns.prediction_id,) if c is not None]
    table = read_table(path, "predictions", text) if table is None else table
    named = [columns.time, *columns.outputs().values(), columns.target, columns.target_time]
    require_columns(path, table, [*named, *(columns.features or []), *columns.exclude])
    features = columns.features if columns.features is not None else [
        c for c in table.column_names if c not in named and c not in columns.exclude]
    if reserved := [f for f in features if semconv.is_reserved_feature(f)]:
        # The processor would reject every span (reserved_feature_name): say the fix before sending anything.
        fixes = {semconv.PREDICTION_FEATURE: "--prediction-column", semconv.PREDICTION_SCORE_FEATURE: "--score-column",
                 semconv.PREDICTION_PROBABILITY_FEATURE: "--probability-column",
                 semconv.PREDICTION_ID_COLUMN: "--id-column", semconv.GROUND_TRUTH_COLUMN: "--target-column"}
        raise ValueError(f"{path}: column(s) {', '.join(map(repr, reserved))} would be sent as features under a name "
                         "the model's outputs use (the processor rejects such spans: reserved_feature_name); pass "
                         + ", ".join(f"{fixes.get(r, '--exclude')} {r}" for r in reserved))
    if table.num_rows == 0:
        raise ValueError(f"{path}: no rows")
    notes: list[str] = []
    read = event_times(path, table.column(columns.time).to_pylist(), columns.time, resolution_s, columns.time_unit)
    if read.describe(columns.time):
        notes.append(read.describe(columns.time))
    refused = [*read.refused, *((k + 1, "empty") for k, t in enumerate(read.ns) if t is None
                                and k + 1 not in dict(read.refused))]
    if refused:  # one row's time never sinks the rest: those rows are left out, and said
        notes.append(refusal_lines(path, columns.time, sorted(refused)))
    kept = [k for k, t in enumerate(read.ns) if t is not None]
    if not kept:
        raise ValueError(f"{path}: no row has a usable time in column {columns.time!r}")
    if len(kept) < table.num_rows:
        table = table.take(kept)
    times = [t for t in read.ns if t is not None]
    data: dict[str, list[Any]] = {}
    for key, name in [*((semconv.FEATURE_PREFIX + f, f) for f in features),
                      *((k, c) for k, c in columns.outputs().items() if c is not None)]:
        values = table.column(name).to_pylist()
        if key == semconv.PREDICTION_ID:
            values = ["" if v is None else str(v) for v in values]
        try:
            data[key] = _column(values)
        except TypeError:  # numbers and text in one column: its text, which the processor reads by the kind
            data[key] = _column([None if v is None else _text(v) for v in values])
    # (time, 0 = predictions / 1 = labels, row indexes): labels after the predictions of their time.
    parts: list[tuple[int, int, list[int]]] = [(at, 0, rows) for at, rows in _by_time(times) if at is not None]
    labels = 0
    truth: list[Any] = []
    if columns.target is not None:
        truth = table.column(columns.target).to_pylist()
        ids = data[semconv.PREDICTION_ID]
        known_at: list[int | None] = list(times)
        if columns.target_time is not None:  # a row whose label time is empty has no label yet
            label_times = event_times(path, table.column(columns.target_time).to_pylist(), columns.target_time,
                                      resolution_s, columns.time_unit)
            known_at = label_times.ns
            if label_times.refused:
                notes.append(refusal_lines(path, columns.target_time, label_times.refused) + "\n  (their labels "
                             "are not sent)")
        labelled = [k for k, v in enumerate(truth) if v is not None and ids[k] != "" and known_at[k] is not None]
        labels = len(labelled)
        parts += [(at, 1, [labelled[i] for i in rows]) for at, rows in _by_time([known_at[k] for k in labelled])
                  if at is not None]
    parts.sort(key=lambda p: (p[0], p[1]))

    requests: list[tuple[int, bytes]] = []
    req, rows_in_req, first_at = ExportTraceServiceRequest(), 0, 0
    scope: Any = None

    def flush() -> None:
        nonlocal req, rows_in_req, scope
        if rows_in_req:
            requests.append((rows_in_req, req.SerializeToString()))
        req, rows_in_req, scope = ExportTraceServiceRequest(), 0, None

    for at, kind, rows in parts:
        if rows_in_req and at - first_at > max_span_ns:
            flush()
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            if not rows_in_req:
                first_at = at
            if scope is None:
                rs = req.resource_spans.add()
                rs.resource.attributes.add(key="service.name").value.string_value = "otel-ml-replay"
                scope = rs.scope_spans.add()
            span = scope.spans.add(name=SPAN_NAME if kind == 0 else f"{SPAN_NAME} ground truth",
                                   trace_id=os.urandom(16), span_id=os.urandom(8), start_time_unix_nano=at,
                                   end_time_unix_nano=at)
            if kind == 1:
                _add_labels(span.attributes, model, version, [data[semconv.PREDICTION_ID][k] for k in chunk],
                            [truth[k] for k in chunk])
            else:
                span.attributes.add(key=semconv.MODEL_NAME).value.string_value = model
                if version:
                    span.attributes.add(key=semconv.MODEL_VERSION).value.string_value = version
                span.attributes.add(key=semconv.BATCH_SIZE).value.int_value = len(chunk)
                for key, values in data.items():
                    _array(span, key, [values[k] for k in chunk])
            rows_in_req += len(chunk)
            if rows_in_req >= batch:
                flush()
    flush()
    return Replay(predictions=len(times), labels=labels, first_ns=min(times), last_ns=max(times),
                  features=features, requests=requests, notes=notes, rows_refused=len(refused))


def _text(value: Any) -> str:
    """A value of a column that mixes numbers and text, as text: a whole number without its ".0" (the processor's
    canonical category text; a numeric feature parses either)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def send_replay(endpoint: str, replay: Replay, attempts: int = 10,
                messages: list[str] | None = None) -> tuple[int, int]:
    """Send every request in order; (rows and labels accepted, spans rejected), the processor's reasons in
    ``messages``."""
    return export_all(endpoint, replay.requests, "traces", "predictions", attempts, messages)


def replay_summary(path: str, model: str, replay: Replay, endpoint: str, sent: int, rejected: int) -> str:
    import datetime as dt

    def day(ns: int) -> str:
        return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

    return (f"replayed {path}: {replay.predictions} prediction(s) from {day(replay.first_ns)} to "
            f"{day(replay.last_ns)}, {len(replay.features)} feature(s), {replay.labels} label(s) for model "
            f"{model!r} to {endpoint}: {sent} row(s) accepted" + (f"; rejected spans: {rejected}" if rejected else ""))
