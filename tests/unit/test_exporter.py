"""The exporter renders the counters (totals kept for checkpoints, restored after a restart, zeros exported),
storage health and the evaluator's snapshots, at each export.detail level."""

from __future__ import annotations

import dataclasses
import math

from otel_ml import semconv as sc
from otel_ml.analyze.drift import FeatureReport, MethodResult, ModelReport
from otel_ml.core.counters import Counters
from otel_ml.core.health import STORAGE_OPS, StorageHealth
from otel_ml.core.snapshot import Snapshot
from otel_ml.export.config import ExportConfig, PrometheusConfig
from otel_ml.export.metrics import MetricsExporter
from tests.support import scrape, select


def exporter(healthy: bool = True) -> MetricsExporter:
    config = ExportConfig(prometheus=PrometheusConfig(endpoint="127.0.0.1:0"))
    counters = Counters()
    health = StorageHealth(counters, "test", {})
    if not healthy:
        health.failed("journal", OSError(28, "No space left on device"))
    return MetricsExporter(config, counters, "test", health)


def test_counts_before_and_after_start_reach_the_endpoint_and_the_totals() -> None:
    ex = exporter()
    ex.counters.count(sc.METRIC_SPANS_RECEIVED, 5)  # before start (recovery restores totals this way)
    ex.start()
    try:
        ex.counters.count(sc.METRIC_SPANS_RECEIVED, 2)
        ex.counters.count(sc.METRIC_SPANS_REJECTED, 3, {sc.ATTR_REASON: "name_too_long"})
        assert ex.prometheus_port is not None
        samples = scrape(ex.prometheus_port)
        assert select(samples, "otel_ml_spans_received_total")[0].value == 7
        assert select(samples, "otel_ml_spans_rejected_total", reason="name_too_long")[0].value == 3
        assert select(samples, "otel_ml_storage_errors_total", op="journal")[0].value == 0
        assert select(samples, "otel_ml_storage_healthy")[0].value == 1
        totals = ex.counters.to_state()
    finally:
        ex.shutdown()
    assert sorted(totals) == sorted([[sc.METRIC_SPANS_RECEIVED, [], 7],
                                     [sc.METRIC_SPANS_REJECTED, [[sc.ATTR_REASON, "name_too_long"]], 3],
                                     *([sc.METRIC_STORAGE_ERRORS, [["op", op]], 0] for op in STORAGE_OPS)])

    restarted = exporter(healthy=False)
    restarted.counters.restore(totals)
    restarted.start()
    try:
        restarted.counters.count(sc.METRIC_SPANS_RECEIVED, 1)
        assert restarted.prometheus_port is not None
        samples = scrape(restarted.prometheus_port)
        assert select(samples, "otel_ml_spans_received_total")[0].value == 8
        assert select(samples, "otel_ml_storage_healthy")[0].value == 0
    finally:
        restarted.shutdown()


def _feature_with_everything_wrong(name: str) -> FeatureReport:
    """A numeric feature whose test fired, with every quality ratio non-zero: the most the default set exports."""
    methods = [MethodResult("ks", 0.3, 0.1, True), MethodResult("psi", 0.5, 0.2, True),
               MethodResult("js", 0.2, 0.1, True), MethodResult("hellinger", 0.2, 0.1, True),
               MethodResult("wasserstein", 0.4, 0.1, True)]
    return FeatureReport(name, "numeric", 5000, 3000, methods, MethodResult("overall", 1e-9, 0.05, True, p_value=True),
                         missing_ratio=0.2, type_mismatch_ratio=0.01, unseen_ratio=0.0, out_of_range_ratio=0.3)


def _series_per_feature(samples: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in samples:
        if "ml_feature_name" in s.labels:
            out[s.labels["ml_feature_name"]] = out.get(s.labels["ml_feature_name"], 0) + 1
    return out


def test_detail_levels_and_the_six_series_bound() -> None:
    quiet = compare_numeric_report("quiet")
    loud = _feature_with_everything_wrong("loud")
    withheld = dataclasses.replace(quiet, feature="held", withheld_reason="current_too_small",
                                   overall=MethodResult("overall", math.nan, 0.05, None, p_value=True))
    report = ModelReport("m", "1", "baseline", 5000, 3000, [quiet, loud, withheld])
    config = ExportConfig(prometheus=PrometheusConfig(endpoint="127.0.0.1:0"),
                          detail_for={"m/loud": "default", "m/held": "default", "other": "all"})
    counts = {}
    for level in ("default", "methods", "all"):
        ex = MetricsExporter(dataclasses.replace(config, detail=level), instance_id="test")
        ex.publish(Snapshot(reports=(report,)))
        ex.start()
        try:
            assert ex.prometheus_port is not None
            samples = scrape(ex.prometheus_port)
        finally:
            ex.shutdown()
        counts[level] = _series_per_feature(samples)
        if level == "default":
            mine = {(s.name, s.labels.get("ml_drift_method", s.labels.get("reason", ""))): s.value
                    for s in samples if s.labels.get("ml_feature_name") == "quiet"}
            assert mine == {("ml_drift_detected", "overall"): 0, ("ml_drift_p_value", "overall"): 0.5,
                            ("ml_drift_score", "wasserstein"): 0.01}
            held = {s.name: s.labels.get("reason") for s in samples if s.labels.get("ml_feature_name") == "held"}
            assert held == {"ml_drift_detected": None, "ml_drift_withheld": "current_too_small",
                            "ml_drift_score": None}
    # The worst case at default: decision, p-value, effect size, missing, type mismatch, out of range.
    assert counts["default"] == {"quiet": 3, "loud": 6, "held": 3}
    assert counts["methods"]["quiet"] == 12 and counts["methods"]["loud"] == 6  # detail_for pins loud at default
    assert counts["all"]["quiet"] == 24


def compare_numeric_report(name: str) -> FeatureReport:
    methods = [MethodResult("ks", 0.01, 0.1, False), MethodResult("psi", 0.001, 0.2, False),
               MethodResult("js", 0.01, 0.1, False), MethodResult("hellinger", 0.01, 0.1, False),
               MethodResult("wasserstein", 0.01, 0.1, False)]
    return FeatureReport(name, "numeric", 5000, 3000, methods, MethodResult("overall", 0.5, 0.05, False, p_value=True),
                         missing_ratio=0.0, type_mismatch_ratio=0.0, unseen_ratio=math.nan, out_of_range_ratio=0.0)


def test_a_scrape_reuses_the_snapshot_of_the_last_evaluation() -> None:
    built = []
    ex = MetricsExporter(ExportConfig(prometheus=PrometheusConfig(endpoint="127.0.0.1:0")), instance_id="t")
    ex.publish(Snapshot(reports=(ModelReport("m", "1", "baseline", 5000, 3000, [compare_numeric_report("x")]),)))
    ex.start()
    try:
        assert ex.prometheus_port is not None
        for _ in range(3):
            scrape(ex.prometheus_port)
            built.append(ex._rendered())
        assert built[0] is built[1] is built[2]  # one evaluation, one snapshot, rendered once
        ex.publish(Snapshot(reports=(ModelReport("m", "1", "baseline", 5000, 3000, [compare_numeric_report("y")]),)))
        assert ex._rendered() is not built[0]
        assert set(_series_per_feature(scrape(ex.prometheus_port))) == {"y"}
    finally:
        ex.shutdown()
