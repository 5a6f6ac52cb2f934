"""Each statistic computed from profiles against scipy/numpy on the raw data.

While a sketch is not in estimation mode (n ≤ its capacity) it holds every value, so sketch-based and
exact values must agree to floating-point precision; above that, the KS statistic may differ by at
most the two sketches' rank errors (DataSketches' documented 99% bound).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from otel_ml.analyze import stats
from otel_ml.analyze.drift import DriftConfig, compare
from otel_ml.profile import CategoricalProfile, ModelProfile, NumericProfile


def numeric(values: np.ndarray, k: int = 200) -> NumericProfile:
    from otel_ml.profile import SketchConfig

    p = NumericProfile(SketchConfig(kll_k=k))
    p.update(np.asarray(values, dtype=np.float64))
    return p


def exact_shares(raw_ref: np.ndarray, raw_cur: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The binning of docs/statistics.md computed independently with numpy on raw data."""
    edges = np.unique(np.quantile(raw_ref, np.arange(1, bins) / bins, method="inverted_cdf"))
    full = np.concatenate([[-np.inf], edges, [np.inf]])

    def shares(x: np.ndarray) -> np.ndarray:
        # Bins are right-closed: (e_i, e_{i+1}].
        counts = np.array([np.sum((x > lo) & (x <= hi)) for lo, hi in itertools.pairwise(full)])
        return counts / len(x)

    return shares(raw_ref), shares(raw_cur)


samples = st.integers(min_value=5, max_value=150).flatmap(
    lambda n: st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False), min_size=n, max_size=n))


@settings(max_examples=60, deadline=None)
@given(samples, samples)
def test_exact_mode_statistics_equal_scipy(a: list[float], b: list[float]) -> None:
    ra, rb = np.array(a), np.array(b)
    pa, pb = numeric(ra), numeric(rb)  # n ≤ 150 < k=200: every value retained
    ia, ib = pa.weighted_items(), pb.weighted_items()
    ks = sps.ks_2samp(ra, rb, method="asymp")
    assert stats.ks_statistic(ia, ib) == pytest.approx(ks.statistic, abs=1e-12)
    assert stats.ks_pvalue(ks.statistic, len(ra), len(rb)) == pytest.approx(ks.pvalue, rel=1e-9, abs=1e-12)
    assert stats.wasserstein(ia, ib) == pytest.approx(sps.wasserstein_distance(ra, rb), rel=1e-9, abs=1e-6)
    r_exact, c_exact = exact_shares(ra, rb)
    edges = stats.quantile_edges(ia)
    r_s, c_s = stats.binned_shares(ia, edges), stats.binned_shares(ib, edges)
    np.testing.assert_allclose(r_s, r_exact, atol=1e-12)
    np.testing.assert_allclose(c_s, c_exact, atol=1e-12)
    assert stats.js_distance(r_s, c_s) == pytest.approx(jensenshannon(r_exact, c_exact, base=2), abs=1e-7)
    r_c, c_c = np.maximum(r_exact, 1e-4), np.maximum(c_exact, 1e-4)
    assert stats.psi(r_s, c_s) == pytest.approx(float(np.sum((c_c - r_c) * np.log(c_c / r_c))), rel=1e-9)
    hell = np.sqrt(max(0.0, 1 - np.sum(np.sqrt(r_exact * c_exact))))
    assert stats.hellinger(r_s, c_s) == pytest.approx(hell, abs=1e-7)
    assert pa.mean == pytest.approx(np.mean(ra), rel=1e-9, abs=1e-6)
    assert pa.std == pytest.approx(np.std(ra, ddof=1), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("n,m,shift", [(20_000, 30_000, 0.0), (50_000, 50_000, 0.05), (100_000, 10_000, 0.3)])
def test_estimation_mode_ks_within_rank_error(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    ra, rb = rng.lognormal(0, 1, n), rng.lognormal(shift, 1, m)
    pa, pb = numeric(ra), numeric(rb)
    assert pa.sketch.is_estimation_mode()
    exact = sps.ks_2samp(ra, rb).statistic
    approx = stats.ks_statistic(pa.weighted_items(), pb.weighted_items())
    bound = pa.rank_error() + pb.rank_error()
    assert abs(approx - exact) <= bound
    # W1 = ∫|F_R − F_C| dx and each sketch CDF is off by at most its rank error at any x, so the sketch
    # value is within (ε_R + ε_C) · (range of the data) of the exact one.
    w_exact = sps.wasserstein_distance(ra, rb)
    data_range = max(ra.max(), rb.max()) - min(ra.min(), rb.min())
    w_sketch = stats.wasserstein(pa.weighted_items(), pb.weighted_items())
    assert abs(w_sketch - w_exact) <= bound * data_range


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list("abcdefgh")), min_size=2, max_size=300),
       st.lists(st.sampled_from(list("abcdefghij")), min_size=2, max_size=300))
