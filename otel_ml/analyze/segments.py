"""Drift per segment, and which segments a model-level change comes from (issue 33).

Each segment's exact counts (profile/segments.py) are compared with the reference's counts of the same segment:
numeric features by the KS statistic over the grid's bins (as exact grids are compared model-wide), categorical ones
by chi-squared over their buckets (rare ones pooled). The segment tests are one family per model: each p-value is
multiplied by the number of (segment, feature) tests (Bonferroni: valid under any dependence) and decided at the
model's family level, so more segments do not mean more false alerts.

Attribution, per numeric feature: the change of the model's mean, μ1 − μ0, is the sum over segments of
``mix_s = (p1_s − p0_s)(μ0_s − μ0)`` (the segment's share moved, its reference mean apart from the model's) and
``within_s = p1_s (μ1_s − μ0_s)`` (the segment's values moved), p the segment's share of predictions: exact, since
Σ (p1_s − p0_s) μ0 = 0. A segment's contribution is mix_s + within_s.

>>> import numpy as np
>>> from otel_ml.decode.batch import ColumnarBatch
>>> from otel_ml.profile.segments import SegmentCounts
>>> rng = np.random.default_rng(0)
>>> def counts(shift):
...     s = SegmentCounts(("r",))
...     r = np.repeat(np.array(["a", "b"]), 2000)
...     x = rng.normal(0, 1, 4000) + np.where(r == "b", shift, 0.0)
...     s.update(ColumnarBatch("m", "", 4000, np.zeros(4000, np.int64), np.ones(4000), numeric={"x": x},
...                            categorical={"r": r}), {"x": "numeric", "r": "categorical"}, {"x": (0.0, 1.0)})
...     return s
>>> reports, contributions = compare_segments(counts(0.0), counts(1.0), 0.01, 100)
>>> [(r.segment, r.detected, r.drifted) for r in reports]
[('r=a', False, []), ('r=b', True, ['x'])]
>>> c = contributions[0]; c.segment, round(c.within, 1), round(c.mix, 3)
('r=b', 0.5, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from otel_ml.analyze import stats
from otel_ml.profile.segments import SegmentCounts
from otel_ml.profile.sketch import NUMERIC


@dataclass(frozen=True)
class SegmentReport:
    segment: str
    reference_share: float
    current_share: float
    """The segment's share of the model's predictions in the reference and in the current horizon."""
    current_predictions: float
    detected: bool | None
    """Any feature of the segment drifted; None: withheld (too few predictions on a side)."""
    drifted: list[str] = field(default_factory=list)
    """The drifted features, smallest adjusted p-value first."""
    p_values: dict[str, float] = field(default_factory=dict)
    """Each tested feature's p-value, multiplied by the family's test count (capped at 1)."""
    withheld_reason: str = ""
    missing_ratio: dict[str, float] = field(default_factory=dict)
    """Data quality: each feature's share of the segment's current predictions without a value (only those with
    some missing)."""


@dataclass(frozen=True)
class SegmentContribution:
    feature: str
    """The feature whose mean changed (drift), or the performance metric that changed (``ml.performance.metric``)."""
    segment: str
    mix: float
    within: float

    @property
    def total(self) -> float:
        return self.mix + self.within


def compare_segments(reference: SegmentCounts, current: SegmentCounts, alpha: float,
                     min_samples: int) -> tuple[list[SegmentReport], list[SegmentContribution]]:
    """Per segment of ``current`` its drift against the same segment of ``reference``; and per numeric feature
    the segments' contributions to the change of its mean, largest first."""
    ref_total, cur_total = float(reference.weights.sum()), float(current.weights.sum())
    ref_index = {label: i for i, label in enumerate(reference.labels)}
    features = sorted(name for name, kind in current.kinds.items() if reference.kinds.get(name) == kind)
    tested: list[tuple[str, int, int | None, str]] = []
    for j, label in enumerate(current.labels):
        i = ref_index.get(label)
        if i is None or reference.weights[i] < min_samples or current.weights[j] < min_samples:
            tested.append((label, j, None, "reference_too_small" if i is None or reference.weights[i] < min_samples
                           else "current_too_small"))
        else:
            tested.append((label, j, i, ""))
    tests = max(1, sum(1 for t in tested if t[2] is not None) * len(features))
    pairs = [(i, j) for _, j, i, _ in tested if i is not None]
    adjusted: dict[tuple[int, str], float] = {}  # (current segment, feature) → p × tests, capped at 1
    for name in features if pairs else []:
        ref_rows, cur_rows = np.array([i for i, _ in pairs]), np.array([j for _, j in pairs])
        r_all, c_all = reference.tables(name)[ref_rows], current.tables(name)[cur_rows]
        nr, nc = r_all.sum(axis=1), c_all.sum(axis=1)
        enough = (nr >= min_samples) & (nc >= min_samples)
        if current.kinds[name] == NUMERIC:  # every segment's binned KS at once (``stats.binned_ks`` of each)
            with np.errstate(invalid="ignore", divide="ignore"):
                d = np.abs(np.cumsum(r_all, axis=1) / nr[:, None] - np.cumsum(c_all, axis=1) / nc[:, None]).max(1)
            p = stats.ks_pvalues_adjusted(np.where(enough, d, 0.0), np.round(nr), np.round(nc), tests)
        else:
            p = np.ones(len(pairs))
            for k in np.flatnonzero(enough).tolist():
                r, c = r_all[k], c_all[k]
                used = (r + c) > 0
                p[k] = min(1.0, stats.chi2_homogeneity(*stats.pool_rare(r[used], c[used]))[1] * tests)
        adjusted.update({(j, name): float(p[k]) for k, (_, j) in enumerate(pairs) if enough[k]})
    missing = _missing(current, features)
    reports = []
    for label, j, i, withheld in tested:
        ref_share = float(reference.weights[i]) / ref_total if i is not None and ref_total else 0.0
        cur_share = float(current.weights[j]) / cur_total if cur_total else 0.0
        if i is None:
            reports.append(SegmentReport(label, ref_share, cur_share, float(current.weights[j]), None,
                                         withheld_reason=withheld, missing_ratio=missing[j]))
            continue
        p_values = {name: adjusted[(j, name)] for name in features if (j, name) in adjusted}
        drifted = sorted((n for n, p in p_values.items() if p < alpha), key=lambda n: p_values[n])
        reports.append(SegmentReport(label, ref_share, cur_share, float(current.weights[j]), bool(drifted), drifted,
                                     p_values, missing_ratio=missing[j]))
    return reports, _contributions(reference, current, features)


