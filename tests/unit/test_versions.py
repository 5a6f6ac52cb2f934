"""Version against version (issue 46, part 2): each difference and its test equal to the exact computation on the
raw data of both versions (scipy), and the decisions on a canary that is worse and on two versions alike."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from otel_ml.analyze.drift import DriftConfig
from otel_ml.analyze.performance import PerformanceConfig, assess_all
from otel_ml.analyze.stats import ks_pvalue
from otel_ml.analyze.versions import compare_versions
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.performance import PerformanceProfile


def served(version: str, x: np.ndarray, durations: np.ndarray, failed: np.ndarray) -> ModelProfile:
    n = len(x)
    p = ModelProfile("m", version)
    p.update(ColumnarBatch("m", version, n, np.zeros(n, np.int64), np.ones(n), numeric={"x": x},
                           span_end_ns=np.zeros(n, np.int64), span_duration_s=durations, span_error=failed),
             {"x": "numeric"})
    return p


def labelled(version: str, truth: np.ndarray, predicted: np.ndarray):
    prof = PerformanceProfile()
    prof.add_predictions(len(truth))
    prof.add_classified(truth, predicted)
    return assess_all("m", version, prof, None, DriftConfig(), PerformanceConfig())


def test_error_ratio_latency_and_accuracy_tests_equal_the_exact_ones_on_the_raw_data() -> None:
    rng = np.random.default_rng(3)
    na, nb = 150, 120  # KLL (k = 200) keeps every duration: its KS is the exact one
    da, db = rng.gamma(2, 0.01, na), rng.gamma(2, 0.013, nb)
    fa, fb = rng.random(na) < 0.02, rng.random(nb) < 0.09
    a, b = served("3", rng.normal(0, 1, na), da, fa), served("4", rng.normal(0, 1, nb), db, fb)
    truth_a, truth_b = rng.choice(["yes", "no"], 4000), rng.choice(["yes", "no"], 1500)
    pred_a = np.where(rng.random(4000) < 0.9, truth_a, np.where(truth_a == "yes", "no", "yes"))
    pred_b = np.where(rng.random(1500) < 0.85, truth_b, np.where(truth_b == "yes", "no", "yes"))
    c = compare_versions(a, b, labelled("3", truth_a, pred_a), labelled("4", truth_b, pred_b), DriftConfig(),
                         alpha=0.01, min_labels=100)
    # Errors: the unpooled two-proportion z-test, one-sided (b higher), on the raw failures.
    pa, pb = fa.mean(), fb.mean()
    z = (pb - pa) / math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    assert c.error_ratio.difference == pytest.approx(pb - pa, abs=1e-15)
    assert c.error_ratio.p_value == pytest.approx(stats.norm.sf(z), rel=1e-9)
    # Latency: scipy's two-sample KS statistic on the raw durations, its asymptotic p-value (Stephens' form).
    exact = stats.ks_2samp(da, db)
    assert c.latency_p_value is not None
    assert c.latency_p_value == pytest.approx(ks_pvalue(exact.statistic, na, nb), rel=1e-9)
    assert abs(c.latency_p_value - exact.pvalue) < 0.05  # asymptotic against scipy's exact: close at these sizes
    # Accuracy: b − a with the binomial standard errors of the raw accuracies, one-sided.
    acc_a, acc_b = (pred_a == truth_a).mean(), (pred_b == truth_b).mean()
    d = c.performance["accuracy"]
    se = math.hypot(math.sqrt(acc_a * (1 - acc_a) / 4000), math.sqrt(acc_b * (1 - acc_b) / 1500))
    assert (d.a, d.b) == pytest.approx((acc_a, acc_b), abs=1e-12)
    # (the delta method on the confusion cells: the binomial standard error up to rounding)
    assert d.se == pytest.approx(se, rel=1e-5)
    assert d.p_value == pytest.approx(stats.norm.sf((acc_a - acc_b) / d.se), rel=1e-9)
    assert c.decisions["accuracy"] is True and c.decisions["inputs"] is False


def test_two_versions_alike_are_not_told_apart() -> None:
    rng = np.random.default_rng(9)
    decisions = []
    for _ in range(20):
        a = served("1", rng.normal(0, 1, 3000), rng.gamma(2, 0.01, 3000), rng.random(3000) < 0.02)
        b = served("2", rng.normal(0, 1, 3000), rng.gamma(2, 0.01, 3000), rng.random(3000) < 0.02)
        c = compare_versions(a, b, None, None, DriftConfig(), alpha=0.01)
        decisions += [v for v in c.decisions.values()]
    # 20 pairs × 3 tests at family-wise 0.01 (inputs at the drift level): a false decision among them is unlikely.
    assert sum(decisions) == 0, decisions
