"""Backfill of ground truth from a file (``otel-ml labels send``): an OTLP/gRPC client like any other.

Each OTLP log record (or, ``--as spans``, each span) carries ``ml.batch.size`` ids and labels; the processor
answers with ``partial_success`` for those it rejects, and UNAVAILABLE (retried here, with backoff) when it is
busy. Spans are what a sharded Collector (collector-config/sharded.yaml) routes by model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from otel_ml import semconv
from otel_ml.instrument.monitor import _by_time, event_time_ns


def read_table(path: str, what: str, text_columns: Sequence[str] = ()) -> Any:
    """A CSV or Parquet file as a pyarrow Table (``text_columns`` read as text: ids that look like numbers);
    ValueError naming the file when it cannot be read."""
    import pyarrow.csv as pc
    import pyarrow.parquet as pq

    try:
        if path.lower().endswith((".parquet", ".pq")):
            return pq.read_table(path)
        return pc.read_csv(path, convert_options=pc.ConvertOptions(column_types=dict.fromkeys(text_columns,
                                                                                             "string")))
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError; a missing file an OSError
        detail = str(e).split(". Detail:")[0].split("\n")[0]
        raise ValueError(f"{path}: cannot read {what}: {detail}") from e


def require_columns(path: str, table: Any, columns: Sequence[str | None]) -> None:
    for col in columns:
        if col is not None and col not in table.column_names:
            raise ValueError(f"{path}: no column {col!r}; columns are {', '.join(table.column_names)}")


def event_times(path: str, values: Sequence[Any], column: str, resolution_s: float = 1.0) -> list[int | None]:
    """Unix ns of each value of a time column (datetimes, ISO 8601 text, Unix seconds; None stays None),
    rounded down to ``resolution_s``: one span or log record carries one time, so rows of the same rounded time
    share it. ValueError naming the file, column and row of a value that is not a time."""
    if not resolution_s > 0:
        raise ValueError(f"--time-resolution must be > 0 seconds, got {resolution_s}")
    step = max(1, round(resolution_s * 1e9))
    out: list[int | None] = []
    for row, value in enumerate(values):
        try:
            out.append(None if value is None else event_time_ns(value) // step * step)
        except (TypeError, ValueError, OverflowError) as e:
            raise ValueError(f"{path}: row {row + 1} of column {column!r}: {value!r} is not a time ({e})") from None
    return out


def read_labels(path: str, id_column: str, label_column: str, time_column: str | None = None,
                resolution_s: float = 1.0) -> tuple[list[str], list[Any], list[int] | None]:
    """Ids (as text), labels (numbers, strings, bools) and, with ``time_column``, when each label became known
    (Unix ns, rounded down to ``resolution_s``) of rows with an id and a label, from a CSV or Parquet file."""
    table = read_table(path, "labels", [id_column])
    require_columns(path, table, [id_column, label_column, time_column])
    ids = table.column(id_column).to_pylist()
    labels = table.column(label_column).to_pylist()
    keep = [k for k, (i, v) in enumerate(zip(ids, labels)) if i is not None and str(i) != "" and v is not None]
    if time_column is None:
        return [str(ids[k]) for k in keep], [labels[k] for k in keep], None
    stamps = event_times(path, table.column(time_column).to_pylist(), time_column, resolution_s)
    missing = [k + 1 for k in keep if stamps[k] is None]
    if missing:
        raise ValueError(f"{path}: column {time_column!r} is empty in {len(missing)} row(s) with a label, "
                         f"e.g. row {missing[0]}")
    return [str(ids[k]) for k in keep], [labels[k] for k in keep], [stamps[k] or 0 for k in keep]


def _any_value(value: Any, out: Any) -> None:
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    else:
        out.string_value = str(value)


def _add_labels(attrs: Any, model: str, version: str, ids: Sequence[str], values: Sequence[Any]) -> None:
    """A batch of labels as attributes (of a log record or a span): model, version, ml.batch.size arrays."""
    attrs.add(key=semconv.MODEL_NAME).value.string_value = model
    if version:
        attrs.add(key=semconv.MODEL_VERSION).value.string_value = version
    attrs.add(key=semconv.BATCH_SIZE).value.int_value = len(ids)
    id_array = attrs.add(key=semconv.PREDICTION_ID).value.array_value
    for i in ids:
        id_array.values.add().string_value = i
    gt_array = attrs.add(key=semconv.GROUND_TRUTH).value.array_value
    for v in values:
        _any_value(v, gt_array.values.add())


def _chunks(n: int, times: Sequence[int] | None, batch: int) -> list[tuple[int, list[int]]]:
    """(time, row indexes) of each log record or span: rows of one time, at most ``batch`` of them, earliest
    first; without ``times`` every row is now."""
    now = time.time_ns()
    groups = _by_time(times) if times is not None else [(now, list(range(n)))]
    return [(at if at is not None else now, rows[k:k + batch]) for at, rows in groups for k in range(0, len(rows),
                                                                                                    batch)]


def labels_request(model: str, version: str, ids: Sequence[str], values: Sequence[Any], batch: int,
                   times: Sequence[int] | None = None) -> list[tuple[int, bytes]]:
    """(labels, ExportLogsServiceRequest serialized) of each log record of up to ``batch`` labels of one time
    (``times``: Unix ns per label; default now)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    out = []
    for at, rows in _chunks(len(ids), times, batch):
        req = ExportLogsServiceRequest()
        rl = req.resource_logs.add()
        rl.resource.attributes.add(key="service.name").value.string_value = "otel-ml-labels"
        rec = rl.scope_logs.add().log_records.add(time_unix_nano=at, observed_time_unix_nano=at)
        rec.attributes.add(key="event.name").value.string_value = semconv.GROUND_TRUTH_EVENT
        _add_labels(rec.attributes, model, version, [ids[i] for i in rows], [values[i] for i in rows])
        out.append((len(rows), req.SerializeToString()))
    return out


