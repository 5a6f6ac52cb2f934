"""Where an LLM model's evaluation results are decided: per evaluation name, the pass rate and the mean score of
the current horizon (or any range) against the reference's.

Two tests per evaluation, each a z-test with both sides' standard errors (as the realized metrics are,
analyze/performance.py ``degradation_p``): the pass rate *dropped* (one-sided; a rate's standard error
√(p(1-p)/n) from its counts), and the mean score *moved* (two-sided: whether a higher score is better depends on
the evaluation — relevance or toxicity). No test on fewer than ``performance.min_labels`` results on either side;
Holm's step-down over every test of the model at the performance level. A result's label counts as a pass or a
fail as profile/evaluations.py says; the score's distribution is shown (quantiles), not tested.

>>> import numpy as np
>>> from otel_ml.profile.evaluations import EvaluationScores
>>> ref, cur = EvaluationScores(), EvaluationScores()
>>> ref.update(np.full(400, np.nan), np.array(["pass"] * 360 + ["fail"] * 40))
>>> cur.update(np.full(400, np.nan), np.array(["pass"] * 300 + ["fail"] * 100))
>>> r = assess_evaluations({"relevance": cur}, {"relevance": ref}, "pinned", 0.01, 100)[0]
>>> r.pass_rate.value, r.reference_pass_rate.value, r.degraded, f"{r.p_values['pass_rate']:.1e}"
(0.75, 0.9, {'pass_rate': True}, '6.2e-09')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scipy import stats

from otel_ml.profile.evaluations import EvaluationScores

PASS_RATE = "pass_rate"
MEAN_SCORE = "mean_score"
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class Rate:
    value: float
    se: float
    n: int


@dataclass
class EvaluationReport:
    """One evaluation's results over a range against the reference's, with the decisions."""

    name: str
    results: int
    pass_rate: Rate
    mean_score: Rate
    labels: dict[str, int]
    score_quantiles: dict[float, float]
    reference_source: str = ""
    """``baseline`` (a baseline's table of past evaluations), ``pinned`` (the model's first horizon) or ``""``."""
    reference_results: int = 0
    reference_pass_rate: Rate | None = None
    reference_mean_score: Rate | None = None
    p_values: dict[str, float] = field(default_factory=dict)
    degraded: dict[str, bool] = field(default_factory=dict)
    """Per test (``pass_rate``, ``mean_score``) made: whether it changed for the worse (the pass rate) or at all."""


def change_p(cur: Rate, ref: Rate, one_sided_drop: bool, min_results: int) -> float | None:
    """p-value that ``cur`` is below ``ref`` (``one_sided_drop``) or differs from it; None: not tested (too few
    results, or a standard error unknown or 0 on both sides)."""
    if cur.n < min_results or ref.n < min_results or not all(
            math.isfinite(x) for x in (cur.value, ref.value, cur.se, ref.se)):
        return None
    se = math.hypot(cur.se, ref.se)
    if se == 0:
        return None
    z = (cur.value - ref.value) / se
    return float(stats.norm.cdf(z)) if one_sided_drop else float(min(1.0, 2 * stats.norm.sf(abs(z))))


def _rate(triple: tuple[float, float, int]) -> Rate:
    return Rate(*triple)


def assess_evaluations(current: dict[str, EvaluationScores], reference: dict[str, EvaluationScores] | None,
                       source: str, alpha: float, min_results: int) -> list[EvaluationReport]:
    """Every evaluation of ``current`` (and of ``reference``) with its decisions, by name."""
    out = []
    tests: dict[tuple[int, str], float] = {}
    for name in sorted(set(current) | set(reference or {})):
        cur = current.get(name) or EvaluationScores()
        report = EvaluationReport(name, cur.n, _rate(cur.pass_rate()), _rate(cur.mean_score()), dict(cur.labels),
                                  {q: cur.score_quantile(q) for q in QUANTILES})
        ref = (reference or {}).get(name)
        if ref is not None:
            report.reference_source = source
            report.reference_results = ref.n
            report.reference_pass_rate, report.reference_mean_score = _rate(ref.pass_rate()), _rate(ref.mean_score())
            for test, c, r, one_sided in ((PASS_RATE, report.pass_rate, report.reference_pass_rate, True),
                                          (MEAN_SCORE, report.mean_score, report.reference_mean_score, False)):
                p = change_p(c, r, one_sided, min_results)
                if p is not None:
                    report.p_values[test] = p
                    tests[(len(out), test)] = p
        out.append(report)
    # Holm's step-down over every test of the model: the smallest p against α/m, the next against α/(m-1), ...
    rejecting = True
    for k, (at, test) in enumerate(sorted(tests, key=lambda t: tests[t])):
        rejecting = rejecting and tests[(at, test)] < alpha / (len(tests) - k)
        out[at].degraded[test] = rejecting
    return out

