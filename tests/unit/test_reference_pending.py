"""A model without a reference (no baseline, not pinned yet) gets data quality from its first window, and says
in a metric and the log why it has no drift decisions yet."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from otel_ml.config import load_config
from otel_ml.service import ProcessorService
from tests.support import request, scrape, select


def test_data_quality_and_the_rows_still_needed_before_a_reference(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(overrides={"state.dir": str(tmp_path), "state.durable": False,
                                 "export.prometheus.endpoint": "127.0.0.1:0", "ui.endpoint": "127.0.0.1:0",
                                 "windows.reference_min_rows": 1000},
                      environ={})
    caplog.set_level(logging.INFO, logger="otel_ml.core.evaluator")
    service = ProcessorService(cfg)
    service.exporter.start()
    try:
        now = time.time_ns()
        for i in range(10):  # 10 rows, the last 4 without "age"
            attrs = {"ml.model.name": "new-model", "ml.feature.plan": "basic"}
            if i < 6:
                attrs["ml.feature.age"] = float(i)
            req = request(attrs)
            req.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano = now
            service.pipeline.consume(req.SerializeToString())
        [report] = service.evaluator.evaluate().reports
        assert report.reference_source is None and report.reference_pending_rows == 990
        by_name = {f.feature: f for f in report.features}
        assert by_name["age"].missing_ratio == pytest.approx(0.4) and by_name["plan"].missing_ratio == 0
        assert {f.withheld_reason for f in report.features} == {"reference_pending"}
        assert "no drift decisions until a reference is pinned from live traffic (990 more rows" in caplog.text
        assert service.exporter.prometheus_port is not None
        samples = scrape(service.exporter.prometheus_port)
        [missing] = select(samples, "ml_feature_missing_ratio", ml_feature_name="age")
        assert missing.value == pytest.approx(0.4)
        assert select(samples, "ml_reference_pending_rows", ml_model_name="new-model")[0].value == 990
        assert select(samples, "ml_drift_withheld", ml_feature_name="age", reason="reference_pending")[0].value == 1
        assert select(samples, "ml_drift_detected", ml_feature_name="age", ml_drift_method="overall")[0].value == 0
        service.evaluator.evaluate()
        assert caplog.text.count("no drift decisions until") == 1  # once per model, not per evaluation
    finally:
        service.exporter.shutdown()


def test_a_loaded_baseline_shows_as_ready_before_any_traffic(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from otel_ml.profile.baseline import build_baseline

    baselines = tmp_path / "baselines"
    baselines.mkdir()
    pd.DataFrame({"x": np.arange(200.0)}).to_csv(tmp_path / "train.csv", index=False)
    (baselines / "b.json").write_text(build_baseline(tmp_path / "train.csv", "waiting", "2").to_json())
    cfg = load_config(overrides={"state.dir": str(tmp_path / "state"), "state.durable": False,
                                 "baseline_dir": str(baselines),
                                 "export.prometheus.endpoint": "127.0.0.1:0", "ui.endpoint": "127.0.0.1:0"},
                      environ={})
    service = ProcessorService(cfg)
    service.live.references.open()
    service.evaluator.evaluate()
    service.exporter.start()
    try:
        assert service.exporter.prometheus_port is not None
        [ready] = select(scrape(service.exporter.prometheus_port), "ml_reference_ready", ml_model_name="waiting")
        assert ready.value == 1 and ready.labels["ml_reference_source"] == "baseline"
        assert ready.labels["ml_model_version"] == "2"
    finally:
        service.exporter.shutdown()
