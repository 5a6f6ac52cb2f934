"""Where scores are computed: compare a current profile with its reference, feature by feature.

Decisions (see docs/statistics.md):
- Every method has a score and a threshold; ``detected`` is ``score > threshold`` (for p-values,
  ``score < threshold``), or None when the decision is withheld.
- The ``overall`` decision per feature comes from a hypothesis test — KS for numeric features,
  chi-square for categorical ones — at the model's family-wise level ``evaluation_alpha`` (Bonferroni over
  the model's features; calibrated to one false alert episode per expected run time), and fires only when
  the difference exceeds what the sketches can resolve.
- A decision is withheld (score still exported) when either sample has fewer than ``min_samples``
  values; ``withheld_reason`` says why.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from otel_ml.analyze import stats
from otel_ml.analyze.attribution import DEFAULT_NDCG_THRESHOLD, AttributionDrift, compare_attributions
from otel_ml.analyze.correlation import CorrelationChange, correlation_changes
from otel_ml.analyze.exemplars import Exemplar, feature_exemplars
from otel_ml.analyze.segments import SegmentContribution, SegmentReport, compare_segments
from otel_ml.profile.comoments import Comoments
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import CategoricalProfile, NumericProfile
from otel_ml.semconv import ATTRIBUTION_FEATURE, CORRELATION_FEATURE, OVERALL_METHOD

DEFAULT_EFFECT_SIZE = {"numeric": "wasserstein", "categorical": "js", "correlation": "r_change"}
"""The effect size shown and exported per feature kind unless ``export.effect_size`` says otherwise."""

@dataclass(frozen=True)
class DriftConfig:
    alpha: float | None = None
    """Family-wise false-alarm level per model and evaluation (Bonferroni across the model's features). Default
    (None): derived from ``expected_run_days`` and ``alert_for_seconds`` (see ``evaluation_alpha``)."""
    expected_run_days: float = 30.0
    """How long a stationary model should run, on average, between two false alert episodes. The horizon is
    re-evaluated every few seconds while it slides, so a per-evaluation level of 0.05 would alarm many times a
    day; this is the number a user can reason about."""
    alert_for_seconds: float = 600.0
    """How long ``ml_drift_detected`` must stay 1 before the alert rule fires (its ``for:``; the shipped rules say
    10m). Keep the two in step: a shorter ``for:`` needs a proportionally smaller level."""
    min_samples: int = 100
    """Fewer values than this in the reference or the current horizon: decision withheld."""
    correlation_features: int = 10
    """Numeric features per model whose pairwise correlations are kept per window and tested for a change (the
    row ``(correlation)``; 0: off). Which ones: a baseline's choice (``baseline build --correlation-features``), else
    those with the most values (at least 100) in the windows kept, then by name (otel_ml/profile/comoments.py)."""
    bins: int = stats.DEFAULT_BINS
    thresholds: dict[str, float] = field(default_factory=lambda: {
        "psi": 0.2, "js": 0.1, "hellinger": 0.1, "wasserstein": 0.1, "linf": 0.1, "r_change": 0.1, "ndcg": 0.9})
    """Thresholds of the distance methods (each gets its own 0/1 decision; by default none feeds ``overall``);
    ``ndcg``: the row ``(attribution)`` is drift below it (otel_ml/analyze/attribution.py)."""
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per feature (key ``feature`` or ``model/feature``): ``method`` that feeds ``overall`` (``auto``: KS for
    numeric, chi2 for categorical; or any distance method) and its ``threshold``."""
    learned_thresholds: bool = False
    """NannyML-style: distance-method thresholds = mean + learned_sigma·std of the scores of reference chunks
    against the whole reference (needs a reference with chunks: baselines and pinned references have them)."""
    learned_sigma: float = 3.0
    min_effect: dict[str, float] = field(default_factory=dict)
    """Practical significance: per distance method, the smallest effect that matters, e.g. ``{"wasserstein":
    0.1}`` (a tenth of the reference's σ) or ``{"js": 0.05}``. A feature whose test fires while a configured
    effect of its kind is below its floor is not drifting: ``overall`` 0, withheld as ``below_effect_floor`` (the
    effect is still exported beside it). Per feature: ``features: {"m/x": {"min_effect": {...}}}``. Default none:
    the tests are exact, so at large n they see small shifts; a floor is how to say which ones do not matter."""

    @property
    def evaluation_alpha(self) -> float:
        """The family-wise level each evaluation is tested at: ``alpha`` when set, else alert_for / expected run.

        Why that bounds false alerts: under no drift each evaluation fires with probability at most α, so over a
        time T evaluated every e seconds the expected number of firing evaluations is at most α·T/e. An alert
        episode needs the decision to hold for ``alert_for_seconds`` (F), i.e. at least F/e firing evaluations,
        and episodes do not share evaluations; so E[episodes in T] ≤ α·T/F, whatever the correlation between
        overlapping horizons. α = F / (expected run) makes that at most one per expected run (measured:
        docs/benchmarks.md, "Alert episodes on a stationary model").

        >>> DriftConfig().evaluation_alpha  # 10 minutes / 30 days
        0.0002314814814814815
        >>> DriftConfig(alpha=0.05).evaluation_alpha
        0.05
        """
        if self.alpha is not None:
            return self.alpha
        return self.alert_for_seconds / (self.expected_run_days * 86_400)


DISTRIBUTION_QUANTILES = (0.05, 0.5, 0.95)
DISTRIBUTION_TOP_CATEGORIES = 5
_QUANTILE_NAMES = tuple(f"{q:g}" for q in DISTRIBUTION_QUANTILES)


def current_distribution(cur: NumericProfile | CategoricalProfile,
                         items: tuple[np.ndarray, np.ndarray] | None = None,
                         frequencies: dict[str, int] | None = None) -> dict[str, Any]:
    """What ``export.distribution`` shows of a current horizon: mean and a few quantiles, or the top categories'
    shares (the categories the frequent-items sketch holds; exact while it is). ``items``: the numeric sketch's
    sorted weighted items when the caller has them (the quantiles are read from them, as the sketch would);
    ``frequencies``: the categorical sketch's, likewise."""
    if not cur.count:
        return {}
    if isinstance(cur, NumericProfile):
        if items is None:
            quantiles = {f"{q:g}": cur.quantile(q) for q in DISTRIBUTION_QUANTILES}
        else:
            quantiles = dict(zip(_QUANTILE_NAMES, stats.weighted_quantiles(items, DISTRIBUTION_QUANTILES)))
        return {"current_mean": cur.mean, "current_quantiles": quantiles}
    freq = cur.frequencies() if frequencies is None else frequencies
    top = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:DISTRIBUTION_TOP_CATEGORIES]
    return {"top_categories": [(k, v / cur.count) for k, v in top]}


