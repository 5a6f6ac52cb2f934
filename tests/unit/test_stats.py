"""Each statistic computed from profiles against scipy/numpy on the raw data.

While a sketch is not in estimation mode (n ≤ its capacity) it holds every value, so sketch-based and
exact values must agree to floating-point precision; above that, the KS statistic may differ by at
most the two sketches' rank errors (DataSketches' documented 99% bound)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

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


def test_compiled_ks_and_wasserstein_equal_the_numpy_reference() -> None:
    """The compiled merge (``_ecdf.c``) against the numpy version on weighted samples with ties within and across
    them (as KLL items have): KS to the bit, Wasserstein within the summation bound; an unsorted sample falls back
    to numpy."""
    if stats._ecdf is None:
        pytest.skip("built without a C compiler")
    rng = np.random.default_rng(3)
    for _ in range(2_000):
        n, m = rng.integers(1, 300, size=2)
        grid = rng.normal(size=rng.integers(1, 60))  # few distinct values: ties everywhere
        ref = (np.sort(rng.choice(grid, n)), rng.choice([1.0, 2.0, 4.0, 0.5], n))
        cur = (np.sort(rng.choice(grid, m) + rng.choice([0.0, 0.25])), rng.choice([1.0, 8.0], m))
        ks, w = stats.ks_and_wasserstein(ref, cur)
        ks_np, w_np = stats.ks_and_wasserstein_numpy(ref, cur)
        assert ks == ks_np
        # Both sum the same n + m nonnegative terms, one in order, the other pairwise: each is within (n + m)·ε of
        # the exact sum relative to it (Higham, Accuracy and Stability of Numerical Algorithms, 4.2), so together
        # within 2(n + m)·ε.
        assert w == pytest.approx(w_np, rel=2 * (n + m) * np.finfo(float).eps, abs=0.0)
    backwards = (np.array([3.0, 1.0, 2.0]), np.ones(3))
    assert stats.ks_and_wasserstein(backwards, (np.array([1.0, 2.0]), np.ones(2))) == \
        stats.ks_and_wasserstein_numpy(backwards, (np.array([1.0, 2.0]), np.ones(2)))


def test_compiled_bin_shares_quantiles_and_distances_equal_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rest of a feature's evaluation in ``_ecdf.c`` (bin shares, quantiles, the share outside the reference's
    range, PSI, JS and Hellinger, binned KS) against the same functions with it switched off, on weighted samples with
    ties and edges at sample values: to the bit where both take running sums in one order (shares, quantiles, binned
    KS), else within the summation bound."""
    if stats._ecdf is None:
        pytest.skip("built without a C compiler")
    compiled = stats._ecdf
    rng = np.random.default_rng(5)
    eps = np.finfo(float).eps

    def both(fn: Callable[..., Any], *args: Any) -> tuple[Any, Any]:
        monkeypatch.setattr(stats, "_ecdf", compiled)
        fast = fn(*args)
        monkeypatch.setattr(stats, "_ecdf", None)
        return fast, fn(*args)

    for _ in range(1_000):
        n = int(rng.integers(1, 400))
        grid = rng.normal(size=rng.integers(1, 80))
        sample = (np.sort(rng.choice(grid, n)), rng.choice([1.0, 2.0, 0.5, 8.0], n))
        edges = np.unique(rng.choice(np.concatenate([grid, rng.normal(size=5)]), rng.integers(0, 12)))
        fast, ref = both(stats.binned_shares, sample, edges)
        assert np.array_equal(fast, ref)
        qs = (*rng.uniform(0, 1, 3).tolist(), 0.0, 1.0)
        fast, ref = both(stats.weighted_quantiles, sample, qs)
        assert fast == ref
        lo, hi = np.sort(rng.choice(grid, 2))
        fast, ref = both(stats.out_of_range_share, sample, float(lo), float(hi))
        assert fast == pytest.approx(ref, rel=2 * n * eps, abs=0.0)
        shares = [np.abs(rng.normal(size=len(edges) + 1)) * rng.integers(0, 2, len(edges) + 1) for _ in range(2)]
        shares = [s + (s.sum() == 0) for s in shares]  # not all zero
        k = len(shares[0])
        fast, ref = both(stats.share_distances, *shares)
        # PSI: a sum of k terms; JS and Hellinger: square roots of 1 − (such a sum), so their error is the sum's
        # over twice the distance (d√x = dx / 2√x).
        assert fast[0] == pytest.approx(ref[0], rel=4 * k * eps, abs=4 * k * eps)
        for got, want in zip(fast[1:], ref[1:]):
            assert got == pytest.approx(want, abs=8 * k * eps / max(want, np.sqrt(eps)))
        counts = [rng.integers(0, 50, 512).astype(dtype) for dtype in rng.choice(
            [np.uint16, np.int32, np.int64, np.float64, np.uint8], 2)]
        fast, ref = both(stats.binned_ks, *counts)
        assert fast == ref
    # What the compiled pass refuses, numpy answers: edges out of order, integer values, a non-contiguous array.
    sample = (np.array([1.0, 2.0, 3.0]), np.ones(3))
    fast, ref = both(stats.binned_shares, sample, np.array([2.5, 1.5]))
    assert np.array_equal(fast, ref, equal_nan=True)
    fast, ref = both(stats.out_of_range_share, (np.array([1, 2, 3]), np.ones(3)), 1.5, 2.5)
    assert fast == ref == pytest.approx(2 / 3)
    fast, ref = both(stats.share_distances, np.array([0.5, 0.1, 0.4])[::2], np.array([0.2, 0.3, 0.8])[::2])
    assert fast == pytest.approx(ref)


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


