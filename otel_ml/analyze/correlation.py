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
    """Compare every pair of features the two moment sets share, each side having ``min_samples`` rows of it."""
    at = {f: k for k, f in enumerate(cur.features)}
    common = [(i, at[f]) for i, f in enumerate(ref.features) if f in at]
    found: list[CorrelationChange] = []
    for x in range(len(common)):
        for y in range(x + 1, len(common)):
            (ri, ci), (rj, cj) = common[x], common[y]
            n1, r1, v1 = ref.pair(ri, rj)
            n2, r2, v2 = cur.pair(ci, cj)
            if n1 < min_samples or n2 < min_samples or math.isnan(r1) or math.isnan(r2):
                continue
            se = math.sqrt(v1 / n1 + v2 / n2)
            diff = r2 - r1
            z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
            found.append(CorrelationChange((ref.features[ri], ref.features[rj]), r1, r2, z,
                                           float(special.erfc(abs(z) / math.sqrt(2))), int(n1), int(n2)))
    if not found:
        return CorrelationResult(math.nan, math.nan, 0, 0, 0)
    found.sort(key=lambda c: (-abs(c.z), c.pair))
    return CorrelationResult(
        p_value=min(1.0, len(found) * found[0].p_value),
        max_change=max(abs(c.current - c.reference) for c in found), pairs=len(found),
        reference_rows=min(c.reference_rows for c in found), current_rows=min(c.current_rows for c in found),
        changes=found[:SHOWN_PAIRS])


__all__ = ["CorrelationChange", "CorrelationResult", "correlation_changes"]