@dataclass
class MethodResult:
    method: str
    score: float
    threshold: float
    detected: bool | None
    """None when withheld."""
    p_value: bool = False
    """``score`` is a test's p-value (low means drift; exported as ml_drift_p_value), not a statistic or a distance
    (high means drift; ml_drift_score)."""


@dataclass
class FeatureReport:
    feature: str
    kind: str
    reference_count: int
    current_count: int
    methods: list[MethodResult]
    overall: MethodResult
    withheld_reason: str = ""
    """Empty, or why decisions are withheld: ``reference_too_small``, ``current_too_small``,
    ``below_sketch_resolution``, ``kind_mismatch``, ``not_in_reference``, ``absent_from_current`` (the reference
    has the feature, no current row carries it), ``empty``."""
    missing_ratio: float = math.nan
    type_mismatch_ratio: float = math.nan
    unseen_ratio: float = math.nan
    out_of_range_ratio: float = math.nan
    resolution: float = 0.0
    """The smallest difference (in the overall test's distance) the two sketches can resolve."""
    ratio_resolution: float = 0.0
    """The current sketch's own error on a share (0 while it is exact): ``out_of_range_ratio`` and
    ``unseen_ratio`` are estimates from it, and a value at or below this cannot be told from 0."""
    current_mean: float = math.nan
    """Numeric: the current horizon's mean (exact)."""
    current_quantiles: dict[str, float] = field(default_factory=dict)
    """Numeric: the current horizon's quantiles ``DISTRIBUTION_QUANTILES`` (from its sketch)."""
    top_categories: list[tuple[str, float]] = field(default_factory=list)
    """Categorical: the current horizon's most frequent categories and their shares (at most
    ``DISTRIBUTION_TOP_CATEGORIES``)."""
    exemplars: list[Exemplar] = field(default_factory=list)
    """Example predictions (their spans), from where the distribution moved most (analyze/exemplars.py): chosen at
    evaluation for a feature found drifted (what the exporter sends), on request for the others
    (``exemplars_of``: a 5,000-feature evaluation would spend a fifth more on them)."""


