"""Issue 34: multivariate drift by PCA reconstruction error, through a running `otel-ml serve`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from tests.support import sdk_provider, select, wait_for


def rows(rng: np.random.Generator, n: int, paired: bool = True) -> dict[str, np.ndarray]:
    """income and spend move together (correlation 0.9); ``paired=False`` flips the sign of that relation (a
    broken join), which leaves every marginal as it was. age is independent; plan a category."""
    income = rng.normal(0, 1, n)
    spend = (0.9 if paired else -0.9) * income + np.sqrt(1 - 0.81) * rng.normal(0, 1, n)
    return {"income": income, "spend": spend, "age": rng.normal(40, 10, n),
            "plan": rng.choice(np.array(["basic", "plus", "pro"]), n, p=[0.5, 0.3, 0.2])}


def test_a_correlation_only_change_is_flagged_by_the_multivariate_tests_alone(tmp_path: Path,
                                                                              serve_factory) -> None:
    """Every marginal unchanged (the exact KS test on the raw rows: p > 0.2 for each numeric feature, chi-squared
    for the category), the correlation of income and spend flipped: `(multivariate)` and `(correlation)` drift, no
    single feature does, and the pair is named first on the model page and in the API; a model sending
    reference-like rows against the same kind of baseline stays quiet (A/A)."""
    import json
    import urllib.request

    from otel_ml.instrument import ModelMonitor

    rng = np.random.default_rng(0)  # a seed whose draws meet the premise below (asserted, not assumed)
    reference = rows(rng, 6000)
    csv = tmp_path / "reference.csv"
    csv.write_text("income,spend,age,plan\n" + "".join(
        f"{a},{b},{c},{d}\n" for a, b, c, d in zip(*reference.values())))
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    for model in ("shop", "twin"):
        out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", model, "--input",
                              str(csv), "--multivariate", "--output", str(baselines / f"{model}.json")],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
    broken, same = rows(rng, 3000, paired=False), rows(rng, 3000)
    for name in ("income", "spend", "age"):  # the premise: no univariate change to find
        assert stats.ks_2samp(reference[name], broken[name]).pvalue > 0.2, name
    counts = [[np.sum(d["plan"] == c) for c in ("basic", "plus", "pro")] for d in (reference, broken)]
    assert stats.chi2_contingency(counts).pvalue > 0.2
    config = tmp_path / "otel-ml.yaml"  # sample counts of (multivariate): what the wait below waits for
    config.write_text("export:\n  detail_for:\n" + "".join(f'    "{m}/{f}": all\n' for m in ("shop", "twin")
                                                              for f in ("(multivariate)", "(correlation)")))
    sp = serve_factory("--config", str(config), "--baseline-dir", str(baselines), "--window", "1", "--horizon", "30",
                       "--evaluation-interval", "0.5")
    provider = sdk_provider(sp)
    for model, data in (("shop", broken), ("twin", same)):
        monitor = ModelMonitor(model, tracer_provider=provider)
        for k in range(0, 3000, 500):
            monitor.record_batch({name: values[k:k + 500].tolist() for name, values in data.items()})
    provider.force_flush()

    def decisions(model: str) -> dict[str, float]:
        got = {s.labels["ml_feature_name"]: s.value for s in select(
            sp.scrape(), "ml_drift_detected", ml_model_name=model, ml_drift_method="overall")}
        counted = [select(sp.scrape(), "ml_drift_sample_count", ml_model_name=model, ml_sample="current",
                          ml_feature_name=name) for name in ("(multivariate)", "(correlation)")]
        return got if all(c and c[0].value == 3000 for c in counted) and len(got) == 6 else {}

    shop = wait_for(lambda: decisions("shop"), timeout=60, what="an evaluation over all 3,000 rows of shop")
    assert shop == {"(multivariate)": 1.0, "(correlation)": 1.0, "income": 0.0, "spend": 0.0, "age": 0.0,
                    "plan": 0.0}, shop
    twin = wait_for(lambda: decisions("twin"), timeout=60, what="an evaluation over all 3,000 rows of twin")
    assert twin["(multivariate)"] == 0.0 and twin["(correlation)"] == 0.0, twin

    base = f"http://127.0.0.1:{sp.ui_port}"
    with urllib.request.urlopen(f"{base}/api/v1/models", timeout=10) as r:
        href = next(m["href"] for m in json.load(r)["models"] if m["model"] == "shop")
    with urllib.request.urlopen(base + href, timeout=10) as r:
        doc = json.load(r)
    first = doc["correlation_changes"][0]
    assert sorted(first["features"]) == ["income", "spend"] and first["current_rows"] == 3000, first
    # r of asinh(x / s), s the power of ten at or below max(|median|, IQR) of the reference (profile/comoments.py)
    quartiles = {k: np.quantile(reference[k], [0.25, 0.5, 0.75]) for k in ("income", "spend")}
    s = {k: 10.0 ** np.floor(np.log10(max(abs(q[1]), q[2] - q[0]))) for k, q in quartiles.items()}
    exact = [np.corrcoef(*(np.arcsinh(d[k] / s[k]) for k in ("income", "spend")))[0, 1] for d in (reference, broken)]
    got = [first["reference"], first["current"]]
    assert np.allclose(got, exact, atol=1e-9), (got, exact)  # moments are exact sums: r equals numpy's
    with urllib.request.urlopen(base + href.removeprefix("/api/v1").removesuffix("/drift"), timeout=10) as r:
        page = r.read().decode()
    assert "<h2>Correlations</h2>" in page and ("income × spend" in page or "spend × income" in page)