def _shifted_pair(shift: float, n: int = 5000, seed: int = 3) -> tuple[ModelProfile, ModelProfile]:
    rng = np.random.default_rng(seed)
    ref, cur = ModelProfile("m", ""), ModelProfile("m", "")
    ref.features["x"] = numeric(rng.normal(0, 1, n))
    cur.features["x"] = numeric(rng.normal(shift, 1, n))
    return ref, cur


def test_per_feature_method_and_threshold_feed_overall() -> None:
    ref, cur = _shifted_pair(0.15)
    default = compare(ref, cur).features[0]
    # The KS test at the calibrated level (one feature: no correction).
    assert default.overall.threshold == DriftConfig().evaluation_alpha
    cfg = DriftConfig(features={"m/x": {"method": "wasserstein", "threshold": 0.5}})
    chosen = compare(ref, cur, cfg).features[0]
    w = next(m for m in chosen.methods if m.method == "wasserstein")
    assert chosen.overall.score == w.score and chosen.overall.threshold == 0.5
    assert chosen.overall.detected is False  # 0.15 sd is below the 0.5 threshold
    cfg = DriftConfig(features={"x": {"method": "psi", "threshold": 0.01}})
    assert compare(ref, cur, cfg).features[0].overall.detected is True


def test_config_rejects_unknown_methods(tmp_path) -> None:
    from otel_ml.config import ConfigError, load_config

    f = tmp_path / "c.yaml"
    f.write_text("drift:\n  features:\n    x: {method: magic}\n")
    with pytest.raises(ConfigError, match=r"drift\.features\.x\.method"):
        load_config(f, environ={})


def test_learned_thresholds_from_reference_chunks(tmp_path) -> None:
    from otel_ml.profile.baseline import build_baseline

    rng = np.random.default_rng(9)
    csv = tmp_path / "ref.csv"
    x = rng.normal(0, 1, 20_000)
    csv.write_text("x,c\n" + "".join(f"{v},{'ab'[i % 2]}\n" for i, v in enumerate(x)))
    baseline = build_baseline(csv, "m")
    assert len(baseline.chunks) == 10 and sum(c.rows for c in baseline.chunks) == 20_000
    baseline = ModelProfile.from_json(baseline.to_json())  # chunks survive the file
    cfg = DriftConfig(learned_thresholds=True)
    from otel_ml.analyze.drift import learned_thresholds

    learned = learned_thresholds(baseline, cfg)
    # Chunks of 2,000 against 20,000: PSI noise is about 10 bins / 2,000 → thresholds far below the fixed 0.2.
    assert 0 < learned["x"]["psi"] < 0.05 and 0 < learned["x"]["wasserstein"] < 0.1
    # mean + 3 population standard deviations (ddof=0, NannyML's np.std) of the chunks' own scores
    from otel_ml.analyze.drift import numeric_scores
    psis = [numeric_scores(baseline.features["x"], c.features["x"], cfg.bins)["psi"] for c in baseline.chunks]
    assert learned["x"]["psi"] == pytest.approx(np.mean(psis) + 3 * np.std(psis, ddof=0), rel=1e-12)
    stable, shifted = ModelProfile("m", ""), ModelProfile("m", "")
    stable.features["x"] = numeric(rng.normal(0, 1, 2000))
    shifted.features["x"] = numeric(rng.normal(0.3, 1, 2000))
    psi_of = lambda r: next(m for m in r.features[0].methods if m.method == "psi")  # noqa: E731
    assert psi_of(compare(baseline, stable, cfg)).detected is False
    assert psi_of(compare(baseline, shifted, cfg)).detected is True
    assert psi_of(compare(baseline, shifted, cfg)).threshold == pytest.approx(learned["x"]["psi"])

