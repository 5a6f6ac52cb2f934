"""What every OTLP trace receiver answers for a decoded request."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from otel_ml.decode.batch import DecodeResult


def export_response(result: DecodeResult) -> ExportTraceServiceResponse:
    """Success, with ``partial_success`` naming each rejection reason when ML spans were rejected."""
    if result.spans_rejected:
        return ExportTraceServiceResponse(partial_success=ExportTracePartialSuccess(
            rejected_spans=result.spans_rejected, error_message=result.message()))
    return ExportTraceServiceResponse()