@dataclass
class ModelReport:
    model: str
    version: str
    reference_source: str | None
    reference_rows: int
    current_rows: int
    features: list[FeatureReport]
    latency_p50: float = math.nan
    latency_p95: float = math.nan
    latency_p99: float = math.nan
    error_ratio: float = math.nan
    lost_ratio: float = math.nan
    """Share of the predictions senders recorded (``ml.sequence``) that never arrived, over the current horizon;
    NaN when no sender numbers its spans."""
    reference_pending_rows: int = 0
    """Without a reference: rows still needed before one is pinned from live traffic (0 otherwise)."""
    unprofiled_features: int = 0
    """Features of the model beyond ``limits.max_profiled_features_per_model``: received, not profiled."""
    last_data_ns: int = 0
    """When data of the model last arrived (the processor's clock; the newest event time after a restart before
    new data); 0: unknown."""
    correlations: list[CorrelationChange] = field(default_factory=list)
    """The feature pairs whose correlation changed most (``(correlation)``'s evidence), most changed first."""
    segments: list[SegmentReport] = field(default_factory=list)
    """Drift per segment (a segmented model with a segmented reference; analyze/segments.py)."""
    segment_contributions: list[SegmentContribution] = field(default_factory=list)
    """Per numeric feature, each segment's part in the change of its mean, largest first."""
    attribution: AttributionDrift | None = None
    """The importance ranking against the reference's (the ``(attribution)`` row's evidence); None: the model's
    spans carry no ``ml.attribution.*``."""


def _quality(prof: NumericProfile | CategoricalProfile) -> tuple[float, float]:
    rows = prof.rows
    if not rows:
        return math.nan, math.nan
    return prof.missing / rows, prof.mismatch / rows


def _withheld(ref_count: int, cur_count: int, cfg: DriftConfig) -> str:
    if ref_count < cfg.min_samples:
        return "reference_too_small"
    if cur_count < cfg.min_samples:
        return "current_too_small"
    return ""


def _decide(score: float, threshold: float, withheld: str, lower_is_drift: bool = False) -> bool | None:
    if withheld or math.isnan(score):
        return None
    return score < threshold if lower_is_drift else score > threshold


NUMERIC_METHODS = ("ks", "psi", "js", "hellinger", "wasserstein")
CATEGORICAL_METHODS = ("chi2", "psi", "js", "hellinger", "linf")
TEST_METHODS = {"ks", "chi2"}
"""Hypothesis tests: their thresholds come from alpha, not from ``thresholds``."""


Items = tuple[np.ndarray, np.ndarray]


def _reference_bins(sample: Items, bins: int) -> tuple[np.ndarray, np.ndarray]:
    edges = stats.quantile_edges(sample, bins)
    return edges, stats.binned_shares(sample, edges)


