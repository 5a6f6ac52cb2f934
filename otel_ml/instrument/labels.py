"""Backfill of ground truth from a file (``otel-ml labels send``): an OTLP/gRPC client like any other.

Each OTLP log record (or, ``--as spans``, each span) carries ``ml.batch.size`` ids and labels; the processor
answers with ``partial_success`` for those it rejects, and UNAVAILABLE (retried here, with backoff) when it is
busy. Spans are what a sharded Collector (collector-config/sharded.yaml) routes by model.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_ml import semconv
from otel_ml.instrument.monitor import _by_time, event_time_ns
from otel_ml.instrument.times import UNIT_NAMES, UNITS, check_event_time, guess_unit


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


@dataclass
class EventTimes:
    """A time column read by the one rule (instrument/times.py): Unix ns per row (None: empty, or refused), the
    unit its numbers were read in, and the rows refused with why."""

    ns: list[int | None]
    unit: str | None
    guessed: bool
    refused: list[tuple[int, str]] = field(default_factory=list)
    """(row number from 1, why) of each value that is not a time the processor would take."""

    def describe(self, column: str) -> str:
        """The unit guessed for numeric times, for the command's output ("" when given, or not numbers)."""
        if self.unit is None or not self.guessed:
            return ""
        return f"column {column!r}: Unix {UNIT_NAMES[self.unit]} (from its magnitude; --time-unit to say otherwise)"


def event_times(path: str, values: Sequence[Any], column: str, resolution_s: float = 1.0,
                unit: str | None = None) -> EventTimes:
    """Unix ns of each value of a time column (datetimes, ISO 8601 text, numbers in ``unit``: s, ms, us or ns,
    guessed from their magnitude when None), rounded down to ``resolution_s``: one span or log record carries one
    time, so rows of the same rounded time share it. A value that is not a time, or one the processor would refuse
    (before 1970, more than an hour ahead), is refused with its row: the others are read."""
    if not resolution_s > 0:
        raise ValueError(f"--time-resolution must be > 0 seconds, got {resolution_s}")
    if unit is not None and unit not in UNITS:
        raise ValueError(f"--time-unit {unit!r}: one of {', '.join(UNITS)}")
    chosen = unit or guess_unit(values)
    scale = UNITS[chosen or "s"]
    step = max(1, round(resolution_s * 1e9))
    out = EventTimes([], chosen, unit is None and chosen is not None)
    for row, value in enumerate(values):
        try:
            if value is None:
                out.ns.append(None)
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value):
                    raise ValueError(f"{value} is not a time")
                ns = int(value) * scale if isinstance(value, int) else round(value * scale)
            else:
                ns = event_time_ns(value)
            out.ns.append(check_event_time(ns) // step * step)
        except (TypeError, ValueError, OverflowError) as e:
            out.ns.append(None)
            out.refused.append((row + 1, f"{value!r} is not a time the processor takes ({e})"))
    return out


def refusal_lines(path: str, column: str, refused: Sequence[tuple[int, str]], examples: int = 5) -> str:
    """One line saying how many rows were refused, then up to ``examples`` of them with their row."""
    return (f"{path}: {len(refused)} row(s) refused by column {column!r}:\n"
            + "\n".join(f"  {path}: row {row}: {why}" for row, why in refused[:examples]))


def read_labels(path: str, id_column: str, label_column: str, time_column: str | None = None,
                resolution_s: float = 1.0, time_unit: str | None = None,
                notes: list[str] | None = None) -> tuple[list[str], list[Any], list[int] | None]:
    """Ids (as text), labels (numbers, strings, bools) and, with ``time_column``, when each label became known
    (Unix ns, rounded down to ``resolution_s``) of rows with an id and a label, from a CSV or Parquet file. A row
    whose time is empty or refused is left out, and said in ``notes`` (with the unit the times were read in)."""
    notes = notes if notes is not None else []
    table = read_table(path, "labels", [id_column])
    require_columns(path, table, [id_column, label_column, time_column])
    ids = table.column(id_column).to_pylist()
    labels = table.column(label_column).to_pylist()
    keep = [k for k, (i, v) in enumerate(zip(ids, labels)) if i is not None and str(i) != "" and v is not None]
    if time_column is None:
        return [str(ids[k]) for k in keep], [labels[k] for k in keep], None
    read = event_times(path, table.column(time_column).to_pylist(), time_column, resolution_s, time_unit)
    stamps = read.ns
    reasons = dict(read.refused)
    refused = [(k + 1, reasons.get(k + 1, "empty")) for k in keep if stamps[k] is None]
    if refused:
        notes.append(refusal_lines(path, time_column, refused))
    if read.describe(time_column):
        notes.append(read.describe(time_column))
    keep = [k for k in keep if stamps[k] is not None]
    if not keep:
        raise ValueError(f"{path}: no label has a usable time in column {time_column!r}")
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
                times: Sequence[int] | None = None, messages: list[str] | None = None) -> tuple[int, int]:
    """Send (``times``: Unix ns per label, when it became known; default now); returns (labels accepted by the
    processor, records or spans it rejected). Raises OSError naming the endpoint when it cannot be reached
    (after ``attempts`` tries with backoff for UNAVAILABLE)."""
    if batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    payloads = (label_spans_request if as_spans else labels_request)(model, version, ids, values, batch, times)
    return export_all(endpoint, payloads, "logs" if not as_spans else "traces", "labels", attempts, messages)


