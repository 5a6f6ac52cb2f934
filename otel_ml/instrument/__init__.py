"""Client side: record predictions as OTel spans. Needs opentelemetry-api only (no numpy, no sketches)."""

from otel_ml.instrument.monitor import ModelMonitor, MonitoredModel, PredictionRecord

__all__ = ["ModelMonitor", "MonitoredModel", "PredictionRecord"]