def numeric_scores(ref: NumericProfile, cur: NumericProfile, bins: int,
                   items: tuple[Items, Items] | None = None) -> dict[str, float]:
    """Every numeric method's score (KS: the statistic) for two non-empty profiles."""
    r, c = items or (ref.weighted_items(), cur.weighted_items())
    # The reference's bins and its shares in them change only with the reference: kept on it between evaluations.
    edges, rs = ref.derived(("bins", bins), lambda sample: _reference_bins(sample, bins))
    cs = stats.binned_shares(c, edges)
    std = ref.std
    ks, w = stats.ks_and_wasserstein(r, c)
    psi, js, hellinger = stats.share_distances(rs, cs)
    return {"ks": ks, "psi": psi, "js": js, "hellinger": hellinger, "wasserstein": w / std if std > 0 else w}


def category_counts(ref: CategoricalProfile, cur: CategoricalProfile) -> tuple[np.ndarray, np.ndarray, bool]:
    """The aligned counts every categorical method compares, and whether they are exact.

    Per category while both frequent-items sketches are exact (below 768 categories at the default size). Past
    that, per hash bucket of the category (``sketch.category_buckets``): exact counts of a fixed function of the
    data, so the test keeps its level at any cardinality and collisions only cost power. The sketches' own
    estimates would not: the reference's tail is dropped, the current tail looks new, and identical
    distributions fail the test. Profiles written before buckets existed fall back to those estimates (plus one
    cell for what the sketch could not attribute), flagged as not exact.
    """
    if ref.is_exact() and cur.is_exact():
        _, rc, cc = stats.category_table(ref.frequencies(), cur.frequencies())
        return rc, cc, True
    if ref.buckets is not None and ref.buckets == cur.buckets:
        rb, cb = ref.bucket_table(), cur.bucket_table()
        assert rb is not None and cb is not None
        used = (rb + cb) > 0  # empty buckets change no score; dropping them keeps the distances' sums short
        return rb[used], cb[used], True
    rf, cf = ref.frequencies(), cur.frequencies()
    _, rc, cc = stats.category_table(rf, cf, ref.count - sum(rf.values()), cur.count - sum(cf.values()))
    return rc, cc, False


def exact_bins(ref: NumericProfile, cur: NumericProfile) -> tuple[np.ndarray, np.ndarray] | None:
    """Both profiles' exact counts per bin when they count every value on one grid, else None (a reference
    built before grids existed or on another grid; windows binned before the model's grid was chosen)."""
    if ref.grid is None or ref.grid != cur.grid:
        return None
    rb, cb = ref.bin_table(), cur.bin_table()
    if rb is None or cb is None or rb.sum() != ref.count or cb.sum() != cur.count:
        return None
    return rb, cb


def categorical_scores(ref: CategoricalProfile, cur: CategoricalProfile,
                       counts: tuple[np.ndarray, np.ndarray, bool] | None = None) -> dict[str, float]:
    """Every categorical method's score (chi2: the p-value), all on the table the test sees: the counts of
    ``category_counts`` with rare categories pooled. The distances then agree with each other and with the test,
    and are not inflated by cells too sparse to estimate (thousands of categories of a few rows each put the
    Jensen-Shannon distance of two samples of one law above 0.1)."""
    rc, cc, _ = counts or category_counts(ref, cur)
    rc, cc = stats.pool_rare(rc, cc)
    rs, cs = rc / rc.sum(), cc / cc.sum()
    psi, js, hellinger = stats.share_distances(rs, cs)
    return {"chi2": stats.chi2_homogeneity(rc, cc)[1], "psi": psi, "js": js, "hellinger": hellinger,
            "linf": stats.linf(rc, cc)}


def _overall_from(method: str, methods: list[MethodResult], withheld: str) -> MethodResult:
    """``overall`` taken from a chosen distance method (per-feature config)."""
    chosen = next(m for m in methods if m.method == method)
    return MethodResult(OVERALL_METHOD, chosen.score, chosen.threshold, None if withheld else chosen.detected,
                        chosen.p_value)


