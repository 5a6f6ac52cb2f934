"""Where performance is scored: realized metrics against the reference, and estimates without labels.

``assess`` turns a horizon's ``PerformanceProfile`` and the baseline's ``PerformanceReference`` into a
``PerformanceReport``: each metric realized (from labels), estimated (confidence-based, CBPE: from the
probabilities alone, through the reference's calibration map), the reference's value, and a degradation
decision per metric: a z-test of current against reference with both standard errors (n-aware: a few labels
never alarm), one-sided "worse" by default or two-sided with ``alternative: either``, at ``performance_alpha``,
Holm's step-down over the metrics tested (docs/statistics.md, Model performance). ``bias`` has
no better direction (closer to 0 is better from either side) and is always tested two-sided.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from otel_ml.analyze.drift import DriftConfig, ModelReport
from otel_ml.analyze.evaluations import EvaluationReport, assess_evaluations
from otel_ml.analyze.fairness import FairnessReport, assess_fairness, fairness_settings
from otel_ml.analyze.segments import SegmentContribution, shift_share
from otel_ml.analyze.stats import holm
from otel_ml.profile.evaluations import EvaluationScores
from otel_ml.profile.performance import (
    CLASSIFICATION,
    HIGHER_IS_BETTER,
    PROBABILITY_BINS,
    PerformanceProfile,
    PerformanceReference,
)
from otel_ml.profile.wrong_predictions import WrongPrediction

ESTIMATED_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


@dataclass(frozen=True)
class PerformanceConfig:
    """YAML ``performance``: over what, and how, model performance is computed and decided."""

    horizon_seconds: float = 86_400.0
    """Performance is over the predictions of the last horizon of event time (their labels may come later)."""
    window_seconds: float = 3_600.0
    """Predictions are counted per window of their event time; a label updates its prediction's window."""
    threshold: float = 0.5
    """A binary classifier predicts the positive class at ``ml.prediction.probability`` >= this (estimates)."""
    positive_class: str | None = None
    """The positive class of binary classifiers; default: the baseline's, else 1/true/yes/positive."""
    min_labels: int = 100
    """No degradation decision on fewer labelled predictions (or estimated rows)."""
    tolerance: float = 0.0
    """A drop smaller than this (in the metric's units) is never called degraded, however significant."""
    max_classes: int = 32
    """Classes counted per model; further ones are counted as ``(other)``."""
    alternative: str = "worse"
    """``worse``: a metric is degraded when it is significantly worse than the reference; ``either``: when it
    moved significantly either way (a regressor's errors that shrank are a change in the data too)."""
    loss_rows_per_window: int = 10_000
    """A regressor's predictions per performance window whose expected loss (its label-free estimates) is computed
    for every one; past it, for a ``loss_sample_ratio`` random share, each weighted by the inverse (unbiased).
    Bounds the loss models' cost at high volume (bench.dle_cost)."""
    loss_sample_ratio: float = 0.05
    """Share of a window's predictions past ``loss_rows_per_window`` whose expected loss is computed."""
    objectives: dict[str, dict[str, float]] = field(default_factory=dict)
    """Model-quality objectives (SLOs): ``{MODEL: {METRIC: objective}}`` for metrics in ``OBJECTIVE_METRICS``
    (e.g. ``{"churn": {"accuracy": 0.9}}``), exported as ``ml_performance_objective``; the shipped burn-rate alerts
    (examples/prometheus/otel-ml-alerts.yaml) spend the budget ``1 - objective`` (docs/statistics.md)."""
    fairness: dict[str, dict[str, Any]] = field(default_factory=dict)
    """YAML ``fairness`` (top level; its home here, so that every reader of performance decides alike): model →
    ``attributes`` (segment keys), ``favorable``, ``reference_group``, ``thresholds`` (analyze/fairness.py)."""
    max_unsupported_share: float = 0.1
    """A label-free estimate over predictions of which more than this share lie outside the reference's support
    (probabilities beyond the range the calibration map was learned on) is marked unreliable and its decisions are
    withheld: isotonic maps and trees do not extrapolate (docs/statistics.md)."""


