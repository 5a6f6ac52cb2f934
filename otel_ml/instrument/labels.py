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


def read_labels(path: str, id_column: str, label_column: str) -> tuple[list[str], list[Any]]:
    """Ids (as text) and labels (numbers, strings, bools) of rows with both, from a CSV or Parquet file."""
    import pyarrow.csv as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path) if path.lower().endswith((".parquet", ".pq")) else pc.read_csv(
            path, convert_options=pc.ConvertOptions(column_types={id_column: "string"}))
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError; a missing file an OSError
        detail = str(e).split(". Detail:")[0].split("\n")[0]
        raise ValueError(f"{path}: cannot read labels: {detail}") from e
    for col in (id_column, label_column):
        if col not in table.column_names:
            raise ValueError(f"{path}: no column {col!r}; columns are {', '.join(table.column_names)}")
    ids = table.column(id_column).to_pylist()
    labels = table.column(label_column).to_pylist()
    rows = [(str(i), v) for i, v in zip(ids, labels) if i is not None and str(i) != "" and v is not None]
    return [i for i, _ in rows], [v for _, v in rows]


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


def labels_request(model: str, version: str, ids: Sequence[str], values: Sequence[Any], batch: int) -> list[bytes]:
    """ExportLogsServiceRequests (serialized), one log record of up to ``batch`` labels each."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    out = []
    now = time.time_ns()
    for start in range(0, len(ids), batch):
        req = ExportLogsServiceRequest()
        rl = req.resource_logs.add()
        rl.resource.attributes.add(key="service.name").value.string_value = "otel-ml-labels"
        rec = rl.scope_logs.add().log_records.add(time_unix_nano=now, observed_time_unix_nano=now)
        rec.attributes.add(key="event.name").value.string_value = semconv.GROUND_TRUTH_EVENT
        _add_labels(rec.attributes, model, version, ids[start:start + batch], values[start:start + batch])
        out.append(req.SerializeToString())
    return out


def label_spans_request(model: str, version: str, ids: Sequence[str], values: Sequence[Any],
                        batch: int) -> list[bytes]:
    """ExportTraceServiceRequests (serialized), one span of up to ``batch`` labels each."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out = []
    now = time.time_ns()
    for start in range(0, len(ids), batch):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = "otel-ml-labels"
        span = rs.scope_spans.add().spans.add(name="ground truth", trace_id=os.urandom(16), span_id=os.urandom(8),
                                              start_time_unix_nano=now, end_time_unix_nano=now)
        _add_labels(span.attributes, model, version, ids[start:start + batch], values[start:start + batch])
        out.append(req.SerializeToString())
    return out


def send_labels(endpoint: str, model: str, version: str, ids: Sequence[str], values: Sequence[Any],
                batch: int = 5000, attempts: int = 10, as_spans: bool = False) -> tuple[int, int]:
    """Send; returns (labels accepted by the processor, records or spans it rejected). Raises OSError naming the
    endpoint when it cannot be reached (after ``attempts`` tries with backoff for UNAVAILABLE)."""
    import grpc

    if batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    sent = rejected = 0
    with grpc.insecure_channel(endpoint) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=10)
        except grpc.FutureTimeoutError:
            raise OSError(f"cannot connect to {endpoint} within 10 s (is otel-ml serve or a Collector listening "
                          "there?)") from None
        if as_spans:
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                         response_deserializer=ExportTraceServiceResponse.FromString)
            payloads = label_spans_request(model, version, ids, values, batch)
        else:
            export = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                                         response_deserializer=ExportLogsServiceResponse.FromString)
            payloads = labels_request(model, version, ids, values, batch)
        for k, payload in enumerate(payloads):
            for attempt in range(attempts):
                try:
                    response = export(payload, timeout=30)
                    break
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts - 1:
                        raise OSError(f"cannot send labels to {endpoint}: {e.code().name}: {e.details()}") from None
                    time.sleep(min(2 ** attempt * 0.2, 5))
            bad = (response.partial_success.rejected_spans if as_spans
                   else response.partial_success.rejected_log_records)
            rejected += bad
            if not bad:
                sent += len(ids[k * batch:(k + 1) * batch])
    return sent, rejected