def _empty_report(name: str, kind: str, n: int, m: int, method_names: tuple[str, ...], thresholds: dict[str, float],
                  alpha: float, reason: str, cur: NumericProfile | CategoricalProfile) -> FeatureReport:
    """No comparison (one side empty, or not comparable): every score NaN, every decision withheld, data quality
    still reported."""
    methods = [MethodResult(k, math.nan, alpha if k in TEST_METHODS else thresholds.get(k, math.nan), None)
               for k in method_names]
    return FeatureReport(name, kind, n, m, methods, MethodResult(OVERALL_METHOD, math.nan, alpha, None), reason,
                         *_quality(cur), **current_distribution(cur))


def compare_numeric(
    name: str, ref: NumericProfile, cur: NumericProfile, cfg: DriftConfig, alpha: float,
    thresholds: dict[str, float] | None = None, method: str = "auto",
) -> FeatureReport:
    thresholds = thresholds or cfg.thresholds
    missing, mismatch = _quality(cur)
    n, m = ref.count, cur.count
    withheld = _withheld(n, m, cfg)
    if n == 0 or m == 0:
        return _empty_report(name, "numeric", n, m, NUMERIC_METHODS, thresholds, alpha, withheld or "empty", cur)
    r, c = ref.weighted_items(), cur.weighted_items()
    scores = numeric_scores(ref, cur, cfg.bins, (r, c))
    binned = exact_bins(ref, cur)
    if binned is not None:
        # Exact counts on one grid: the KS statistic over the grid's bin edges, no sketch error to allow for.
        # Coarsening only lowers D, and near its maximum (where D is flat) by a second-order amount, so the test
        # keeps its level and nearly all of the exact test's power.
        scores["ks"] = stats.binned_ks(*binned)
    d = scores["ks"]
    resolution = 0.0 if binned is not None else ref.rank_error() + cur.rank_error()
    # Significance of the part of the gap the sketches can vouch for: equals the exact test when exact.
    p_resolved = stats.ks_pvalue(max(0.0, d - resolution), n, m)
    ks_threshold = stats.ks_critical(alpha, n, m) + resolution
    methods = [MethodResult("ks", d, ks_threshold, _decide(d, ks_threshold, withheld))]
    methods += [MethodResult(k, v, thresholds[k], _decide(v, thresholds[k], withheld))
                for k, v in scores.items() if k != "ks"]
    if method in ("auto", "ks"):
        if not withheld and resolution > 0 and p_resolved >= alpha and stats.ks_pvalue(d, n, m) < alpha:
            withheld = "below_sketch_resolution"  # significant only if the sketches were exact
        overall = MethodResult(OVERALL_METHOD, p_resolved, alpha,
                               _decide(p_resolved, alpha, withheld, lower_is_drift=True), p_value=True)
    else:
        overall = _overall_from(method, methods, withheld)
    return FeatureReport(name, "numeric", n, m, methods, overall, withheld, missing, mismatch,
                         unseen_ratio=math.nan, out_of_range_ratio=stats.out_of_range_share(c, ref.min, ref.max),
                         resolution=resolution, ratio_resolution=cur.rank_error(), **current_distribution(cur, c))


def compare_categorical(
    name: str, ref: CategoricalProfile, cur: CategoricalProfile, cfg: DriftConfig, alpha: float,
    thresholds: dict[str, float] | None = None, method: str = "auto",
) -> FeatureReport:
    thresholds = thresholds or cfg.thresholds
    missing, mismatch = _quality(cur)
    n, m = ref.count, cur.count
    withheld = _withheld(n, m, cfg)
    if n == 0 or m == 0:
        return _empty_report(name, "categorical", n, m, CATEGORICAL_METHODS, thresholds, alpha, withheld or "empty",
                             cur)
    counts = category_counts(ref, cur)
    scores = categorical_scores(ref, cur, counts)
    p = scores["chi2"]
    # Exact counts (categories or hash buckets) resolve any difference. Only the fallback on the sketches'
    # estimates is uncertain, by max_error / total on each side.
    resolution = 0.0 if counts[2] else ref.max_error() / n + cur.max_error() / m
    methods = [MethodResult("chi2", p, alpha, _decide(p, alpha, withheld, lower_is_drift=True), p_value=True)]
    methods += [MethodResult(k, v, thresholds[k], _decide(v, thresholds[k], withheld))
                for k, v in scores.items() if k != "chi2"]
    if method in ("auto", "chi2"):
        if not withheld and resolution > 0 and scores["linf"] <= resolution and p < alpha:
            withheld = "below_sketch_resolution"
        overall = MethodResult(OVERALL_METHOD, p, alpha, _decide(p, alpha, withheld, lower_is_drift=True),
                               p_value=True)
    else:
        overall = _overall_from(method, methods, withheld)
    cur_freq = cur.frequencies()
    return FeatureReport(name, "categorical", n, m, methods, overall, withheld, missing, mismatch,
                         # Only a reference sketch that never dropped a category can vouch that one is new.
                         unseen_ratio=stats.unseen_share(ref.frequencies(), cur_freq) if ref.is_exact()
                         else math.nan,
                         out_of_range_ratio=math.nan, resolution=resolution, ratio_resolution=cur.max_error() / m,
                         **current_distribution(cur, frequencies=cur_freq))


