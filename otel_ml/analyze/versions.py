"""Version against version (canary and shadow): one model's two versions over the same time, each difference with
a decision (issue 46, part 2).

``compare_versions`` takes the two versions' profiles of one time range (the live horizon, or any archived range)
and their performance reports, with version ``a`` as the baseline (the stable one) and ``b`` as the candidate:

- **inputs**: are they served the same traffic? Every input feature of ``b`` tested against ``a``'s, as drift is
  (analyze/drift.py ``compare``, Bonferroni over the features); ``different`` when any input feature differs. A
  canary (a share of the traffic) expects none; so does a shadow (the same requests to both).
- **outputs**: the prediction, its score and probabilities tested the same way: ``different`` when any differs.
- **performance**: each metric both versions have, realized where labelled (else the label-free estimate), as
  ``b − a`` with its standard error √(se_a² + se_b²); ``worse`` when a one-sided z-test says ``b`` is worse, Holm's
  step-down over the metrics at the performance level (analyze/performance.py), no test under
  ``performance.min_labels`` rows on either side.
- **errors**: the share of predictions in failed spans, one-sided two-proportion z-test (``b`` higher).
- **latency**: the span durations, a KS test of ``b``'s against ``a``'s (two-sided; p50 and p95 shown).

Live, each model with more than one version in the horizon compares every other version (the candidates: a canary,
a shadow) with its busiest one (the stable version), at most ``MAX_CANDIDATES`` of them, the busiest first
(``live_pairs``); the API compares any two.

>>> import numpy as np
>>> from otel_ml.profile.model import ModelProfile
>>> from otel_ml.decode.batch import ColumnarBatch
>>> rng = np.random.default_rng(1)
>>> def version(v, shift, errors):
...     p = ModelProfile("m", v)
...     b = ColumnarBatch("m", v, 2000, np.zeros(2000, np.int64), np.ones(2000),
...                       numeric={"x": rng.normal(0, 1, 2000), "prediction": rng.normal(shift, 1, 2000)},
...                       span_end_ns=np.zeros(2000, np.int64), span_duration_s=np.full(2000, 0.01),
...                       span_error=rng.random(2000) < errors)
...     p.update(b, {"x": "numeric", "prediction": "numeric"})
...     return p
>>> c = compare_versions(version("3", 0.0, 0.01), version("4", 0.5, 0.05), None, None)
>>> c.decisions
{'inputs': False, 'outputs': True, 'error_ratio': True, 'latency': False}
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from otel_ml import semconv
from otel_ml.analyze.drift import DriftConfig, FeatureReport, compare
from otel_ml.analyze.performance import PerformanceReport
from otel_ml.analyze.stats import holm, ks_pvalue, ks_statistic
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.performance import HIGHER_IS_BETTER
from otel_ml.profile.sketch import kll_items


@dataclass
class Difference:
    """One quantity of both versions, ``b − a`` with its standard error, and the test's p-value (None: untested)."""

    a: float
    b: float
    se: float = math.nan
    p_value: float | None = None
    n_a: float = 0.0
    n_b: float = 0.0
    source: str = ""
    """Performance: ``realized`` or ``estimated``."""

    @property
    def difference(self) -> float:
        return self.b - self.a


@dataclass
class VersionComparison:
    model: str
    a: str
    b: str
    rows_a: int
    rows_b: int
    inputs: list[FeatureReport]
    outputs: list[FeatureReport]
    performance: dict[str, Difference] = field(default_factory=dict)
    error_ratio: Difference | None = None
    latency_p50: Difference | None = None
    latency_p95: Difference | None = None
    latency_p_value: float | None = None
    decisions: dict[str, bool] = field(default_factory=dict)
    """``inputs``, ``outputs`` (differ), each performance metric (``b`` worse), ``error_ratio`` (``b`` higher),
    ``latency`` (differs); a key is absent while its test cannot be made."""


MAX_CANDIDATES = 3
"""Candidate versions compared with a model's busiest version, live (the exporter's series)."""


def live_pairs(rows: Iterable[tuple[str, str, int]]) -> list[tuple[str, str, str]]:
    """(model, stable version, candidate version) of every model with more than one version: ``rows`` is (model,
    version, rows in the horizon).

    >>> live_pairs([("m", "3", 900), ("m", "4", 100), ("n", "1", 5), ("m", "5", 0)])
    [('m', '3', '4')]
    """
    by_model: dict[str, list[tuple[int, str]]] = {}
    for model, version, n in rows:
        if n > 0:
            by_model.setdefault(model, []).append((n, version))
    out = []
    for model, versions in sorted(by_model.items()):
        if len(versions) < 2:
            continue
        ranked = sorted(versions, key=lambda x: (-x[0], x[1]))
        stable = ranked[0][1]
        out += [(model, stable, v) for _, v in ranked[1:1 + MAX_CANDIDATES]]
    return out