def test_categorical_statistics_equal_scipy(a: list[str], b: list[str]) -> None:
    pa, pb = CategoricalProfile(), CategoricalProfile()
    pa.update(np.array(a))
    pb.update(np.array(b))
    fa, fb = pa.frequencies(), pb.frequencies()
    # Below 0.75·maxMapSize distinct items the counts are exact.
    assert fa == {k: a.count(k) for k in set(a)}
    cats, rc, cc = stats.category_table(fa, fb)
    stat, p = stats.chi2_homogeneity(rc, cc)
    table = np.array([rc, cc])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] >= 2:
        expected = sps.chi2_contingency(table, correction=False)
        assert stat == pytest.approx(expected.statistic, rel=1e-9)
        assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    shares_a = np.array([a.count(k) / len(a) for k in cats])
    shares_b = np.array([b.count(k) / len(b) for k in cats])
    assert stats.linf(rc, cc) == pytest.approx(np.max(np.abs(shares_a - shares_b)))
    assert stats.js_distance(rc / rc.sum(), cc / cc.sum()) == pytest.approx(
        jensenshannon(shares_a, shares_b, base=2), abs=1e-7)
    assert stats.unseen_share(fa, fb) == pytest.approx(sum(1 for x in b if x not in set(a)) / len(b))


def test_decisions_on_shifted_and_stable_features() -> None:
    rng = np.random.default_rng(7)
    ref, cur = ModelProfile("m", ""), ModelProfile("m", "")
    for prof, shift, cats in ((ref, 0.0, [0.5, 0.3, 0.2]), (cur, 0.5, [0.2, 0.3, 0.5])):
        prof.features["shifted"] = numeric(rng.normal(shift, 1, 20_000))
        prof.features["stable"] = numeric(rng.normal(0, 1, 20_000))
        c = CategoricalProfile()
        c.update(rng.choice(np.array(["a", "b", "c"]), 20_000, p=cats))
        prof.features["cat"] = c
    report = {f.feature: f for f in compare(ref, cur, DriftConfig()).features}
    assert report["shifted"].overall.detected is True
    assert report["cat"].overall.detected is True
    # Never fires; it may be withheld as below_sketch_resolution when sketch noise alone makes D significant.
    assert report["stable"].overall.detected is not True


def test_small_samples_are_withheld() -> None:
    ref, cur = ModelProfile("m", ""), ModelProfile("m", "")
    ref.features["x"] = numeric(np.arange(1000.0))
    cur.features["x"] = numeric(np.arange(50.0) + 5000)
    f = compare(ref, cur).features[0]
    assert f.overall.detected is None
    assert f.withheld_reason == "current_too_small"
    assert f.methods[0].score == 1.0  # the score is still there


def test_new_and_vanished_features_are_reported() -> None:
    ref, cur = ModelProfile("m", ""), ModelProfile("m", "")
    ref.features["old"] = numeric(np.arange(500.0))
    cur.features["old"] = numeric(np.array([]))
    cur.features["old"].missing = 400  # the feature stopped arriving
    cur.features["new"] = numeric(np.arange(400.0))
    report = {f.feature: f for f in compare(ref, cur).features}
    assert report["old"].withheld_reason == "current_too_small" and report["old"].missing_ratio == 1.0
    assert report["new"].withheld_reason == "not_in_reference" and report["new"].overall.detected is None