def learned_thresholds(reference: ModelProfile, cfg: DriftConfig) -> dict[str, dict[str, float]]:
    """NannyML-style thresholds per feature and distance method: mean + ``learned_sigma`` standard deviations
    of the method's score between each chunk of the reference and the whole reference. The population standard
    deviation (ddof=0), as NannyML's ``StandardDeviationThreshold`` computes it (``np.std``), so a threshold
    learned here equals NannyML's on the same chunks. Computed once per reference (cached on it). Empty without
    at least 3 chunks."""
    if reference.learned_thresholds is not None:
        return reference.learned_thresholds
    out: dict[str, dict[str, float]] = {}
    chunks = reference.chunks
    if len(chunks) >= 3:
        for name, prof in reference.features.items():
            samples: dict[str, list[float]] = {}
            for chunk in chunks:
                cp = chunk.features.get(name)
                if cp is None or cp.kind != prof.kind or not cp.count or not prof.count:
                    continue
                sc = (numeric_scores(prof, cp, cfg.bins) if isinstance(prof, NumericProfile)  # type: ignore[arg-type]
                      else categorical_scores(prof, cp))  # type: ignore[arg-type]
                for k, v in sc.items():
                    if k not in TEST_METHODS:
                        samples.setdefault(k, []).append(v)
            out[name] = {k: float(np.mean(v) + cfg.learned_sigma * np.std(v, ddof=0))
                         for k, v in samples.items() if len(v) >= 3}
    reference.learned_thresholds = out
    return out


def _apply_effect_floor(report: FeatureReport, floors: dict[str, float]) -> FeatureReport:
    """``report`` with a detection below any configured effect floor (of a method the feature has) turned into
    ``below_effect_floor``: significant, too small to matter."""
    if not report.overall.detected:
        return report
    scores = {m.method: m.score for m in report.methods}
    if all(scores[m] >= floor for m, floor in floors.items() if m in scores and not math.isnan(scores[m])):
        return report
    overall = dataclasses.replace(report.overall, detected=None)
    return dataclasses.replace(report, overall=overall, withheld_reason="below_effect_floor")


def feature_settings(cfg: DriftConfig, model: str, feature: str) -> dict[str, Any]:
    """The per-feature entry of ``drift.features``: ``model/feature`` first, then ``feature``."""
    return cfg.features.get(f"{model}/{feature}") or cfg.features.get(feature) or {}


@dataclass
class CorrelationReport(FeatureReport):
    """The ``(correlation)`` row: a FeatureReport (decided, exported and shown like any feature's) that also
    carries the pairs behind its decision."""

    changes: list[CorrelationChange] = field(default_factory=list)


