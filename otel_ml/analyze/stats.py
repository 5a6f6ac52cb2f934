"""Drift statistics on weighted empirical distributions (what a sketch holds), defined exactly.

Every function takes what the profiles give — sorted values with weights for numeric features,
category counts for categorical ones — so the same code computes the exact statistic on raw data
(all weights 1) and the sketch estimate. Definitions, with formulas, are in ``docs/statistics.md``;
``tests/unit/test_stats.py`` compares each with scipy/numpy on raw data.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import TypeVar

import numpy as np
from scipy import special
from scipy import stats as sps

try:
    from otel_ml.analyze import _ecdf
except ImportError:  # built without a C compiler: numpy
    _ecdf = None  # type: ignore[assignment]

K = TypeVar("K", bound=Hashable)

PSI_EPSILON = 1e-4
"""Bin shares below this are raised to it before taking logs in PSI (an empty bin would be infinite)."""
DEFAULT_BINS = 10


# --- numeric ------------------------------------------------------------------------------------
def _cdf_at(values: np.ndarray, weights: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Right-continuous empirical CDF, P(X <= point), of a sorted weighted sample."""
    cum = np.concatenate([[0.0], np.cumsum(weights)])
    return cum[np.searchsorted(values, points, side="right")] / cum[-1]


def ks_statistic(ref: tuple[np.ndarray, np.ndarray], cur: tuple[np.ndarray, np.ndarray]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: max over x of |F_ref(x) − F_cur(x)|, in [0, 1].

    >>> a = (np.array([1.0, 2.0, 3.0]), np.ones(3)); b = (np.array([2.0, 3.0, 4.0]), np.ones(3))
    >>> round(ks_statistic(a, b), 4)
    0.3333
    """
    return ks_and_wasserstein(ref, cur)[0]


def ks_and_wasserstein(ref: tuple[np.ndarray, np.ndarray], cur: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """``(ks_statistic, wasserstein)`` from one pass: both read |F_ref − F_cur| on the union of the values,
    the costliest step of evaluating a numeric feature: compiled (``_ecdf.c``, one merge of the two sorted
    samples), else ``ks_and_wasserstein_numpy``."""
    if _ecdf is not None and len(ref[0]) and len(cur[0]):
        try:
            return _ecdf.ks_and_wasserstein(*(np.ascontiguousarray(a, dtype=np.float64) for a in (*ref, *cur)))
        except ValueError:  # not sorted, or weighing nothing: the general version says what that gives
            pass
    return ks_and_wasserstein_numpy(ref, cur)


def ks_and_wasserstein_numpy(ref: tuple[np.ndarray, np.ndarray],
                             cur: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """``ks_and_wasserstein`` in numpy (the reference of the compiled one, and any input order)."""
    # One stable sort of both samples (two sorted runs: timsort merges them); each sample's running sum over the
    # merged order (the other's places add 0.0, so the sums are the ones a search of its own would read); the CDFs
    # after each distinct value are the sums at its last occurrence. (It was a union of the values and a search of
    # it per sample: twice the sorting.)
    n = len(ref[0])
    values = np.concatenate([ref[0], cur[0]])
    order = np.argsort(values, kind="stable")
    values = values[order]
    last = np.append(np.flatnonzero(values[1:] != values[:-1]), len(values) - 1)
    from_ref = order < n
    weights = np.concatenate([ref[1], cur[1]])[order]
    f_ref = np.cumsum(np.where(from_ref, weights, 0.0))[last]
    f_cur = np.cumsum(np.where(from_ref, 0.0, weights))[last]
    gap = np.abs(f_ref / f_ref[-1] - f_cur / f_cur[-1])
    grid = values[last]
    return float(np.max(gap)), float(np.sum(gap[:-1] * np.diff(grid)))


KS_EXACT_MAX_EN = 1000
"""Up to this effective size n·m/(n+m) the KS p-value uses scipy's finite-n distribution (as
``ks_2samp(method="asymp")``); above, Stephens' corrected limit, within 2% of it there and thousands of
times cheaper (scipy's finite-n survival function took 2 ms per call at n·m/(n+m) = 7,000)."""


def _stephens(en: float) -> float:
    root = math.sqrt(en)
    return root + 0.12 + 0.11 / root


def ks_pvalue(d: float, n: int, m: int) -> float:
    """Two-sided p-value of KS statistic ``d`` for sample sizes n and m. n and m are the real counts, not
    the number of items a sketch retains."""
    if n == 0 or m == 0:
        return 1.0
    en = n * m / (n + m)
    if en <= KS_EXACT_MAX_EN:
        return _probability(float(sps.kstwo.sf(d, round(en))))
    return _probability(float(special.kolmogorov(_stephens(en) * d)))


def _probability(p: float) -> float:
    """``p`` clipped to [0, 1] (NaN stays NaN), as ``np.clip`` would, without its cost per call."""
    return 0.0 if p < 0.0 else 1.0 if p > 1.0 else p


def ks_pvalues_adjusted(d: np.ndarray, n: np.ndarray, m: np.ndarray, tests: int) -> np.ndarray:
    """``min(1, ks_pvalue(d, n, m) × tests)`` of many tests at once (a Bonferroni family of ``tests``).

    Most of a large family's p-values are capped at 1, and scipy's exact finite-sample p-value costs ~0.1 ms a
    call; so each is first screened with Stephens' approximation (a ufunc, within a few percent of the exact
    value for n·m/(n+m) ≥ 4) and the exact ``ks_pvalue`` is computed only where that is below 4/tests. A test
    screened out has an exact p-value above 1/tests, whose adjusted value is 1 either way.

    >>> d = np.array([0.01, 0.2]); n = np.array([2000, 2000]); m = np.array([3000, 3000])
    >>> got = ks_pvalues_adjusted(d, n, m, 50)
    >>> float(got[0]), bool(np.isclose(got[1], min(1.0, ks_pvalue(0.2, 2000, 3000) * 50)))
    (1.0, True)
    """
    d, n, m = (np.asarray(a, dtype=np.float64) for a in (d, n, m))
    out = np.ones(len(d))
    ok = (n > 0) & (m > 0)
    en = np.where(ok, n * m / np.maximum(n + m, 1.0), 1.0)
    root = np.sqrt(en)
    screened = special.kolmogorov((root + 0.12 + 0.11 / root) * d)
    for i in np.flatnonzero(ok & (screened * tests < 4.0)).tolist():
        out[i] = min(1.0, ks_pvalue(float(d[i]), int(n[i]), int(m[i])) * tests)
    return out


def ks_critical(alpha: float, n: int, m: int) -> float:
    """The KS statistic at which ``ks_pvalue`` equals alpha."""
    if n == 0 or m == 0:
        return 1.0
    en = n * m / (n + m)
    if en <= KS_EXACT_MAX_EN:
        return float(sps.kstwo.isf(alpha, round(en)))
    return float(special.kolmogi(alpha) / _stephens(en))


def quantile_edges(ref: tuple[np.ndarray, np.ndarray], bins: int = DEFAULT_BINS) -> np.ndarray:
    """Inner bin edges at the reference's i/bins quantiles (inverted-CDF definition: the smallest
    value whose CDF reaches i/bins), duplicates removed. Equals
    ``np.unique(np.quantile(raw, [i/bins], method="inverted_cdf"))`` on raw data."""
    values, weights = ref
    cum = np.cumsum(weights) / weights.sum()
    qs = np.arange(1, bins) / bins
    # A tiny tolerance so 0.1 * n computed as 0.30000000000000004 does not skip a value.
    idx = np.searchsorted(cum, qs - 1e-12, side="left")
    return np.unique(values[np.minimum(idx, len(values) - 1)])


def binned_shares(sample: tuple[np.ndarray, np.ndarray], edges: np.ndarray) -> np.ndarray:
    """Share of the sample (sorted by value) in each bin (−inf, e1], (e1, e2], …, (e_last, +inf).

    >>> binned_shares((np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 1.0, 1.0, 5.0])), np.array([2.0, 3.5]))
    array([0.25 , 0.125, 0.625])
    """
    if _ecdf is not None and len(sample[0]):
        shares = np.empty(len(edges) + 1)
        try:
            _ecdf.binned_shares(sample[0], sample[1], edges, shares)
            return shares
        except (TypeError, ValueError):  # not float64, edges not sorted: numpy says what that gives
            pass
    cdf = _cdf_at(*sample, edges)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def share_distances(ref_shares: np.ndarray, cur_shares: np.ndarray) -> tuple[float, float, float]:
    """``(psi, js_distance, hellinger)`` of two bin shares, in one compiled pass when built (``_ecdf.c``).

    >>> [round(x, 4) for x in share_distances(np.array([0.5, 0.5]), np.array([0.6, 0.4]))]
    [0.0405, 0.0854, 0.0712]
    """
    if _ecdf is not None:
        try:
            return _ecdf.share_distances(ref_shares, cur_shares, PSI_EPSILON)
        except (TypeError, ValueError):
            pass
    return psi(ref_shares, cur_shares), js_distance(ref_shares, cur_shares), hellinger(ref_shares, cur_shares)


def psi(ref_shares: np.ndarray, cur_shares: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index: Σ (c − r) · ln(c / r), shares clipped below at epsilon.

    >>> round(psi(np.array([0.5, 0.5]), np.array([0.6, 0.4])), 4)
    0.0405
    """
    r = np.maximum(ref_shares, epsilon)
    c = np.maximum(cur_shares, epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(ref_shares: np.ndarray, cur_shares: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (square root of the JS divergence), in [0, 1].
    Equals ``scipy.spatial.distance.jensenshannon(r, c, base=2)``."""
    r = ref_shares / ref_shares.sum()
    c = cur_shares / cur_shares.sum()
    m = (r + c) / 2
    # rel_entr(x, y) = x ln(x / y), 0 where x = 0: one ufunc per side, no masks (a fifth of a feature's scoring).
    kl = float(special.rel_entr(r, m).sum() + special.rel_entr(c, m).sum()) / math.log(2)
    return math.sqrt(max(0.0, kl / 2))


def hellinger(ref_shares: np.ndarray, cur_shares: np.ndarray) -> float:
    """Hellinger distance sqrt(1 − Σ sqrt(r·c)), in [0, 1]."""
    r = ref_shares / ref_shares.sum()
    c = cur_shares / cur_shares.sum()
    return float(math.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(r * c))))))


