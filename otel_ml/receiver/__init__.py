"""Where spans come in: OTLP receivers (gRPC and HTTP)."""

from otel_ml.receiver.otlp_grpc import OtlpTraceReceiver
from otel_ml.receiver.otlp_http import OtlpHttpTraceReceiver

__all__ = ["OtlpHttpTraceReceiver", "OtlpTraceReceiver"]