def compare_correlations(ref: Comoments, cur: Comoments, cfg: DriftConfig,
                         alpha: float) -> CorrelationReport:
    """The test of analyze/correlation.py as the model report's row ``(correlation)``: ``overall`` is its
    Bonferroni p-value at the model's per-feature level, ``r_change`` the largest change of a pair's correlation."""
    result = correlation_changes(ref, cur, cfg.min_samples)
    withheld = "" if result.pairs else (_withheld(ref.rows, cur.rows, cfg) or "empty")
    threshold = cfg.thresholds.get("r_change", 0.1)
    detected = _decide(result.p_value, alpha, withheld, lower_is_drift=True)
    methods = [MethodResult("correlation", result.p_value, alpha, detected, p_value=True),
               MethodResult("r_change", result.max_change, threshold, _decide(result.max_change, threshold, withheld))]
    overall = MethodResult(OVERALL_METHOD, result.p_value, alpha, detected, p_value=True)
    return CorrelationReport(CORRELATION_FEATURE, "correlation", result.reference_rows, result.current_rows, methods,
                             overall, withheld, changes=result.changes)


def attribution_row(drift: AttributionDrift) -> FeatureReport:
    """The ``(attribution)`` row: decided, exported and shown like any feature's. Its one method ``ndcg`` is lower
    for drift, so ``overall`` carries the decision without a score (``ml_drift_score`` is higher for drift);
    ``ml_attribution_ndcg`` exports the number."""
    ndcg = MethodResult("ndcg", drift.ndcg, drift.threshold, drift.detected)
    overall = MethodResult(OVERALL_METHOD, math.nan, drift.threshold, drift.detected)
    return FeatureReport(ATTRIBUTION_FEATURE, "attribution", drift.reference_rows, drift.current_rows, [ndcg],
                         overall, drift.withheld_reason)


def _not_compared(name: str, cur: NumericProfile | CategoricalProfile, ref_count: int, alpha: float,
                  reason: str) -> FeatureReport:
    return _empty_report(name, cur.kind, ref_count, cur.count, (), {}, alpha, reason, cur)