def label_spans_request(model: str, version: str, ids: Sequence[str], values: Sequence[Any],
                        batch: int, times: Sequence[int] | None = None) -> list[tuple[int, bytes]]:
    """(labels, ExportTraceServiceRequest serialized) of each span of up to ``batch`` labels of one time."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out = []
    for at, rows in _chunks(len(ids), times, batch):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = "otel-ml-labels"
        span = rs.scope_spans.add().spans.add(name="ground truth", trace_id=os.urandom(16), span_id=os.urandom(8),
                                              start_time_unix_nano=at, end_time_unix_nano=at)
        _add_labels(span.attributes, model, version, [ids[i] for i in rows], [values[i] for i in rows])
        out.append((len(rows), req.SerializeToString()))
    return out


def send_labels(endpoint: str, model: str, version: str, ids: Sequence[str], values: Sequence[Any],
                batch: int = 5000, attempts: int = 10, as_spans: bool = False,
                times: Sequence[int] | None = None) -> tuple[int, int]:
    """Send (``times``: Unix ns per label, when it became known; default now); returns (labels accepted by the
    processor, records or spans it rejected). Raises OSError naming the endpoint when it cannot be reached
    (after ``attempts`` tries with backoff for UNAVAILABLE)."""
    if batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    payloads = (label_spans_request if as_spans else labels_request)(model, version, ids, values, batch, times)
    return export_all(endpoint, payloads, "logs" if not as_spans else "traces", "labels", attempts)


def export_all(endpoint: str, payloads: Sequence[tuple[int, bytes]], signal: str, what: str,
               attempts: int = 10) -> tuple[int, int]:
    """Send each (rows, serialized OTLP request) in order over OTLP/gRPC, retrying UNAVAILABLE with backoff;
    returns (rows of the requests accepted whole, spans or log records rejected)."""
    import grpc
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    sent = rejected = 0
    with grpc.insecure_channel(endpoint) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=10)
        except grpc.FutureTimeoutError:
            raise OSError(f"cannot connect to {endpoint} within 10 s (is otel-ml serve or a Collector listening "
                          "there?)") from None
        if signal == "traces":
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                         response_deserializer=ExportTraceServiceResponse.FromString)
        else:
            export = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                                         response_deserializer=ExportLogsServiceResponse.FromString)
        for rows, payload in payloads:
            for attempt in range(attempts):
                try:
                    response = export(payload, timeout=30)
                    break
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts - 1:
                        raise OSError(f"cannot send {what} to {endpoint}: {e.code().name}: {e.details()}") from None
                    time.sleep(min(2 ** attempt * 0.2, 5))
            bad = (response.partial_success.rejected_spans if signal == "traces"
                   else response.partial_success.rejected_log_records)
            rejected += bad
            if not bad:
                sent += rows
    return sent, rejected
