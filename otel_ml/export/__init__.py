"""Where metrics leave: OTel SDK metrics to Prometheus (pull) and OTLP (push)."""

from otel_ml.export.metrics import MetricsExporter

__all__ = ["MetricsExporter"]