def is_output(name: str) -> bool:
    """A column of the model's output (its prediction, score, probabilities), not of its inputs."""
    return name in (semconv.PREDICTION_FEATURE, semconv.PREDICTION_SCORE_FEATURE,
                    semconv.PREDICTION_PROBABILITY_FEATURE) or name.startswith(
        semconv.CLASS_PROBABILITY_COLUMN_PREFIX)


def _decided(features: list[FeatureReport]) -> bool | None:
    tested = [f for f in features if not f.withheld_reason]
    return any(f.overall.detected for f in tested) if tested else None


def performance_differences(a: PerformanceReport, b: PerformanceReport, min_rows: int
                            ) -> tuple[dict[str, Difference], dict[str, float]]:
    """Per metric both versions have (realized, else estimated): the difference, and the one-sided p-value that
    ``b`` is worse (only where both sides have ``min_rows`` rows and standard errors)."""
    out: dict[str, Difference] = {}
    p_values: dict[str, float] = {}
    for source, va, vb in (("realized", a.realized, b.realized), ("estimated", a.estimated, b.estimated)):
        for metric in sorted(set(va) & set(vb) - set(out)):
            ma, mb = va[metric], vb[metric]
            if not (math.isfinite(ma.value) and math.isfinite(mb.value)):
                continue
            d = Difference(ma.value, mb.value, math.hypot(ma.se, mb.se), None, ma.n, mb.n, source)
            better = HIGHER_IS_BETTER.get(metric)
            if better is not None and min(ma.n, mb.n) >= min_rows and math.isfinite(d.se) and d.se > 0:
                worse = -d.difference if better else d.difference
                d.p_value = p_values[metric] = float(stats.norm.sf(worse / d.se))
            out[metric] = d
    return out, p_values


def sorted_items(items: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(items[0], kind="stable")
    return items[0][order], items[1][order]


def _latency(a: ModelProfile, b: ModelProfile) -> tuple[Difference, Difference, float | None]:
    qa = [a.latency_quantile(q) for q in (0.5, 0.95)]
    qb = [b.latency_quantile(q) for q in (0.5, 0.95)]
    p = None
    if a.latency.n and b.latency.n:
        ia, ib = (sorted_items(kll_items(s.latency.serialize())) for s in (a, b))
        p = ks_pvalue(ks_statistic(ia, ib), int(a.latency.n), int(b.latency.n))
    return (Difference(qa[0], qb[0], n_a=a.latency.n, n_b=b.latency.n),
            Difference(qa[1], qb[1], n_a=a.latency.n, n_b=b.latency.n), p)


def _errors(a: ModelProfile, b: ModelProfile, min_rows: int) -> Difference | None:
    if not a.rows or not b.rows:
        return None
    pa, pb = a.error_rows / a.rows, b.error_rows / b.rows
    d = Difference(pa, pb, math.sqrt(pa * (1 - pa) / a.rows + pb * (1 - pb) / b.rows), None, a.rows, b.rows)
    if min(a.rows, b.rows) >= min_rows and d.se > 0:
        d.p_value = float(stats.norm.sf(d.difference / d.se))
    return d


def compare_versions(a: ModelProfile, b: ModelProfile, perf_a: PerformanceReport | None,
                     perf_b: PerformanceReport | None, drift: DriftConfig | None = None, alpha: float = 0.01,
                     min_labels: int = 100) -> VersionComparison:
    """``b`` against ``a`` (see the module doc): ``alpha`` is the level of the performance, error and latency
    decisions (the processor's performance level); inputs and outputs are decided as drift is."""
    drift = drift or DriftConfig()
    report = compare(a, b, drift, "version")
    out = VersionComparison(a.model, a.version, b.version, a.rows, b.rows,
                            [f for f in report.features if not is_output(f.feature)],
                            [f for f in report.features if is_output(f.feature)])
    for key, features in (("inputs", out.inputs), ("outputs", out.outputs)):
        decided = _decided(features)
        if decided is not None:
            out.decisions[key] = decided
    p_values: dict[str, float] = {}
    if perf_a is not None and perf_b is not None:
        out.performance, p_values = performance_differences(perf_a, perf_b, min_labels)
    out.error_ratio = _errors(a, b, drift.min_samples)
    if out.error_ratio is not None and out.error_ratio.p_value is not None:
        p_values["error_ratio"] = out.error_ratio.p_value
    out.latency_p50, out.latency_p95, out.latency_p_value = _latency(a, b)
    if out.latency_p_value is not None and min(a.latency.n, b.latency.n) >= drift.min_samples:
        p_values["latency"] = out.latency_p_value
    out.decisions.update(holm(p_values, alpha))
    return out