distributions = st.sampled_from(["normal", "lognormal", "uniform", "poisson", "mixture"])


def _sample(rng: np.random.Generator, kind: str, n: int, shift: float) -> np.ndarray:
    if kind == "normal":
        return rng.normal(shift, 1, n)
    if kind == "lognormal":
        return rng.lognormal(shift, 1, n)
    if kind == "uniform":
        return rng.uniform(shift, 1 + shift, n)
    if kind == "poisson":
        return rng.poisson(3 + shift, n).astype(np.float64)
    return np.where(rng.random(n) < 0.3, rng.normal(-2, 0.5, n), rng.normal(1 + shift, 1, n))


@settings(max_examples=25, deadline=None)
@given(distributions, st.integers(1_000, 150_000), st.integers(1_000, 150_000), st.floats(0, 0.5),
       st.integers(0, 2**32 - 1))


def test_estimation_mode_within_documented_bounds(kind: str, n: int, m: int, shift: float, seed: int) -> None:
    """Beyond the sketch's capacity: every CDF value is within the rank error ε (99% bound, checked here at
    every point, so a rare miss would be a real finding), hence KS within ε_R + ε_C, bin shares within 2ε,
    and Wasserstein within (ε_R + ε_C) · range."""
    rng = np.random.default_rng(seed)
    ra, rb = _sample(rng, kind, n, 0.0), _sample(rng, kind, m, shift)
    pa, pb = numeric(ra), numeric(rb)
    ia, ib = pa.weighted_items(), pb.weighted_items()
    ea, eb = pa.rank_error(), pb.rank_error()
    assert abs(stats.ks_statistic(ia, ib) - sps.ks_2samp(ra, rb).statistic) <= ea + eb
    edges = stats.quantile_edges(ia)
    full = np.concatenate([[-np.inf], edges, [np.inf]])
    raw_shares = np.array([np.mean((rb > lo) & (rb <= hi)) for lo, hi in itertools.pairwise(full)])
    assert np.max(np.abs(stats.binned_shares(ib, edges) - raw_shares)) <= 2 * eb + 1e-12
    data_range = max(ra.max(), rb.max()) - min(ra.min(), rb.min())
    assert abs(stats.wasserstein(ia, ib) - sps.wasserstein_distance(ra, rb)) <= (ea + eb) * data_range


@settings(max_examples=10, deadline=None)
@given(st.integers(800, 5_000), st.integers(0, 2**32 - 1))
def test_frequent_items_beyond_exact_capacity_stay_within_their_error(n_categories: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, n_categories + 1)
    values = rng.choice(np.array([f"c{i}" for i in range(n_categories)]), 50_000, p=weights / weights.sum())
    p = CategoricalProfile()
    p.update(values)
    truth = dict(zip(*np.unique(values, return_counts=True)))
    err = p.max_error()
    for item, est in p.frequencies().items():
        assert abs(est - truth[item]) <= err
    # Nothing frequent is missed: every category above the error bound is reported.
    reported = p.frequencies()
    assert all(k in reported for k, v in truth.items() if v > err)


def _zipf_categories(rng: np.random.Generator, k: int, n: int, p: np.ndarray | None = None) -> np.ndarray:
    if p is None:
        p = 1 / np.arange(1, k + 1) ** 1.1
        p = p / p.sum()
    return np.array([f"cat-{i}" for i in range(k)])[rng.choice(k, n, p=p)]