def wasserstein(ref: tuple[np.ndarray, np.ndarray], cur: tuple[np.ndarray, np.ndarray]) -> float:
    """Wasserstein-1 distance ∫ |F_ref − F_cur| dx. Equals ``scipy.stats.wasserstein_distance``."""
    return ks_and_wasserstein(ref, cur)[1]


def binned_ks(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """KS statistic of two samples known as counts in the same ordered bins: the largest gap between their CDFs
    at the bins' upper edges (for data with one value per bin, exactly ``scipy.stats.ks_2samp``'s D).

    >>> binned_ks(np.array([5.0, 5, 0]), np.array([0.0, 5, 5]))
    0.5
    """
    if _ecdf is not None:
        try:
            return _ecdf.binned_ks(ref_counts, cur_counts)
        except (TypeError, ValueError):
            pass
    return float(np.max(np.abs(np.cumsum(ref_counts) / ref_counts.sum() - np.cumsum(cur_counts) / cur_counts.sum())))


def out_of_range_share(cur: tuple[np.ndarray, np.ndarray], lo: float, hi: float) -> float:
    """Share of the current sample below ``lo`` or above ``hi`` (the reference's min and max)."""
    values, weights = cur
    if _ecdf is not None:
        try:
            return _ecdf.outside_share(values, weights, lo, hi)
        except (TypeError, ValueError):
            pass
    outside = (values < lo) | (values > hi)
    return float(weights[outside].sum() / weights.sum()) if len(values) else 0.0


def weighted_quantiles(sample: tuple[np.ndarray, np.ndarray], qs: tuple[float, ...]) -> list[float]:
    """For each q, the first value (of a non-empty sample sorted by value) whose running weight passes q times the
    total: a KLL sketch's own (exclusive) quantile read from its weighted items.

    >>> weighted_quantiles((np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 1.0])), (0.05, 0.5, 0.95))
    [1.0, 2.0, 3.0]
    """
    values, weights = sample
    if _ecdf is not None:
        try:
            return list(_ecdf.weighted_quantiles(values, weights, *qs))
        except (TypeError, ValueError):
            pass
    cum = np.cumsum(weights)
    at = np.searchsorted(cum, np.array(qs) * cum[-1], side="right")
    return [float(values[min(i, len(values) - 1)]) for i in at]


# --- categorical --------------------------------------------------------------------------------
def category_table(
    ref: Mapping[str, float], cur: Mapping[str, float], ref_other: float = 0.0, cur_other: float = 0.0
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Aligned counts over the union of categories; weight a sketch could not attribute to a
    category (``*_other``) becomes one extra bucket so shares still sum to one."""
    cats = sorted(set(ref) | set(cur))
    r = np.array([ref.get(k, 0.0) for k in cats], dtype=np.float64)
    c = np.array([cur.get(k, 0.0) for k in cats], dtype=np.float64)
    if ref_other > 0 or cur_other > 0:
        cats.append("__other__")
        r = np.append(r, ref_other)
        c = np.append(c, cur_other)
    return cats, r, c


def chi2_homogeneity(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Pearson chi-square test that both samples come from one categorical distribution (2×K table,
    no continuity correction). Returns (statistic, p-value); equals
    ``scipy.stats.chi2_contingency([ref, cur], correction=False)`` after dropping empty columns."""
    keep = (ref_counts + cur_counts) > 0
    table = np.vstack([ref_counts[keep], cur_counts[keep]])
    if table.shape[1] < 2 or table[0].sum() == 0 or table[1].sum() == 0:
        return 0.0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    return stat, float(sps.chi2.sf(stat, table.shape[1] - 1))


def pool_rare(ref_counts: np.ndarray, cur_counts: np.ndarray, min_expected: float = 5.0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Merge the categories whose smaller expected count in the 2×K table is below ``min_expected`` into one
    column (kept only if the pooled column reaches it too, else added to the smallest remaining one), the usual
    condition for the chi-square approximation; without it, many rare categories make the test fire too often.

    >>> r, c = pool_rare(np.array([50.0, 48, 3, 4]), np.array([52.0, 46, 3, 2]))
    >>> r.tolist(), c.tolist()
    ([50.0, 48.0, 7.0], [52.0, 46.0, 5.0])
    >>> r, c = pool_rare(np.array([50.0, 48, 1, 1]), np.array([52.0, 46, 2, 0]))  # pool too small: joins 48/46
    >>> r.tolist(), c.tolist()
    ([50.0, 50.0], [52.0, 48.0])
    """
    total = ref_counts.sum() + cur_counts.sum()
    if total == 0:
        return ref_counts, cur_counts
    smaller_row = min(ref_counts.sum(), cur_counts.sum())
    expected = (ref_counts + cur_counts) * smaller_row / total
    rare = expected < min_expected
    if not rare.any():
        return ref_counts, cur_counts
    r, c = ref_counts[~rare], cur_counts[~rare]
    pooled_r, pooled_c = ref_counts[rare].sum(), cur_counts[rare].sum()
    if (pooled_r + pooled_c) * smaller_row / total >= min_expected or len(r) == 0:
        return np.append(r, pooled_r), np.append(c, pooled_c)
    i = int(np.argmin(r + c))
    r, c = r.copy(), c.copy()
    r[i] += pooled_r
    c[i] += pooled_c
    return r, c


def linf(ref_shares: np.ndarray, cur_shares: np.ndarray) -> float:
    """L∞ distance: the largest difference in any category's share, in [0, 1]."""
    return float(np.max(np.abs(ref_shares / ref_shares.sum() - cur_shares / cur_shares.sum())))


def unseen_share(ref: Mapping[str, float], cur: Mapping[str, float]) -> float:
    """Share of the current sample in categories the reference never had."""
    total = sum(cur.values())
    return float(sum(v for k, v in cur.items() if k not in ref) / total) if total else 0.0


def holm(p_values: Mapping[K, float], alpha: float) -> dict[K, bool]:
    """Holm's step-down decisions at family-wise level ``alpha``: the smallest p against α/m, the next against
    α/(m-1), ... stopping at the first that fails. Some metric fires exactly when Bonferroni's would (the
    smallest p below α/m), so the false-alert rate is Bonferroni's; but once one metric has clearly degraded, a
    correlated one (ROC AUC beside accuracy) is held to a less strict level.

    >>> holm({"accuracy": 1e-6, "f1": 2e-6, "roc_auc": 8.7e-4}, 0.004)
    {'accuracy': True, 'f1': True, 'roc_auc': True}
    >>> holm({"accuracy": 0.5, "roc_auc": 8.7e-4}, 0.004)
    {'roc_auc': True, 'accuracy': False}
    """
    out: dict[K, bool] = {}
    rejecting = True
    for k, name in enumerate(sorted(p_values, key=lambda n: p_values[n])):
        rejecting = rejecting and p_values[name] < alpha / (len(p_values) - k)
        out[name] = rejecting
    return out
