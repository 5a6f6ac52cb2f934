"""Where scores are computed: drift statistics, data quality and decisions."""

from otel_ml.analyze.drift import DriftConfig, FeatureReport, MethodResult, ModelReport, compare

__all__ = ["DriftConfig", "FeatureReport", "MethodResult", "ModelReport", "compare"]
