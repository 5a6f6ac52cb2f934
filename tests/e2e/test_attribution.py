"""Issue 47, part 2: attribution drift through a running ``otel-ml serve``. A real model explained by the ``shap``
package is served through ``ModelMonitor.wrap(model, explainer=...)`` and the plain OTel SDK's OTLP exporter,
against baselines built from a table of past predictions and their shap values (``--attribution-column-prefix``)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import shap
from sklearn.ensemble import GradientBoostingRegressor

from tests.support import panels_return_series, sdk_provider, select, wait_for

FEATURES = ["x0", "x1", "x2"]


def inputs(rng: np.random.Generator, n: int, x0_scale: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame({"x0": rng.normal(0, x0_scale, n), "x1": rng.normal(0, 1, n), "x2": rng.normal(0, 2, n)})


def test_a_changed_driver_is_flagged_and_an_unchanged_model_is_not(tmp_path: Path, serve_factory) -> None:
    """Two models share a real regressor (driven by x0, then x1, then x2) and a baseline. Live, ``shifted`` sees
    x0 barely move, so x1 and x2 drive its predictions; ``steady`` sees the training distribution. Once every row
    is in: shifted's ranking is drift (NDCG below 0.90, in the series, the API and on the page), steady's is not."""
    from otel_ml.instrument import ModelMonitor

    rng = np.random.default_rng(3)
    X = inputs(rng, 4000)
    y = 3 * X["x0"] + 1.5 * X["x1"] + 0.5 * X["x2"] + rng.normal(0, 0.1, len(X))
    model = GradientBoostingRegressor(n_estimators=60, max_depth=3, random_state=0).fit(X, y)
    explainer = shap.TreeExplainer(model)
    past = inputs(rng, 3000)
    table = tmp_path / "past.csv"
    past.assign(prediction=model.predict(past),
                **{f"shap_{f}": v for f, v in zip(FEATURES, explainer.shap_values(past).T)}).to_csv(table, index=False)
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    for name in ("shifted", "steady"):
        out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", name, "--input",
                              str(table), "--prediction-column", "prediction", "--attribution-column-prefix", "shap_",
                              "--output", str(baselines / f"{name}.json")], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
    sp = serve_factory("--window", "60", "--horizon", "600", "--baseline-dir", str(baselines),
                       "--evaluation-interval", "0.5")
    provider = sdk_provider(sp)
    n = 2000
    for name, scale in (("shifted", 0.2), ("steady", 1.0)):
        wrapped = ModelMonitor(name, tracer_provider=provider).wrap(model, explainer=explainer)
        live = inputs(rng, n, scale)
        for part in np.array_split(np.arange(n), 8):
            wrapped.predict(live.iloc[part])
    provider.force_flush()

    def attribution(name: str) -> dict | None:  # from an evaluation that holds every row sent
        try:
            doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models/{name}/versions/_"
                                                    "/drift", timeout=10).read())
        except urllib.error.HTTPError:  # not evaluated yet
            return None
        a = doc.get("attribution")
        return a if a is not None and a["current_rows"] == n else None

    shifted = wait_for(lambda: attribution("shifted"), timeout=90, what="all 2,000 of shifted's rows evaluated")
    steady = wait_for(lambda: attribution("steady"), timeout=90, what="all 2,000 of steady's rows evaluated")
    assert shifted["detected"] is True and shifted["ndcg"] < 0.9, shifted
    assert [i["feature"] for i in shifted["importances"]] == ["x1", "x2", "x0"]
    assert steady["detected"] is False and steady["ndcg"] == 1.0, steady
    assert [i["feature"] for i in steady["importances"]] == FEATURES

    def decided() -> dict[str, float] | None:
        samples = sp.scrape()
        got = {s.labels["ml_model_name"]: s.value for s in select(samples, "ml_attribution_drift_detected")}
        return got if len(got) == 2 else None

    assert wait_for(decided, timeout=90, what="both models' attribution decisions exported") == {
        "shifted": 1.0, "steady": 0.0}
    [ndcg] = select(sp.scrape(), "ml_attribution_ndcg", ml_model_name="shifted")
    assert abs(ndcg.value - shifted["ndcg"]) <= 1e-5  # rendered to 6 significant digits
    importance = select(sp.scrape(), "ml_attribution_importance", ml_model_name="shifted", ml_feature_name="x0")
    assert {s.labels["ml_sample"] for s in importance} == {"reference", "current"}
    page = urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/models/shifted/versions/_", timeout=10).read()
    section = page.decode()[page.decode().index("<h2>Attributions</h2>"):]
    assert "x0" in section and "drift" in section
    # The dashboard's Attributions row, from a real Prometheus scraping the processor.
    assert panels_return_series(tmp_path, sp.prom_port, "Attributions:", "shifted|steady") == 2
