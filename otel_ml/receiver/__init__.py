"""Where spans come in: OTLP receivers."""

from otel_ml.receiver.otlp_grpc import OtlpTraceReceiver

__all__ = ["OtlpTraceReceiver"]