@settings(max_examples=6, deadline=None)
@given(st.sampled_from([1_000, 3_000, 100_000]), st.integers(0, 2**32 - 1))
def test_high_cardinality_chi_square_is_the_exact_test_on_hashed_buckets(k: int, seed: int) -> None:
    """Past the frequent-items sketch's exact capacity the test runs on exact bucket counts: its p-value equals
    scipy's chi-square on bucket counts computed independently from the raw values (same pooling)."""
    import zlib

    rng = np.random.default_rng(seed)
    raw_ref, raw_cur = _zipf_categories(rng, k, 20_000), _zipf_categories(rng, k, 20_000)
    ref, cur = CategoricalProfile(), CategoricalProfile()
    for raw, prof in ((raw_ref, ref), (raw_cur, cur)):
        for part in np.array_split(raw, 3):  # windows merged into a horizon, as the processor does
            w = CategoricalProfile()
            w.update(part)
            prof.merge(w)
    assert not (ref.is_exact() and cur.is_exact())

    def buckets(raw: np.ndarray) -> np.ndarray:
        ids = [zlib.crc32(v.encode()) % 2048 for v in raw.tolist()]
        return np.bincount(ids, minlength=2048).astype(np.float64)

    rb, cb = buckets(raw_ref), buckets(raw_cur)
    used = (rb + cb) > 0
    r, c = stats.pool_rare(rb[used], cb[used])
    exact_p = sps.chi2_contingency(np.vstack([r, c]), correction=False)[1]
    [f] = compare(ModelProfile.from_dict(_one_feature(ref)), ModelProfile.from_dict(_one_feature(cur))).features
    assert f.overall.score == pytest.approx(exact_p, rel=1e-9, abs=1e-300)
    assert f.withheld_reason == ""  # exact counts: nothing below a resolution
    # The distances are computed on the same counts, so they agree (before, Hellinger read 0 where JS read 0.48):
    # for close distributions JS (base 2) ≈ Hellinger / sqrt(ln 2).
    scores = {m.method: m.score for m in f.methods}
    assert scores["hellinger"] > 0
    assert scores["js"] == pytest.approx(scores["hellinger"] / math.sqrt(math.log(2)), rel=0.15)
    assert math.isnan(f.unseen_ratio) or ref.is_exact()  # only a reference that kept every category vouches


def _one_feature(p: CategoricalProfile) -> dict:
    m = ModelProfile("m", "")
    m.features["c"] = p
    m.rows = p.rows
    return m.to_dict()  # through serialization, as checkpoints and baselines are


def test_high_cardinality_a_tail_shift_is_detected_and_a_same_law_is_not() -> None:
    rng = np.random.default_rng(3)
    k = 50_000
    p = 1 / np.arange(1, k + 1) ** 1.1
    p = p / p.sum()
    q = p.copy()
    q[100:] *= np.where(np.arange(100, k) % 3 == 0, 1.6, 0.7)  # the tail reshuffled, the top 100 intact
    q /= q.sum()
    ref = ModelProfile("m", "")
    same = ModelProfile("m", "")
    shifted = ModelProfile("m", "")
    for prof, law in ((ref, p), (same, p), (shifted, q)):
        values = _zipf_categories(rng, k, 50_000, law)
        from otel_ml.decode.batch import ColumnarBatch

        prof.update(ColumnarBatch("m", "", len(values), np.zeros(len(values), np.int64), np.ones(len(values)),
                                  categorical={"c": values}), {"c": "categorical"})
    assert compare(ref, same).features[0].overall.detected is False
    assert compare(ref, shifted).features[0].overall.detected is True


def _horizon(values: np.ndarray, grids: dict) -> ModelProfile:
    """Windows of one model sharing its grids, merged into a horizon, as WindowedProfile does."""
    from otel_ml.decode.batch import ColumnarBatch

    out = ModelProfile("m", "")
    for part in np.array_split(values, 4):
        w = ModelProfile("m", "", grids=grids)
        w.update(ColumnarBatch("m", "", len(part), np.zeros(len(part), np.int64), np.ones(len(part)),
                               numeric={"x": part}), {"x": "numeric"})
        out.merge(w)
    return ModelProfile.from_dict(out.to_dict())  # through serialization, as checkpoints and baselines are


