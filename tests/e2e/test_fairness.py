"""Issue 47, part 1: fairness through a running ``otel-ml serve`` fed by the plain OTel SDK (ModelMonitor batches
and ground truth as spans), against a labelled baseline built with ``--segment-by``."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.support import panels_return_series, sdk_provider, select, wait_for


def applicants(rng: np.random.Generator, n: int, refused: float) -> dict[str, np.ndarray]:
    """A loan model: x drives repayment; ``refused`` of the women it would grant are refused."""
    sex = rng.choice(np.array(["F", "M"]), n, p=[0.45, 0.55])
    x = rng.normal(0, 1, n)
    p = np.round(1 / (1 + np.exp(-2 * x)), 3)
    y = (rng.random(n) < p).astype(int)
    pred = (p >= 0.5).astype(int)
    pred = np.where((sex == "F") & (pred == 1) & (rng.random(n) < refused), 0, pred)
    return {"sex": sex, "x": x, "p": p, "y": y, "pred": pred}


def test_a_group_refused_more_often_is_a_violation_and_a_change_and_its_rates_are_exact(
        tmp_path: Path, serve_factory) -> None:
    """The baseline treats women and men alike; live, 35% of the women the model would grant are refused. Once
    every label has joined: each group's selection rate and true-positive rate equal numpy's on the rows sent, the
    women's disparate impact is a violation (below four-fifths) and a change from the baseline's, the series say so,
    and the model page shows it."""
    from otel_ml.instrument import ModelMonitor

    rng = np.random.default_rng(47)
    ref = applicants(rng, 6000, 0.0)
    ref_csv = tmp_path / "reference.csv"
    ref_csv.write_text("sex,x,p,pred,y\n" + "".join(f"{s},{a},{b},{c},{d}\n" for s, a, b, c, d in
                                                    zip(ref["sex"], ref["x"], ref["p"], ref["pred"], ref["y"])))
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "loans", "--input",
                          str(ref_csv), "--exclude", "y", "--prediction-column", "pred", "--probability-column", "p",
                          "--target-column", "y", "--segment-by", "sex", "--output", str(baselines / "loans.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    config = tmp_path / "otel-ml.yaml"
    config.write_text("fairness:\n  loans:\n    attributes: [sex]\n    favorable: 1\n    reference_group: {sex: M}\n")
    sp = serve_factory("--config", str(config), "--window", "60", "--horizon", "600", "--baseline-dir",
                       str(baselines), "--evaluation-interval", "0.5")
    provider = sdk_provider(sp)
    monitor = ModelMonitor("loans", tracer_provider=provider)
    live = applicants(rng, 4000, 0.35)
    n = len(live["sex"])
    ids = [f"l-{i}" for i in range(n)]
    for k in range(0, n, 500):
        part = slice(k, k + 500)
        monitor.record_batch({"sex": live["sex"][part].tolist(), "x": live["x"][part].tolist()},
                             predictions=live["pred"][part].tolist(), prediction_ids=ids[part],
                             probabilities=live["p"][part].tolist())
    monitor.record_ground_truth_batch(ids, [int(v) for v in live["y"]])
    provider.force_flush()

    def fairness() -> dict | None:  # from an evaluation that joined every label in its group
        try:
            doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models/loans/versions/_"
                                                    "/performance", timeout=10).read())["performance"]
        except urllib.error.HTTPError:  # not evaluated yet
            return None
        f = doc.get("fairness")
        if doc["labeled"] != n or f is None or sum(g["labelled"] for g in f["groups"]) != n:
            return None
        return f

    f = wait_for(fairness, timeout=90, what="all 4,000 labels joined in their groups")
    assert f["reference_source"] == "baseline" and f["reference_groups"] == {"sex": "M"}
    values = {(v["metric"], v["group"]): v for v in f["values"]}
    for group in ("F", "M"):
        rows = live["sex"] == group
        assert values["selection_rate", group]["value"] == pytest.approx(live["pred"][rows].mean(), abs=1e-12)
        positives = rows & (live["y"] == 1)
        assert values["true_positive_rate", group]["value"] == pytest.approx(live["pred"][positives].mean(),
                                                                             abs=1e-12)
    di = values["disparate_impact", "F"]
    women, men = live["pred"][live["sex"] == "F"].mean(), live["pred"][live["sex"] == "M"].mean()
    assert di["value"] == pytest.approx(women / men, abs=1e-12)
    assert di["violation"] is True and di["changed"] is True
    assert 0.9 < di["reference_value"] < 1.1  # the baseline's own: fair
    assert di["ci95"][0] <= di["value"] <= di["ci95"][1] < 0.8

    def decisions() -> dict[str, float] | None:
        got = {s.labels["ml_fairness_test"]: s.value for s in select(
            sp.scrape(), "ml_fairness_violation", ml_model_name="loans", ml_fairness_attribute="sex", ml_group="F",
            ml_fairness_metric="disparate_impact")}
        return got if len(got) == 2 else None

    assert wait_for(decisions, timeout=30, what="the women's disparate impact decided") == {"violation": 1.0,
                                                                                          "changed": 1.0}
    gauge = select(sp.scrape(), "ml_fairness", ml_model_name="loans", ml_fairness_attribute="sex", ml_group="F",
                   ml_fairness_metric="disparate_impact")
    assert gauge and gauge[0].value == pytest.approx(women / men, rel=1e-5)  # rendered to 6 significant digits
    page = urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/models/loans/versions/_", timeout=10).read().decode()
    section = page[page.index("<h2>Fairness</h2>"):]
    assert "disparate_impact" in section and "violation" in section
    # The dashboard's Fairness row, from a real Prometheus scraping the processor.
    assert panels_return_series(tmp_path, sp.prom_port, "Fairness:", "loans") == 2