def _missing(current: SegmentCounts, features: list[str]) -> list[dict[str, float]]:
    """Per segment, each feature's share of predictions without a value (numeric: not finite; categorical:
    empty), from the counts: the rows counted per segment against the values counted."""
    out: list[dict[str, float]] = [{} for _ in current.labels]
    rows = current.weights
    for name in features:
        counted = current.moments[name][:, 0] if name in current.moments else current.tables(name).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.clip(1.0 - counted / rows, 0.0, 1.0)
        for j in np.flatnonzero((rows > 0) & (share > 1e-12)).tolist():
            out[j][name] = float(share[j])
    return out


def _contributions(reference: SegmentCounts, current: SegmentCounts, features: list[str]) -> list[SegmentContribution]:
    out = []
    ref_index = {label: i for i, label in enumerate(reference.labels)}
    for name in features:
        if current.kinds[name] != NUMERIC or name not in reference.moments or name not in current.moments:
            continue
        r, c = reference.moments[name], current.moments[name]
        if r[:, 0].sum() <= 0 or c[:, 0].sum() <= 0:
            continue
        mean0 = r[:, 1].sum() / r[:, 0].sum()
        rows = []
        for j, label in enumerate(current.labels):
            i = ref_index.get(label)
            if i is None or r[i, 0] <= 0 or c[j, 0] <= 0:
                continue
            p0, p1 = r[i, 0] / r[:, 0].sum(), c[j, 0] / c[:, 0].sum()
            rows.append(shift_share(name, label, p0, p1, r[i, 1] / r[i, 0], c[j, 1] / c[j, 0], mean0))
        out += sorted(rows, key=lambda x: -abs(x.total))
    return out


def shift_share(name: str, segment: str, p0: float, p1: float, v0: float, v1: float, overall0: float
                ) -> SegmentContribution:
    """One segment's part of the change of a model-wide mean (of a feature, or of a per-row performance term such
    as correctness): ``p`` its share of the rows, ``v`` its own mean, reference (0) and current (1), ``overall0``
    the model's reference mean. Summed over segments, mix + within is exactly the model's change.

    >>> c = shift_share("accuracy", "tier=b", 0.5, 0.5, 0.9, 0.6, 0.9); round(c.within, 3), c.mix
    (-0.15, 0.0)
    """
    return SegmentContribution(name, segment, float((p1 - p0) * (v0 - overall0)), float(p1 * (v1 - v0)))


def attribution_kind(contributions: list[SegmentContribution], feature: str) -> str:
    """``mix`` when the feature's mean moved mostly because segment shares moved, else ``within``."""
    mix = sum(c.mix for c in contributions if c.feature == feature)
    within = sum(c.within for c in contributions if c.feature == feature)
    return "mix" if abs(mix) > abs(within) else "within"


__all__ = ["SegmentContribution", "SegmentReport", "attribution_kind", "compare_segments", "shift_share"]