def compare(reference: ModelProfile | None, current: ModelProfile, cfg: DriftConfig | None = None,
            reference_source: str | None = None) -> ModelReport:
    """Drift and data-quality report of every feature of either side: compared with the reference where both have
    it; data quality alone, with the reason (``not_in_reference``, ``reference_pending``, ``absent_from_current``),
    where not.

    >>> import numpy as np
    >>> ref, cur = ModelProfile("m", ""), ModelProfile("m", "")
    >>> rng = np.random.default_rng(0)
    >>> ref.features["x"] = NumericProfile(); ref.features["x"].update(rng.normal(0, 1, 5000))
    >>> cur.features["x"] = NumericProfile(); cur.features["x"].update(rng.normal(1, 1, 5000))
    >>> report = compare(ref, cur)
    >>> report.features[0].overall.detected
    True
    """
    cfg = cfg or DriftConfig()
    ref_features = reference.features if reference is not None else {}
    # A segment key with no value as a feature in the horizon: spans send it as ml.segment.<key> (a baseline built
    # with --segment-by profiled the column); not a dropped feature, whose 100% missing would fire an alert.
    keys = set(current.segments.by) if current.segments is not None else set()
    sent_as_segment = {k for k in keys if k not in current.features or
                       (current.features[k].count == 0 and current.rows > 0)}
    names = sorted(set(ref_features) & set(current.features) - sent_as_segment)
    moments = (reference.comoments, current.comoments) if reference is not None else (None, None)
    # The row exists when the two sides share a pair of correlated features (withheld while it has too few rows)
    correlated = moments[0] is not None and moments[1] is not None and \
        len(set(moments[0].features) & set(moments[1].features)) >= 2
    if not correlated:
        moments = (None, None)
    alpha = cfg.evaluation_alpha / max(1, len(names) + correlated)  # the correlation test is one more in the family
    learned = learned_thresholds(reference, cfg) if (reference is not None and cfg.learned_thresholds) else {}
    reports = []
    for name in names:
        r, c = ref_features[name], current.features[name]
        settings = feature_settings(cfg, current.model, name)
        thresholds = {**cfg.thresholds, **learned.get(name, {})}
        method = settings.get("method", "auto")
        if "threshold" in settings and method not in ("auto", *TEST_METHODS):
            thresholds[method] = float(settings["threshold"])
        if isinstance(r, NumericProfile) and isinstance(c, NumericProfile) and method in ("auto", *NUMERIC_METHODS):
            reports.append(compare_numeric(name, r, c, cfg, alpha, thresholds, method))
        elif isinstance(r, CategoricalProfile) and isinstance(c, CategoricalProfile) and \
                method in ("auto", *CATEGORICAL_METHODS):
            reports.append(compare_categorical(name, r, c, cfg, alpha, thresholds, method))
        elif r.kind != c.kind:
            reports.append(_not_compared(name, c, r.count, alpha, "kind_mismatch"))
        else:
            reports.append(_not_compared(name, c, r.count, alpha, "method_not_for_kind"))
        floors = {**cfg.min_effect, **settings.get("min_effect", {})}
        if floors:
            reports[-1] = _apply_effect_floor(reports[-1], floors)
        if current.features[name].count == 0 and current.rows > 0:  # a reference column traffic never carries
            reports[-1].withheld_reason = "absent_from_current"
    changes: list[CorrelationChange] = []
    if moments[0] is not None and moments[1] is not None:
        reports.append(compare_correlations(moments[0], moments[1], cfg, alpha))
        changes = reports[-1].changes  # type: ignore[attr-defined]
        floors = {**cfg.min_effect, **feature_settings(cfg, current.model, CORRELATION_FEATURE).get("min_effect", {})}
        if floors:
            reports[-1] = _apply_effect_floor(reports[-1], floors)
    attribution = compare_attributions(reference, current, cfg.min_samples,
                                       cfg.thresholds.get("ndcg", DEFAULT_NDCG_THRESHOLD))
    if attribution is not None:
        if reference is None:
            attribution.withheld_reason, attribution.detected = "reference_pending", None
        reports.append(attribution_row(attribution))
    # Data quality needs no reference: features the reference lacks, and every feature before there is one, are
    # reported with their data quality and the reason they have no decision.
    for name in sorted(set(current.features) - set(ref_features)):
        reports.append(_not_compared(name, current.features[name], 0, alpha,
                                     "not_in_reference" if reference is not None else "reference_pending"))
    # A reference feature the current side lacks altogether (a dropped column: what people compare to catch):
    # listed, all of its rows missing.
    for name in sorted(set(ref_features) - set(current.features) - sent_as_segment):
        absent = type(ref_features[name])()
        absent.missing = current.rows
        reports.append(_not_compared(name, absent, ref_features[name].count, alpha, "absent_from_current"))
    if current.exemplars:  # for the drifted features (what exemplars export); the pages ask for the others
        for report in reports:
            if report.overall.detected and report.feature in current.features:
                report.exemplars = feature_exemplars(report.feature, current.exemplars,
                                                     current.features[report.feature], ref_features.get(report.feature))
    segments: list[SegmentReport] = []
    contributions: list[SegmentContribution] = []
    if reference is not None and reference.segments is not None and current.segments is not None and \
            reference.segments.by == current.segments.by:
        segments, contributions = compare_segments(reference.segments, current.segments, cfg.evaluation_alpha,
                                                   cfg.min_samples)
    return ModelReport(
        model=current.model,
        version=current.version,
        reference_source=reference_source,
        reference_rows=reference.rows if reference is not None else 0,
        current_rows=current.rows,
        features=reports,
        latency_p50=current.latency_quantile(0.5),
        latency_p95=current.latency_quantile(0.95),
        latency_p99=current.latency_quantile(0.99),
        error_ratio=current.error_rows / current.rows if current.rows else math.nan,
        lost_ratio=current.sequences.lost() / expected if (expected := current.sequences.expected()) else math.nan,
        correlations=changes,
        segments=segments,
        segment_contributions=contributions,
        attribution=attribution,
    )


__all__ = ["DriftConfig", "FeatureReport", "MethodResult", "ModelReport", "compare"]
