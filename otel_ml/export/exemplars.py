"""Example predictions on the exported series: OpenMetrics exemplars on ``/metrics``, OTLP exemplars on the push.

OpenMetrics 1.0 allows an exemplar on a counter's ``_total`` or a histogram bucket only, and Prometheus before 2.43
refuses a whole scrape with one on a gauge; so on ``/metrics`` the drift's example prediction rides on the counter
``ml.drift.detections``, and the latest wrong prediction (profile/wrong_predictions.py) on ``ml.ground_truth``
(labels joined). OTLP allows exemplars on every point: the push also puts them on ``ml.drift.detected``
(``ml.drift.method`` = overall) and ``ml.performance`` (the model's, not a segment's), the series alerts read.

The OTel SDK's observable instruments take no exemplars, so ``ExemplarExporter`` adds them to the data points on
their way to the OTLP exporter.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from opentelemetry.sdk.metrics import Exemplar as OtlpExemplar
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    Sum,
)
from prometheus_client.samples import Exemplar as PrometheusExemplar

from otel_ml import semconv as sc
from otel_ml.analyze.exemplars import Exemplar
from otel_ml.profile.wrong_predictions import WrongPrediction

Example = Exemplar | WrongPrediction
"""What an exemplar points at: a drifted feature's example prediction, or a wrong prediction."""
ExemplarLookup = Callable[[], dict[tuple[str, str, str], Example]]
"""(model, version, feature) → the feature's first example prediction, as of the latest evaluation; (model,
version, "") → the latest wrong prediction."""

CARRIERS = frozenset({sc.METRIC_DRIFT_DETECTIONS, sc.METRIC_DRIFT_DETECTED, sc.METRIC_GROUND_TRUTH,
                      sc.METRIC_PERFORMANCE})
"""The OTLP metrics whose points carry an example prediction (a feature's, or for the performance series a wrong
prediction's)."""


def exemplar_number(e: Example) -> float:
    """An exemplar's value is a number: a numeric feature's value, 1 for a category."""
    return e.value if isinstance(e.value, float) and math.isfinite(e.value) else 1.0


def prometheus_exemplar(e: Example) -> PrometheusExemplar:
    """An example prediction as an OpenMetrics exemplar: its trace and span ids, value and time.

    >>> e = prometheus_exemplar(Exemplar("0" * 31 + "1", "0" * 15 + "2", 1_500_000_000, 3.5, 0.1, 0.0))
    >>> e.labels["trace_id"][-4:], e.labels["span_id"][-4:], e.value, e.timestamp
    ('0001', '0002', 3.5, 1.5)
    """
    return PrometheusExemplar({"trace_id": e.trace_id, "span_id": e.span_id}, exemplar_number(e), e.time_ns / 1e9)


def otlp_exemplar(e: Example) -> OtlpExemplar:
    return OtlpExemplar(None, exemplar_number(e), e.time_ns, span_id=int(e.span_id, 16), trace_id=int(e.trace_id, 16))


def _point(metric: str, point: NumberDataPoint, exemplars: dict[tuple[str, str, str], Example]) -> NumberDataPoint:
    attrs = point.attributes or {}
    if metric == sc.METRIC_DRIFT_DETECTED and attrs.get(sc.ATTR_DRIFT_METHOD) != sc.OVERALL_METHOD:
        return point
    if sc.ATTR_SEGMENT in attrs:  # a segment's performance: the model's wrong predictions are not all its own
        return point
    e = exemplars.get((str(attrs.get(sc.ATTR_MODEL_NAME, "")), str(attrs.get(sc.ATTR_MODEL_VERSION, "")),
                       str(attrs.get(sc.ATTR_FEATURE_NAME, ""))))
    return point if e is None else dataclasses.replace(point, exemplars=[otlp_exemplar(e)])


def with_exemplars(data: MetricsData, exemplars: dict[tuple[str, str, str], Example]) -> MetricsData:
    """``data`` with each ``CARRIERS`` point of a feature that has an example prediction carrying it."""
    if not exemplars:
        return data

    def metric(m: Metric) -> Metric:
        if m.name not in CARRIERS or not isinstance(m.data, (Sum, Gauge)):
            return m
        points = [_point(m.name, p, exemplars) for p in m.data.data_points]  # type: ignore[arg-type]
        return dataclasses.replace(m, data=dataclasses.replace(m.data, data_points=points))

    return dataclasses.replace(data, resource_metrics=[
        dataclasses.replace(rm, scope_metrics=[dataclasses.replace(sm, metrics=[metric(m) for m in sm.metrics])
                                               for sm in rm.scope_metrics])
        for rm in data.resource_metrics])


class ExemplarExporter(MetricExporter):
    """An OTLP metric exporter whose drift points carry their example predictions (``with_exemplars``)."""

    def __init__(self, inner: MetricExporter, exemplars: ExemplarLookup) -> None:
        super().__init__(preferred_temporality=inner._preferred_temporality,
                         preferred_aggregation=inner._preferred_aggregation)
        self.inner = inner
        self.exemplars = exemplars

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
               ) -> MetricExportResult:
        return self.inner.export(with_exemplars(metrics_data, self.exemplars()), timeout_millis=timeout_millis)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis)


__all__ = ["ExemplarExporter", "prometheus_exemplar", "with_exemplars"]
