"""The exporter owns its counters: totals kept for checkpoints, restored after a restart, zeros exported."""

from __future__ import annotations

from otel_ml import semconv as sc
from otel_ml.export.config import ExportConfig, PrometheusConfig
from otel_ml.export.metrics import MetricsExporter
from tests.conftest import scrape, select


def exporter(healthy: bool = True) -> MetricsExporter:
    config = ExportConfig(prometheus=PrometheusConfig(endpoint="127.0.0.1:0"))
    return MetricsExporter(config, lambda: [], "test", storage_healthy=lambda: healthy)


def test_counts_before_and_after_start_reach_the_endpoint_and_the_totals() -> None:
    ex = exporter()
    ex.count(sc.METRIC_SPANS_RECEIVED, 5)  # before start (recovery restores totals this way)
    ex.start()
    try:
        ex.count(sc.METRIC_SPANS_RECEIVED, 2)
        ex.count(sc.METRIC_SPANS_REJECTED, 3, {sc.ATTR_REASON: "name_too_long"})
        ex.count(sc.METRIC_STORAGE_ERRORS, 0, {"op": "journal"})  # a zero makes the series exist
        assert ex.prometheus_port is not None
        samples = scrape(ex.prometheus_port)
        assert select(samples, "otel_ml_spans_received_total")[0].value == 7
        assert select(samples, "otel_ml_spans_rejected_total", reason="name_too_long")[0].value == 3
        assert select(samples, "otel_ml_storage_errors_total", op="journal")[0].value == 0
        assert select(samples, "otel_ml_storage_healthy")[0].value == 1
        totals = ex.counter_totals()
    finally:
        ex.shutdown()
    assert sorted(totals) == sorted([[sc.METRIC_SPANS_RECEIVED, [], 7],
                                     [sc.METRIC_SPANS_REJECTED, [[sc.ATTR_REASON, "name_too_long"]], 3],
                                     [sc.METRIC_STORAGE_ERRORS, [["op", "journal"]], 0]])

    restarted = exporter(healthy=False)
    restarted.restore_counter_totals(totals)
    restarted.start()
    try:
        restarted.count(sc.METRIC_SPANS_RECEIVED, 1)
        assert restarted.prometheus_port is not None
        samples = scrape(restarted.prometheus_port)
        assert select(samples, "otel_ml_spans_received_total")[0].value == 8
        assert select(samples, "otel_ml_storage_healthy")[0].value == 0
    finally:
        restarted.shutdown()
