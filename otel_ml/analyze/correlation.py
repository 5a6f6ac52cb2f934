"""The test for a change of the features' correlations, from the mergeable moments of profile/comoments.py.

For every pair of features both sides have, the current horizon's Pearson correlation (of each feature's
``asinh(x / s)``, profile/comoments.py) is compared with the reference's:
``z = (r_cur - r_ref) / sqrt(v_ref / n_ref + v_cur / n_cur)`` with each side's delta-method variance ``v`` (fourth
moments, so valid for skewed and heavy-tailed features, not only normal ones). Under no change each
``z`` is asymptotically standard normal; the family's p-value is Bonferroni's over the k pairs tested,
``min(1, k · min_pair p)``, a bound that holds whatever the dependence between pairs. It feeds the model's report
as the feature-like row ``(correlation)`` (``semconv.CORRELATION_FEATURE``), decided at the model's per-feature
level like every other feature, with the pairs that changed most beside it.

Why not Jennrich's (1970) χ² test on the whole matrix: its null distribution assumes normal features, whose r has
variance (1 - ρ²)² / n; on a log-normal pair that was 10 times too small, so a stationary model would alarm.

>>> import numpy as np
>>> from otel_ml.profile.comoments import Comoments
>>> rng = np.random.default_rng(0)
>>> x, noise = rng.normal(0, 1, 20000), rng.normal(0, 1, 20000)
>>> ref = Comoments.chosen({"a": x, "b": x + noise}, 10); ref.update({"a": x, "b": x + noise}, 20000)
>>> cur = ref.empty_like(); cur.update({"a": x, "b": -x + noise}, 20000)  # the same marginals, paired otherwise
>>> result = correlation_changes(ref, cur, min_samples=100)
>>> result.p_value < 1e-12, result.changes[0].pair, round(result.changes[0].current, 2)
(True, ('a', 'b'), -0.69)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from otel_ml.profile.comoments import Comoments

SHOWN_PAIRS = 5
"""The pairs a report lists (most changed first)."""


@dataclass(frozen=True)
class CorrelationChange:
    """One pair's correlation in the reference and in the current horizon."""

    pair: tuple[str, str]
    reference: float
    current: float
    z: float
    p_value: float
    """The pair's own two-sided p-value (not corrected for the number of pairs)."""
    reference_rows: int
    current_rows: int


@dataclass
class CorrelationResult:
    p_value: float
    """Bonferroni over the pairs tested (NaN: no pair had enough rows on both sides)."""
    max_change: float
    """The largest |r_cur - r_ref| over the pairs tested."""
    pairs: int
    reference_rows: int
    """The fewest rows of a tested pair in the reference (what the decision rests on)."""
    current_rows: int
    changes: list[CorrelationChange] = field(default_factory=list)
    """The pairs that changed most (by |z|), at most SHOWN_PAIRS."""


def correlation_changes(ref: Comoments, cur: Comoments, min_samples: int) -> CorrelationResult:
    """Compare every pair of features the two moment sets share, each side having ``min_samples`` rows of it
    (all pairs as arrays at once: ``Comoments.pairs``)."""
    at = {f: k for k, f in enumerate(cur.features)}
    common = [(i, at[f]) for i, f in enumerate(ref.features) if f in at]
    if len(common) < 2:
        return CorrelationResult(math.nan, math.nan, 0, 0, 0)
    ri, ci = np.array([i for i, _ in common]), np.array([c for _, c in common])
    x, y = np.triu_indices(len(common), 1)
    (n1, r1, v1), (n2, r2, v2) = ((m[a[x], a[y]] for m in moments) for moments, a in
                                  ((ref.pairs(), ri), (cur.pairs(), ci)))
    tested = (n1 >= min_samples) & (n2 >= min_samples) & ~np.isnan(r1) & ~np.isnan(r2)
    if not tested.any():
        return CorrelationResult(math.nan, math.nan, 0, 0, 0)
    x, y, n1, r1, v1, n2, r2, v2 = (a[tested] for a in (x, y, n1, r1, v1, n2, r2, v2))
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(v1 / n1 + v2 / n2)
        diff = r2 - r1
        z = np.where(se > 0, diff / se, np.where(diff == 0, 0.0, np.copysign(np.inf, diff)))
    p = special.erfc(np.abs(z) / math.sqrt(2))
    names = [(ref.features[ri[a]], ref.features[ri[b]]) for a, b in zip(x.tolist(), y.tolist())]
    order = sorted(range(len(names)), key=lambda k: (-abs(float(z[k])), names[k]))
    shown = [CorrelationChange(names[k], float(r1[k]), float(r2[k]), float(z[k]), float(p[k]), int(n1[k]),
                               int(n2[k])) for k in order[:SHOWN_PAIRS]]
    return CorrelationResult(
        p_value=min(1.0, len(names) * float(p[order[0]])), max_change=float(np.max(np.abs(r2 - r1))),
        pairs=len(names), reference_rows=int(n1.min()), current_rows=int(n2.min()), changes=shown)


__all__ = ["CorrelationChange", "CorrelationResult", "correlation_changes"]
