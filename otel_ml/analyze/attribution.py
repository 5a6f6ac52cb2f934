"""Attribution drift: whether what drives a model's predictions changed.

A prediction may carry its attribution to each feature, ``ml.attribution.<feature>`` (a SHAP value the serving code
computed, say). They are decoded into the numeric columns ``attribution.<feature>`` and profiled like any feature:
each one's distribution is tested for drift on the feature path. This module adds the model-level question:

- **Global importance** of a feature over a window: its mean absolute attribution, exact: each window keeps the
  column's Σ|x| (``ModelProfile.absolute_sums``, a float per attributed feature, mergeable) beside its sketch's
  count. (Read from the KLL sketch instead, it was 4–10% off on census data: docs/benchmarks.md.)
- **NDCG of the importance ranking** against the reference's, as SageMaker Clarify scores feature attribution drift
  (https://docs.aws.amazon.com/sagemaker/latest/dg/clarify-model-monitor-feature-attribution-drift.html): with
  ``F = f_1..f_m`` the features by reference importance (largest first), ``F' = f'_1..f'_m`` by current importance
  and ``a(f)`` a feature's *reference* importance, ``DCG = Σ a(f'_i) / log2(i + 1)``, ``iDCG = Σ a(f_i) / log2(i +
  1)`` and ``NDCG = DCG / iDCG``: 1 when the current ranking is the reference's, lower as important features fall
  down the ranking (swapping two features of nearly equal importance costs next to nothing). Drift is decided when
  NDCG < ``drift.thresholds.ndcg`` (0.90, Clarify's default alert threshold). Vertex AI Model Monitoring watches the
  same attributions per feature: here each ``attribution.<feature>`` column's own drift test.

The decision is the row ``(attribution)`` of the model's drift report (``semconv.ATTRIBUTION_FEATURE``), exported
as ``ml_attribution_ndcg`` and ``ml_attribution_drift_detected`` beside each feature's importance
(``ml_attribution_importance``). Withheld while either side has fewer than ``drift.min_samples`` attributed rows or
fewer than two attributed features.

>>> ndcg({"income": 0.6, "age": 0.3, "zip": 0.1}, {"income": 0.5, "age": 0.35, "zip": 0.05})
1.0
>>> round(ndcg({"income": 0.6, "age": 0.3, "zip": 0.1}, {"income": 0.1, "age": 0.2, "zip": 0.7}), 4)
0.7021
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from otel_ml.profile.model import ModelProfile
from otel_ml.semconv import ATTRIBUTION_COLUMN_PREFIX

DEFAULT_NDCG_THRESHOLD = 0.9
"""SageMaker Clarify's default: an alert when the NDCG of the attribution ranking falls below 0.90."""


@dataclass
class Importance:
    """One feature's global importance (mean |attribution|) on each side; NaN where that side has none."""

    feature: str
    reference: float
    current: float


@dataclass
class AttributionDrift:
    """The ``(attribution)`` decision of a model: NDCG of the current importance ranking against the reference's."""

    ndcg: float
    threshold: float
    detected: bool | None
    """None: withheld (``withheld_reason`` says why)."""
    withheld_reason: str = ""
    reference_rows: int = 0
    current_rows: int = 0
    importances: list[Importance] = field(default_factory=list)
    """Every attributed feature, by current importance (largest first)."""


def global_importance(profile: ModelProfile | None) -> dict[str, tuple[float, int]]:
    """Each attributed feature's (mean |attribution|, rows with one) in a model's profile: its column's Σ|x| over
    the number of values summed.

    >>> from otel_ml.decode.batch import ColumnarBatch
    >>> p = ModelProfile("m", "")
    >>> p.update(ColumnarBatch("m", "", 3, np.zeros(3, np.int64), np.ones(3),
    ...                        numeric={"attribution.x": np.array([-2.0, 1.0, np.nan])}), {"attribution.x": "numeric"})
    >>> global_importance(p)
    {'x': (1.5, 2)}
    """
    out: dict[str, tuple[float, int]] = {}
    for name, (total, n) in (profile.absolute_sums if profile is not None else {}).items():
        if n:
            out[name[len(ATTRIBUTION_COLUMN_PREFIX):]] = (total / n, n)
    return out


def ndcg(reference: Mapping[str, float], current: Mapping[str, float]) -> float:
    """NDCG of ``current``'s ranking of the features against ``reference``'s importances (SageMaker Clarify's
    formula; module docstring). A feature one side lacks has importance 0 there; ties rank by name."""
    names = sorted(set(reference) | set(current))
    gain = {f: reference.get(f, 0.0) for f in names}
    discount = 1 / np.log2(np.arange(2, len(names) + 2))
    ideal = sorted(names, key=lambda f: (-gain[f], f))
    observed = sorted(names, key=lambda f: (-current.get(f, 0.0), f))
    idcg = float(np.array([gain[f] for f in ideal]) @ discount)
    if idcg <= 0:
        return math.nan
    return float(np.array([gain[f] for f in observed]) @ discount) / idcg


def compare_attributions(reference: ModelProfile | None, current: ModelProfile, min_samples: int,
                         threshold: float = DEFAULT_NDCG_THRESHOLD) -> AttributionDrift | None:
    """The ``(attribution)`` decision of two sides (no reference: every decision withheld); None when neither side
    has attributions."""
    ref, cur = global_importance(reference), global_importance(current)
    if not ref and not cur:
        return None
    ref_rows = min((n for _, n in ref.values()), default=0)
    cur_rows = min((n for _, n in cur.values()), default=0)
    importances = sorted((Importance(f, ref.get(f, (math.nan, 0))[0], cur.get(f, (math.nan, 0))[0])
                          for f in set(ref) | set(cur)),
                         key=lambda i: (-(0.0 if math.isnan(i.current) else i.current), i.feature))
    if not ref:
        withheld = "not_in_reference"
    elif not cur:
        withheld = "absent_from_current"
    elif len(ref) < 2 or len(cur) < 2:  # one feature ranks the same anywhere
        withheld = "empty"
    elif ref_rows < min_samples:
        withheld = "reference_too_small"
    elif cur_rows < min_samples:
        withheld = "current_too_small"
    else:
        withheld = ""
    score = ndcg({f: v for f, (v, _) in ref.items()}, {f: v for f, (v, _) in cur.items()}) if ref else math.nan
    detected = None if withheld or math.isnan(score) else score < threshold
    return AttributionDrift(score, threshold, detected, withheld, ref_rows, cur_rows, importances)