def grpc_target(endpoint: str) -> str:
    """``host:port`` of an OTLP/gRPC endpoint given as OTel's variables write it (``http://host:port``,
    ``https://...``, a trailing ``/``) or bare; ValueError when there is no port.

    >>> grpc_target("http://127.0.0.1:4317/"), grpc_target("127.0.0.1:4317")
    ('127.0.0.1:4317', '127.0.0.1:4317')
    """
    target = endpoint.strip()
    for scheme in ("http://", "https://", "grpc://"):
        if target.lower().startswith(scheme):
            target = target[len(scheme):]
    target = target.rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or "/" in target:
        raise ValueError(f"--endpoint {endpoint!r}: want HOST:PORT or http://HOST:PORT of an OTLP/gRPC receiver "
                         "(otel-ml serve: 127.0.0.1:4317)")
    return target


def what_listens(target: str, timeout: float = 2.0) -> str | None:
    """What answers at ``host:port`` when gRPC could not talk to it: a sentence naming it (an HTTP/1.1 server,
    Prometheus /metrics) and the port to use instead; None when nothing answers HTTP/1.1 there."""
    import http.client

    host, _, port = target.rpartition(":")
    try:
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            body = response.read(4096)
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return None
    if response.status == 200 and (b"# HELP" in body or b"# TYPE" in body):
        return (f"{target} serves Prometheus /metrics (otel-ml serve: 9464), not OTLP/gRPC: --endpoint wants the "
                "OTLP/gRPC port (otel-ml serve: 4317)")
    return (f"{target} answers HTTP/1.1 (OTLP/HTTP on 4318, or the pages on 9465?), not OTLP/gRPC: --endpoint wants "
            "the OTLP/gRPC port (otel-ml serve: 4317)")


def export_all(endpoint: str, payloads: Sequence[tuple[int, bytes]], signal: str, what: str,
               attempts: int = 10, messages: list[str] | None = None) -> tuple[int, int]:
    """Send each (rows, serialized OTLP request) in order over OTLP/gRPC, retrying UNAVAILABLE with backoff;
    returns (rows of the requests accepted whole, spans or log records rejected). The processor's partial_success
    messages (why it rejected what it did) are appended to ``messages``."""
    import grpc
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    sent = rejected = 0
    target = grpc_target(endpoint)
    with grpc.insecure_channel(target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=10)
        except grpc.FutureTimeoutError:
            raise OSError(what_listens(target) or f"cannot connect to {target} within 10 s (is otel-ml serve or a "
                          "Collector listening there?)") from None
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
                        raise OSError((what_listens(target) if e.code() == grpc.StatusCode.UNAVAILABLE else None)
                                      or f"cannot send {what} to {target}: {e.code().name}: {e.details()}") from None
                    time.sleep(min(2 ** attempt * 0.2, 5))
            bad = (response.partial_success.rejected_spans if signal == "traces"
                   else response.partial_success.rejected_log_records)
            rejected += bad
            if messages is not None and response.partial_success.error_message:
                messages.append(response.partial_success.error_message)
            if not bad:
                sent += rows
    return sent, rejected