@settings(max_examples=8, deadline=None)
@given(st.sampled_from(["normal", "lognormal", "integer", "offset"]), st.floats(0.0, 0.1), st.integers(0, 2**32 - 1))
def test_numeric_test_runs_on_exact_grid_counts(dist: str, shift: float, seed: int) -> None:
    """The KS test no longer allows for the sketches' rank error: its D is computed from exact counts on the
    model's grid, equal to the KS statistic of the raw values coarsened to that grid (numpy on the raw data),
    and its p-value is that D's; it is never more than the raw D (coarsening only hides differences)."""
    from otel_ml.profile.sketch import grid_bins

    rng = np.random.default_rng(seed)
    draw = {"normal": lambda d: rng.normal(d, 1, 20_000), "lognormal": lambda d: rng.lognormal(d, 1, 20_000),
            "integer": lambda d: rng.poisson(4 * (1 + d), 20_000).astype(float),
            "offset": lambda d: rng.normal(1_000 + d * 0.01, 0.01, 20_000)}[dist]
    raw_ref, raw_cur = draw(0.0), draw(shift)
    grids: dict = {}
    ref = _horizon(raw_ref, grids)
    cur = _horizon(raw_cur, dict(grids))
    grid = grids["x"]
    assert ref.features["x"].grid == cur.features["x"].grid == grid
    rb = np.bincount(grid_bins(raw_ref, grid), minlength=512)
    cb = np.bincount(grid_bins(raw_cur, grid), minlength=512)
    d_exact_grid = np.max(np.abs(np.cumsum(rb) / rb.sum() - np.cumsum(cb) / cb.sum()))
    [f] = compare(ref, cur, DriftConfig()).features
    ks = next(m for m in f.methods if m.method == "ks")
    assert ks.score == pytest.approx(d_exact_grid, abs=1e-12)
    assert ks.score <= sps.ks_2samp(raw_ref, raw_cur).statistic + 1e-12
    assert f.overall.score == pytest.approx(stats.ks_pvalue(d_exact_grid, 20_000, 20_000), rel=1e-9)
    assert f.withheld_reason == ""  # exact counts: nothing is below a resolution any more


def test_a_shift_the_exact_ks_test_sees_is_seen() -> None:
    """The issue's case: N(0,1) against N(0.06,1), 20,000 rows a side: exact KS p ≈ 1e-7; the sketch-based test
    said p = 0.34. A same-law current stays quiet."""
    rng = np.random.default_rng(11)
    grids: dict = {}
    ref = _horizon(rng.normal(0, 1, 20_000), grids)
    shifted = _horizon(rng.normal(0.06, 1, 20_000), dict(grids))
    same = _horizon(rng.normal(0, 1, 20_000), dict(grids))
    assert compare(ref, shifted).features[0].overall.detected is True
    assert compare(ref, same).features[0].overall.detected is False


def test_windows_share_the_grid_and_a_pinned_reference_keeps_it(tmp_path) -> None:
    from otel_ml.decode.batch import ColumnarBatch
    from otel_ml.profile.window import WindowConfig, WindowedProfile

    rng = np.random.default_rng(5)
    wp = WindowedProfile("m", "", WindowConfig(window_seconds=1, horizon_seconds=2, reference_min_rows=100))
    for second in range(6):
        t = np.full(50, second * 10**9 + 1, np.int64)
        wp.update(ColumnarBatch("m", "", 50, t, np.ones(50), numeric={"x": rng.normal(0, 1, 50)}, span_end_ns=t,
                                span_duration_s=np.full(50, np.nan), span_error=np.zeros(50, bool)))
    assert wp.reference_source == "pinned" and wp.reference is not None
    grid = wp.grids["x"]
    assert wp.reference.features["x"].grid == grid
    assert all(w.features["x"].grid == grid for w in wp.windows.values())
    assert compare(wp.reference, wp.current()).features[0].resolution == 0.0  # compared on exact counts
    restored = WindowedProfile.from_state(wp.to_state(), {s: ModelProfile.from_dict(w.to_dict())
                                                          for s, w in wp.windows.items()}, wp.window, wp.sketch)
    assert restored.grids["x"] == grid


def test_an_effect_floor_decides_what_is_too_small_to_matter() -> None:
    """With exact tests a 0.06σ shift at 20,000 rows is significant; a Wasserstein floor of 0.1σ (global, or for
    one feature) says it does not matter: overall 0, withheld as below_effect_floor, the effect still reported.
    A 0.3σ shift clears the floor."""
    rng = np.random.default_rng(2)
    grids: dict = {}
    ref = _horizon(rng.normal(0, 1, 20_000), grids)
    small = _horizon(rng.normal(0.06, 1, 20_000), dict(grids))
    large = _horizon(rng.normal(0.3, 1, 20_000), dict(grids))
    for cfg in (DriftConfig(min_effect={"wasserstein": 0.1}),
                DriftConfig(features={"m/x": {"min_effect": {"wasserstein": 0.1}}})):
        [f] = compare(ref, small, cfg).features
        w = next(m for m in f.methods if m.method == "wasserstein")
        assert f.overall.score < cfg.evaluation_alpha and w.score < 0.1  # significant, and small
        assert f.overall.detected is None and f.withheld_reason == "below_effect_floor"
        [g] = compare(ref, large, cfg).features
        assert g.overall.detected is True and g.withheld_reason == ""
    assert compare(ref, small).features[0].overall.detected is True  # no floor by default
