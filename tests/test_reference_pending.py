"""A model without a reference (no baseline, not pinned yet) gets data quality from its first window, and says
in a metric and the log why it has no drift decisions yet."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from otel_ml.config import load_config
from otel_ml.service import ProcessorService
from tests.conftest import scrape, select
from tests.test_decode import request


def test_data_quality_and_the_rows_still_needed_before_a_reference(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(overrides={"state.dir": str(tmp_path), "state.durable": False,
                                 "export.prometheus.endpoint": "127.0.0.1:0", "windows.reference_min_rows": 1000},
                      environ={})
    caplog.set_level(logging.INFO, logger="otel_ml.service")
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
            service.consume(req.SerializeToString())
        [report] = service.evaluate()
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
        service.evaluate()
        assert caplog.text.count("no drift decisions until") == 1  # once per model, not per evaluation
    finally:
        service.exporter.shutdown()