ALTERNATIVES = ("worse", "either")
OBJECTIVE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
"""Metrics an objective can be set for: in [0, 1], higher is better, so ``1 - objective`` is an error budget."""
TWO_SIDED_METRICS = frozenset({"bias"})
"""Metrics with no better direction: tested two-sided whatever ``alternative`` says."""
_BIN_CENTERS = (np.arange(PROBABILITY_BINS) + 0.5) / PROBABILITY_BINS


def estimate(prob_all: np.ndarray, calibration: tuple[list[float], list[float]], threshold: float = 0.5,
             draws: int = 100, seed: int = 0, pred_pos: np.ndarray | None = None,
             pred_neg: np.ndarray | None = None) -> dict[str, tuple[float, float]]:
    """Label-free (CBPE) estimates from binned probabilities: (value, standard error) per metric.

    Each bin's rows are positive with the calibrated probability c(p), so the expected confusion counts are sums
    of c(p) and 1 − c(p) over the predicted positives (``pred_pos``: the rows whose ``ml.prediction`` is the
    positive class) and the predicted negatives (``pred_neg``); rows without a prediction count on the side of
    ``threshold`` their probability is. The estimated ROC AUC is the area under the expected curve. The standard
    error is that of the *realized* metric given the estimate: labels drawn ``draws`` times as
    Binomial(bin count, c(p)) (by its normal approximation).

    >>> hist = np.zeros(PROBABILITY_BINS, np.int64); hist[[100, 900]] = 500
    >>> est = estimate(hist, ([0.0, 1.0], [0.0, 1.0]))
    >>> round(est["accuracy"][0], 2), round(est["roc_auc"][0], 2)
    (0.89, 0.89)
    """
    counts = prob_all.astype(float)
    n = counts.sum()
    if not n:
        return {}
    c = np.clip(np.interp(_BIN_CENTERS, calibration[0], calibration[1]), 0.0, 1.0)
    edge = round(threshold * PROBABILITY_BINS)
    above = np.arange(PROBABILITY_BINS) >= edge
    said_pos = pred_pos.astype(float) if pred_pos is not None else np.zeros(PROBABILITY_BINS)
    said_neg = pred_neg.astype(float) if pred_neg is not None else np.zeros(PROBABILITY_BINS)
    unknown = np.maximum(counts - said_pos - said_neg, 0.0)
    said_pos = said_pos + np.where(above, unknown, 0.0)  # predicted positive, per bin
    said_neg = counts - said_pos

    # Only the bins in use matter: every metric below works on them alone (k of 1,024, rows × k for the draws).
    used = np.flatnonzero(counts)
    counts, c, said_pos, said_neg = counts[used], c[used], said_pos[used], said_neg[used]

    def metrics(pos_in_pos: np.ndarray, pos_in_neg: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric for every row of the (draws × bins) arrays of positives among predicted positives and
        negatives (bins in increasing probability)."""
        pos_counts = pos_in_pos + pos_in_neg
        neg_counts = counts - pos_counts
        tp, fp = pos_in_pos.sum(axis=-1), (said_pos - pos_in_pos).sum(axis=-1)
        fn, tn = pos_in_neg.sum(axis=-1), (said_neg - pos_in_neg).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            npos, nneg = pos_counts.sum(axis=-1), neg_counts.sum(axis=-1)
            below = np.cumsum(neg_counts, axis=-1) - neg_counts  # negatives in lower bins (auc_from_bins)
            auc = ((pos_counts * below).sum(axis=-1) + 0.5 * (pos_counts * neg_counts).sum(axis=-1)) / (npos * nneg)
            return {"accuracy": (tp + tn) / n, "precision": tp / (tp + fp), "recall": tp / (tp + fn),
                    "f1": 2 * tp / (2 * tp + fp + fn), "roc_auc": auc}

    values = metrics(said_pos * c, said_neg * c)
    rng = np.random.default_rng(seed)

    def draw(m: np.ndarray) -> np.ndarray:
        # Binomial(m, c) by its normal approximation, kept within [0, m]: 5x faster than exact binomial draws, and
        # only their spread is used (bins with few rows are a small share of any metric's variance).
        mean, sd = m * c, np.sqrt(m * c * (1 - c))
        return np.clip(mean + sd * rng.standard_normal((draws, len(c))), 0.0, m)

    sims = metrics(draw(said_pos), draw(said_neg))
    out = {}
    for k, v in values.items():
        drawn = sims[k][np.isfinite(sims[k])]
        out[k] = (float(v), float(np.std(drawn)) if len(drawn) > 1 else math.nan)
    return out


def estimate_regression(current: dict[str, float], reference: dict[str, float]) -> dict[str, tuple[float, float]]:
    """A regressor's label-free estimates (DLE): (value, standard error) of MAE, RMSE and MAPE from the horizon's
    sums of expected losses (``PerformanceProfile.add_expected_losses``). The standard error is that of the
    realized metric over n rows given the estimate, with the per-row loss's spread measured on the labelled
    reference (as NannyML's DLE takes its sampling error from the reference); RMSE's by the delta method.

    >>> ref = {"n_reg": 100, "ae": 100.0, "se": 200.0, "se2": 800.0, "ape": 10.0, "ape2": 2.0, "n_ape": 100}
    >>> est = estimate_regression({"dle_n": 400, "dle_ae": 480.0, "dle_se": 1000.0, "dle_ape": 48.0}, ref)
    >>> {k: (round(v, 3), round(se, 4)) for k, (v, se) in est.items()}
    {'mae': (1.2, 0.0503), 'rmse': (1.581, 0.0318), 'mape': (0.12, 0.005)}
    """
    n = current.get("dle_n", 0.0)
    if not n:
        return {}

    def spread(total: str, squares: str, count: str) -> float:
        m = reference.get(count, 0.0)
        if m < 2:
            return math.nan
        mean = reference.get(total, 0.0) / m
        return math.sqrt(max(reference.get(squares, 0.0) / m - mean * mean, 0.0) * m / (m - 1))

    mae = current["dle_ae"] / n
    mse = current["dle_se"] / n
    rmse = math.sqrt(mse)
    out = {"mae": (mae, spread("ae", "se", "n_reg") / math.sqrt(n)),
           "rmse": (rmse, spread("se", "se2", "n_reg") / math.sqrt(n) / (2 * rmse) if rmse else math.nan)}
    if current.get("dle_ape", 0.0) or reference.get("n_ape"):
        out["mape"] = (current["dle_ape"] / n, spread("ape", "ape2", "n_ape") / math.sqrt(n))
    return out


@dataclass
class MetricResult:
    value: float
    se: float = math.nan
    n: float = 0.0


@dataclass
class PerformanceReport:
    """One (model, version)'s performance over the current horizon."""

    model: str
    version: str
    task: str | None
    predictions: int = 0
    labeled: int = 0
    realized: dict[str, MetricResult] = field(default_factory=dict)
    estimated: dict[str, MetricResult] = field(default_factory=dict)
    reference: dict[str, MetricResult] = field(default_factory=dict)
    degraded: dict[str, bool] = field(default_factory=dict)
    estimated_degraded: dict[str, bool] = field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    delay_p50: float = math.nan
    delay_p95: float = math.nan
    residual_quantiles: dict[float, float] = field(default_factory=dict)
    auc_bound: float = math.nan
    """How far the realized ROC AUC may be from the unbinned scores' (``auc_from_bins``)."""
    reference_chunk_std: dict[str, float] = field(default_factory=dict)
    """Each metric's standard deviation over the baseline's chunks (NannyML-style bands; shown, not tested)."""
    segments: dict[str, PerformanceReport] = field(default_factory=dict)
    """A segmented model: each segment's performance, decided at the model's level over the segments tested."""
    segment_reference: str = ""
    """What segments are compared with: ``segment`` (the baseline's rows of the same segment) or ``model`` (a
    baseline without segments: the model's whole reference)."""
    objectives: dict[str, float] = field(default_factory=dict)
    """The model's objectives (``PerformanceConfig.objectives``), per metric."""
    segment_contributions: list[SegmentContribution] = field(default_factory=list)
    """Per realized metric, each segment's part of its change from the reference (mix and within), the most
    harmful first."""
    estimate_gap: dict[str, MetricResult] = field(default_factory=dict)
    """Per metric with labels: the label-free estimate on the labelled predictions minus the realized value, with
    the estimate's standard error (what the realized value would spread by if the calibration held)."""
    estimate_off: dict[str, bool] = field(default_factory=dict)
    """Per metric: the gap is significant, i.e. the estimator's assumption (the reference's calibration) no longer
    holds for this traffic."""
    unsupported_share: float = math.nan
    """Share of the estimated predictions outside the reference's support (their probability beyond the range of
    the reference's)."""
    estimate_withheld: str = ""
    """Why the estimates' decisions were withheld (``outside_reference_support``), or ""."""
    withheld: dict[str, str] = field(default_factory=dict)
    """Realized metrics not reported, each with why (a multiclass model's log loss past the join's class limit)."""
    evaluations: list[EvaluationReport] = field(default_factory=list)
    """An LLM model's evaluation results, per evaluation (analyze/evaluations.py)."""
    fairness: FairnessReport | None = None
    """A model with ``fairness`` settings: its groups' rates and disparities (analyze/fairness.py)."""
    wrong_predictions: list[WrongPrediction] = field(default_factory=list)
    """Labelled predictions that were wrong (a regressor's furthest off) whose spans are known, the most telling
    first (profile/wrong_predictions.py)."""

    @property
    def coverage(self) -> float:
        return self.labeled / self.predictions if self.predictions else math.nan


HORIZON_EPISODES = 8
"""False alert episodes one false decision of a disjoint horizon may turn into, with margin: a sliding horizon
re-tests overlapping data, and a decision near the level flaps. Measured at the default performance config
(bench.performance_episodes, docs/benchmarks.md): 5.82 episodes per model per 30 days at α = H/R, one false
disjoint-horizon decision per run."""


def performance_alpha(drift: DriftConfig, performance: PerformanceConfig) -> float:
    """The family-wise level of the performance decisions: ``drift.alpha`` when set, else at most one false alert
    episode per expected run counted in horizons rather than evaluations.

    The drift level (``DriftConfig.evaluation_alpha``) bounds episodes whatever the correlation between
    evaluations, which is tight for a 15-minute horizon and far too strict for a performance horizon of a day
    (an estimated ROC AUC drop NannyML flags, at p = 1.2e-4, never fired): its data turns over once a horizon,
    not once an evaluation. Over an expected run R there are R/H disjoint horizons; α = H/R expects one false
    decision among them, and ``HORIZON_EPISODES`` episodes at most come of each. Capped at 0.05.

    >>> round(performance_alpha(DriftConfig(), PerformanceConfig()), 5)  # a day of a 30-day run, / 8
    0.00417
    >>> performance_alpha(DriftConfig(alpha=0.01), PerformanceConfig())
    0.01
    """
    if drift.alpha is not None:
        return drift.alpha
    by_horizon = performance.horizon_seconds / (drift.expected_run_days * 86_400 * HORIZON_EPISODES)
    return max(drift.evaluation_alpha, min(0.05, by_horizon))


def degradation_p(cur: MetricResult, ref: MetricResult, metric: str, tolerance: float, min_labels: int,
                  alternative: str = "worse") -> float | None:
    """p-value of a z-test that ``cur`` is worse than ``ref`` (``alternative="either"``, or a metric without a
    better direction: that it differs); 1.0 when the drop is within ``tolerance``; None: not tested (too few
    rows, or a standard error missing).

    >>> worse, better = MetricResult(0.80, 0.01, 500), MetricResult(0.95, 0.01, 500)
    >>> ref = MetricResult(0.90, 0.01, 5000)
    >>> f"{degradation_p(worse, ref, 'accuracy', 0, 100):.2g}", degradation_p(better, ref, "accuracy", 0, 100)
    ('7.7e-13', 1.0)
    >>> f"{degradation_p(better, ref, 'accuracy', 0, 100, 'either'):.2g}"
    '0.00041'
    """
    if (metric not in HIGHER_IS_BETTER and metric not in TWO_SIDED_METRICS) or cur.n < min_labels or not (
            math.isfinite(cur.value) and math.isfinite(ref.value) and math.isfinite(cur.se)
            and math.isfinite(ref.se)):
        return None
    se = math.hypot(cur.se, ref.se)
    if se == 0:
        return None
    if alternative == "either" or metric in TWO_SIDED_METRICS:
        change = abs(cur.value - ref.value)
        return float(min(1.0, 2 * stats.norm.sf(change / se))) if change > tolerance else 1.0
    drop = (ref.value - cur.value) if HIGHER_IS_BETTER[metric] else (cur.value - ref.value)
    return float(stats.norm.sf(drop / se)) if drop > tolerance else 1.0


def unsupported_share(current: np.ndarray, reference: np.ndarray) -> float:
    """Share of ``current``'s binned probabilities outside the range of ``reference``'s (NaN without either).

    >>> ref, cur = np.zeros(PROBABILITY_BINS), np.zeros(PROBABILITY_BINS)
    >>> ref[[100, 800]] = 10; cur[[50, 500, 900, 950]] = 1
    >>> unsupported_share(cur, ref)
    0.75
    """
    used = np.flatnonzero(reference)
    total = float(current.sum())
    if not len(used) or not total:
        return math.nan
    inside = float(current[used[0]:used[-1] + 1].sum())
    return (total - inside) / total


def assess(model: str, version: str, current: PerformanceProfile | None, reference: PerformanceReference | None,
           alpha: float, threshold: float = 0.5, positive_class: str | None = None, min_labels: int = 100,
           tolerance: float = 0.0, alternative: str = "worse", max_unsupported_share: float = 0.1
           ) -> PerformanceReport:
    """Realized and estimated metrics of ``current`` against ``reference`` with their decisions."""
    cur = current or PerformanceProfile()
    ref_prof = reference.profile if reference is not None else None
    task = cur.task or (ref_prof.task if ref_prof is not None else None)
    if task is None and cur.prob_all.any() and reference is not None and reference.calibration:
        task = CLASSIFICATION
    positive = positive_class or (reference.positive_class if reference else None) or cur.positive_class() or (
        ref_prof.positive_class() if ref_prof is not None else None)
    report = PerformanceReport(model, version, task, cur.predictions, cur.labeled,
                               delay_p50=cur.delay_quantile(0.5), delay_p95=cur.delay_quantile(0.95))
    report.realized = {k: MetricResult(*v) for k, v in cur.metrics(positive).items()}
    if cur.multiclass is not None and cur.multiclass.n_ll_withheld:
        report.withheld["log_loss"] = (f"{cur.multiclass.n_ll_withheld:.0f} labelled predictions give probabilities "
                                       "of more classes than the label join keeps (64): the true class's share of "
                                       "their probabilities is unknown")
    report.auc_bound = cur.auc_bound()
    report.wrong_predictions = cur.wrong.rows()
    if cur.confusion and len(cur.classes()) > 2:
        report.per_class = cur.per_class()
    if cur.sums["n_reg"]:
        report.residual_quantiles = {q: cur.residual_quantile(q) for q in (0.05, 0.5, 0.95)}
    if ref_prof is not None:
        report.reference = {k: MetricResult(*v) for k, v in ref_prof.metrics(positive).items()}
        report.reference_chunk_std = dict(reference.chunk_std)  # type: ignore[union-attr]
    if reference is not None and reference.calibration and cur.prob_all.any():
        report.estimated = {k: MetricResult(v, se, float(cur.prob_all.sum()))
                            for k, (v, se) in estimate(cur.prob_all, reference.calibration, threshold,
                                                       pred_pos=cur.prob_pred_pos, pred_neg=cur.prob_pred_neg).items()}
        if ref_prof is not None:
            report.unsupported_share = unsupported_share(cur.prob_all, ref_prof.prob_pos + ref_prof.prob_neg
                                                         + ref_prof.prob_all)
        _estimate_gaps(report, cur, reference, threshold, min_labels, alpha)
    elif cur.multiclass is not None and cur.multiclass.n_est:  # calibrated at ingest (class_probabilities.py)
        report.estimated = {k: MetricResult(v, se, cur.multiclass.n_est)
                            for k, (v, se) in cur.multiclass.estimated().items()}
    elif cur.sums["dle_n"] and ref_prof is not None:  # a regressor's expected losses (loss_model.py)
        report.estimated = {k: MetricResult(v, se, cur.sums["dle_n"])
                            for k, (v, se) in estimate_regression(cur.sums, ref_prof.sums).items()}
    for values, decisions in ((report.realized, report.degraded), (report.estimated, report.estimated_degraded)):
        p_values = {m: degradation_p(values[m], report.reference[m], m, tolerance, min_labels, alternative)
                    for m in values if m in report.reference}
        decisions.update(holm({m: p for m, p in p_values.items() if p is not None}, alpha))
    withhold_outside_support(report, report.unsupported_share, max_unsupported_share)
    return report


def withhold_outside_support(report: PerformanceReport, share: float, limit: float) -> None:
    """Record the share of the estimated predictions outside the reference's support; above ``limit`` the
    estimates stay but their decisions are withheld (``estimate_withheld``): a map or trees fitted on the reference
    do not extrapolate beyond it."""
    report.unsupported_share = share
    if share > limit:
        report.estimate_withheld = "outside_reference_support"
        report.estimated_degraded = {}


def loss_inputs_unsupported(drift: ModelReport, reference: PerformanceReference) -> float:
    """A regressor's share of current rows outside its loss models' support, as its drift report's data quality
    tells it: the largest out-of-range (numbers beyond the reference's min and max) or unseen (categories the
    reference never had) share over the loss models' inputs: a lower bound of the rows with any input outside."""
    inputs = {c for m in reference.loss_models.values() for c in (*m.columns, *m.categories, *(f for f, _ in
                                                                                              m.indicators))}
    shares = [s for f in drift.features if f.feature in inputs
              for s in (f.out_of_range_ratio, f.unseen_ratio) if math.isfinite(s)]
    return max(shares, default=0.0)


def _estimate_gaps(report: PerformanceReport, cur: PerformanceProfile, reference: PerformanceReference,
                   threshold: float, min_labels: int, alpha: float) -> None:
    """The binary CBPE estimate on exactly the labelled predictions against their realized metrics: if the
    reference's calibration holds, each realized metric is the estimate within its standard error (which is the
    spread of the realized metric given the calibrated probabilities), so a gap beyond it, two-sided at ``alpha``
    with Holm's step-down over the metrics, says the estimator stopped tracking. The labelled rows' predicted class
    is taken from the threshold (their ``ml.prediction`` is not kept per bin)."""
    labelled = cur.prob_pos + cur.prob_neg
    if labelled.sum() < min_labels or reference.calibration is None:
        return
    p_values = {}
    for name, (value, se) in estimate(labelled, reference.calibration, threshold).items():
        real = report.realized.get(name)
        if real is None or not (math.isfinite(real.value) and math.isfinite(value) and math.isfinite(se)) or se <= 0:
            continue
        gap = value - real.value
        report.estimate_gap[name] = MetricResult(gap, se, float(labelled.sum()))
        p_values[name] = float(min(1.0, 2 * stats.norm.sf(abs(gap) / se)))
    report.estimate_off = holm(p_values, alpha)


def assess_all(model: str, version: str, current: PerformanceProfile | None, reference: PerformanceReference | None,
               drift: DriftConfig, config: PerformanceConfig,
               pinned_evaluations: dict[str, EvaluationScores] | None = None) -> PerformanceReport:
    """``assess`` and ``assess_segments`` with the processor's settings: what the evaluator, the range reads (API,
    pages, ``otel-ml report``) and the notebook client all decide with, so they decide alike. An LLM model's
    evaluation results are decided against the baseline's, else ``pinned_evaluations`` (its first horizon)."""
    alpha = performance_alpha(drift, config)
    options = (config.threshold, config.positive_class, config.min_labels, config.tolerance, config.alternative,
               config.max_unsupported_share)
    report = assess(model, version, current, reference, alpha, *options)
    report.objectives = dict(config.objectives.get(model, {}))
    baseline = reference.profile.evaluations if reference is not None else {}
    if (current is not None and current.evaluations) or baseline or pinned_evaluations:
        report.evaluations = assess_evaluations(
            current.evaluations if current is not None else {}, baseline or pinned_evaluations,
            "baseline" if baseline else "pinned", alpha, config.min_labels)
    assess_segments(report, current, reference, alpha, *options)
    settings = fairness_settings(config.fairness).get(model)
    if settings is not None and current is not None:
        report.fairness = assess_fairness(current, reference.profile if reference is not None else None, settings,
                                          alpha, config.min_labels)
    return report


def assess_segments(report: PerformanceReport, current: PerformanceProfile | None,
                    reference: PerformanceReference | None, alpha: float, threshold: float = 0.5,
                    positive_class: str | None = None, min_labels: int = 100, tolerance: float = 0.0,
                    alternative: str = "worse", max_unsupported_share: float = 0.1) -> None:
    """Each segment's performance (``report.segments``) against the same segment of the baseline (else the whole
    baseline), and each segment's part of every metric's change (``report.segment_contributions``).

    The segments are one family with the model's own decision: each is decided at ``alpha`` divided by the number
    of segments with enough rows to be tested (Bonferroni, valid under any dependence), Holm's step-down over its
    metrics within that; so 50 segments do not mean 50 times the false alerts.
    """
    segments = current.segments if current is not None else {}
    if not segments:
        return
    by_segment = reference.profile.segments if reference is not None else {}
    report.segment_reference = "segment" if by_segment else "model"
    testable = sum(1 for prof in segments.values()
                   if prof.labeled >= min_labels or prof.prob_all.sum() >= min_labels
                   or (prof.multiclass is not None and prof.multiclass.n_est >= min_labels)
                   or prof.sums["dle_n"] >= min_labels)
    level = alpha / max(1, testable)
    for label in sorted(segments):
        own = by_segment.get(label)
        if reference is not None and own is not None:  # the baseline's chunks are the model's, not the segment's
            ref: PerformanceReference | None = dataclasses.replace(reference, profile=own, chunk_std={})
        else:
            ref = None if by_segment else reference
        report.segments[label] = assess(report.model, report.version, segments[label], ref, level, threshold,
                                        positive_class, min_labels, tolerance, alternative, max_unsupported_share)
    report.segment_contributions = performance_contributions(report)


def performance_contributions(report: PerformanceReport) -> list[SegmentContribution]:
    """Per realized metric of the model, each segment's shift-share part of its change from the reference
    (``shift_share``, the metric's n as the rows), the most harmful first: the segment that explains a drop.
    Exact for metrics that are means over rows (accuracy, MAE, log loss, Brier), a first-order split for the
    others (F1, ROC AUC)."""
    out: list[SegmentContribution] = []
    segmented_reference = report.segment_reference == "segment"
    for metric, overall in report.reference.items():
        if metric not in report.realized or not math.isfinite(overall.value):
            continue
        rows = [(label, r.realized[metric], r.reference.get(metric) if segmented_reference else overall)
                for label, r in report.segments.items() if metric in r.realized]
        rows = [(label, cur, ref) for label, cur, ref in rows if ref is not None and cur.n > 0
                and math.isfinite(cur.value) and math.isfinite(ref.value)]
        n1 = sum(cur.n for _, cur, _ in rows)
        n0 = sum(ref.n for _, _, ref in rows) if segmented_reference else n1
        if not rows or not n1 or not n0:
            continue
        parts = [shift_share(metric, label, (ref.n / n0) if segmented_reference else cur.n / n1, cur.n / n1,
                             ref.value, cur.value, overall.value) for label, cur, ref in rows]
        sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
        if metric in TWO_SIDED_METRICS:
            parts.sort(key=lambda c: -abs(c.total))
        else:
            parts.sort(key=lambda c: sign * c.total)
        out += parts
    return out
