"""Where scores are computed: compare a current profile with its reference, feature by feature.

Decisions (see docs/statistics.md):
- Every method has a score and a threshold; ``detected`` is ``score > threshold`` (for p-values,
  ``score < threshold``), or None when the decision is withheld.
- The ``overall`` decision per feature comes from a hypothesis test — KS for numeric features,
  chi-square for categorical ones — at the model's family-wise level ``alpha`` (Bonferroni over the
  model's features), and fires only when the difference exceeds what the sketches can resolve.
- A decision is withheld (score still exported) when either sample has fewer than ``min_samples``
  values; ``withheld_reason`` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from otel_ml.analyze import stats
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import CategoricalProfile, NumericProfile


@dataclass(frozen=True)
class DriftConfig:
    alpha: float = 0.05
    """Family-wise false-alarm level per model and evaluation (Bonferroni across the model's features)."""
    min_samples: int = 100
    """Fewer values than this in the reference or the current horizon: decision withheld."""
    bins: int = stats.DEFAULT_BINS
    thresholds: dict[str, float] = field(default_factory=lambda: {
        "psi": 0.2, "js": 0.1, "hellinger": 0.1, "wasserstein": 0.1, "linf": 0.1})
    """Fixed thresholds of the distance methods (each gets its own 0/1 decision; none feeds ``overall``)."""


@dataclass
class MethodResult:
    method: str
    score: float
    threshold: float
    detected: bool | None
    """None when withheld."""


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
    ``below_sketch_resolution``, ``kind_mismatch``, ``not_in_reference``, ``empty``."""
    missing_ratio: float = math.nan
    type_mismatch_ratio: float = math.nan
    unseen_ratio: float = math.nan
    out_of_range_ratio: float = math.nan
    resolution: float = 0.0
    """The smallest difference (in the overall test's distance) the two sketches can resolve."""


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


def compare_numeric(
    name: str, ref: NumericProfile, cur: NumericProfile, cfg: DriftConfig, alpha: float
) -> FeatureReport:
    missing, mismatch = _quality(cur)
    n, m = ref.count, cur.count
    withheld = _withheld(n, m, cfg)
    if n == 0 or m == 0:
        nan_methods = [MethodResult(k, math.nan, cfg.thresholds.get(k, math.nan), None)
                       for k in ("ks", "psi", "js", "hellinger", "wasserstein")]
        return FeatureReport(name, "numeric", n, m, nan_methods, MethodResult("overall", math.nan, alpha, None),
                             withheld or "empty", missing, mismatch)
    r, c = ref.weighted_items(), cur.weighted_items()
    d = stats.ks_statistic(r, c)
    resolution = ref.rank_error() + cur.rank_error()
    # Significance of the part of the gap the sketches can vouch for: equals the exact test when exact.
    p_resolved = stats.ks_pvalue(max(0.0, d - resolution), n, m)
    ks_threshold = stats.ks_critical(alpha, n, m) + resolution
    edges = stats.quantile_edges(r, cfg.bins)
    rs, cs = stats.binned_shares(r, edges), stats.binned_shares(c, edges)
    w = stats.wasserstein(r, c)
    std = ref.std
    w_norm = w / std if std > 0 else w
    scores = {
        "psi": stats.psi(rs, cs),
        "js": stats.js_distance(rs, cs),
        "hellinger": stats.hellinger(rs, cs),
        "wasserstein": w_norm,
    }
    methods = [MethodResult("ks", d, ks_threshold, _decide(d, ks_threshold, withheld))]
    methods += [MethodResult(k, v, cfg.thresholds[k], _decide(v, cfg.thresholds[k], withheld))
                for k, v in scores.items()]
    if not withheld and p_resolved >= alpha and stats.ks_pvalue(d, n, m) < alpha:
        withheld = "below_sketch_resolution"  # significant only if the sketches were exact
    overall = MethodResult("overall", p_resolved, alpha, _decide(p_resolved, alpha, withheld, lower_is_drift=True))
    return FeatureReport(name, "numeric", n, m, methods, overall, withheld, missing, mismatch,
                         unseen_ratio=math.nan,
                         out_of_range_ratio=stats.out_of_range_share(c, ref.min, ref.max),
                         resolution=resolution)


def compare_categorical(
    name: str, ref: CategoricalProfile, cur: CategoricalProfile, cfg: DriftConfig, alpha: float
) -> FeatureReport:
    missing, mismatch = _quality(cur)
    n, m = ref.count, cur.count
    withheld = _withheld(n, m, cfg)
    if n == 0 or m == 0:
        nan_methods = [MethodResult(k, math.nan, cfg.thresholds.get(k, alpha), None)
                       for k in ("chi2", "psi", "js", "hellinger", "linf")]
        return FeatureReport(name, "categorical", n, m, nan_methods,
                             MethodResult("overall", math.nan, alpha, None), withheld or "empty", missing, mismatch)
    rf, cf = ref.frequencies(), cur.frequencies()
    _, rc, cc = stats.category_table(rf, cf, n - sum(rf.values()), m - sum(cf.values()))
    rs, cs = rc / rc.sum(), cc / cc.sum()
    _, p = stats.chi2_homogeneity(*stats.pool_rare(rc, cc))
    linf = stats.linf(rc, cc)
    # Frequent-items counts are exact below 0.75·maxMapSize distinct items; beyond, each count may be
    # off by the sketch's max error, so shares are uncertain by max_error / total on each side.
    resolution = ref.max_error() / n + cur.max_error() / m
    scores = {"psi": stats.psi(rs, cs), "js": stats.js_distance(rs, cs),
              "hellinger": stats.hellinger(rs, cs), "linf": linf}
    methods = [MethodResult("chi2", p, alpha, _decide(p, alpha, withheld, lower_is_drift=True))]
    methods += [MethodResult(k, v, cfg.thresholds[k], _decide(v, cfg.thresholds[k], withheld))
                for k, v in scores.items()]
    if not withheld and resolution > 0 and linf <= resolution and p < alpha:
        withheld = "below_sketch_resolution"
    overall = MethodResult("overall", p, alpha, _decide(p, alpha, withheld, lower_is_drift=True))
    return FeatureReport(name, "categorical", n, m, methods, overall, withheld, missing, mismatch,
                         unseen_ratio=stats.unseen_share(rf, cf), out_of_range_ratio=math.nan,
                         resolution=resolution)


def _not_compared(name: str, cur: NumericProfile | CategoricalProfile, ref_count: int, alpha: float,
                  reason: str) -> FeatureReport:
    return FeatureReport(name, cur.kind, ref_count, cur.count, [], MethodResult("overall", math.nan, alpha, None),
                         reason, *_quality(cur))


def compare(reference: ModelProfile | None, current: ModelProfile, cfg: DriftConfig | None = None,
            reference_source: str | None = None) -> ModelReport:
    """Drift and data-quality report of every feature the two profiles share (none without a reference;
    the operational numbers are reported either way).

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
    names = sorted(set(ref_features) & set(current.features))
    alpha = cfg.alpha / max(1, len(names))
    reports = []
    for name in names:
        r, c = ref_features[name], current.features[name]
        if isinstance(r, NumericProfile) and isinstance(c, NumericProfile):
            reports.append(compare_numeric(name, r, c, cfg, alpha))
        elif isinstance(r, CategoricalProfile) and isinstance(c, CategoricalProfile):
            reports.append(compare_categorical(name, r, c, cfg, alpha))
        else:
            reports.append(_not_compared(name, c, r.count, alpha, "kind_mismatch"))
    if reference is not None:
        # Features the reference never had still get their data quality reported.
        for name in sorted(set(current.features) - set(ref_features)):
            reports.append(_not_compared(name, current.features[name], 0, alpha, "not_in_reference"))
    spans = current.spans
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
        error_ratio=current.error_spans / spans if spans else math.nan,
    )


__all__ = ["DriftConfig", "FeatureReport", "MethodResult", "ModelReport", "compare"]
