"""Whether a model treats groups differently (issue 47): per protected attribute, each group's rates and its
disparity against a reference group, with an interval from the counts and two decisions.

The groups are a segmented model's segments (profile/segments.py): a fairness attribute is a segment key, so each
performance window already counts every segment's predictions, the favorable ones (``sel_n``, ``sel_fav``) and
the labelled outcomes (the confusion counts). A group of one attribute is the sum of the segments with its value;
with two or more attributes, each combination (``sex=F,age_band=[18..30)``) is a group of the intersectional
attribute ``sex,age_band`` too. Rows of ``(missing)`` and ``(other)`` belong to no group (``unattributed``).

Per group: selection rate (favorable predictions over predictions, labelled or not), and with labels the
true-positive rate, false-positive rate and precision, the favorable outcome as the positive class. Per group
against the reference group (configured per attribute, else the group with most predictions):

- ``disparate_impact``: selection rate over the reference group's (the four-fifths rule: below 0.8);
- ``demographic_parity_difference``: selection rate minus the reference group's;
- ``equal_opportunity_difference``: true-positive rate minus the reference group's;
- ``equalized_odds_difference``: the larger of |true-positive rate difference| and |false-positive rate difference|;
- ``predictive_parity_difference``: precision minus the reference group's.

Intervals (95%): a difference of two proportions by Agresti and Caffo (one success and one failure added to each
group: close to nominal coverage even at 0% or 100%); a ratio by Katz's log interval (0.5 added to a count of 0);
equalized odds by the interval of whichever component is larger. Two tests per value, all of a model's in one
Holm family at the performance level (``performance_alpha``), withheld where a group or the reference group has
fewer than ``min_labels`` rows in the rate's denominator:

- ``violation``: the disparity is beyond the threshold (0.8 for the ratio, either way on the log scale; 0.1 for a
  difference, either way): one-sided against the nearer bound, ``Φ((t − |d|) / se)``;
- ``changed``: the disparity moved from the reference's own value of it (a baseline with the same segments):
  two-sided, ``(d − d_ref) / √(se² + se_ref²)``.

>>> from otel_ml.profile.performance import PerformanceProfile, is_positive
>>> prof = PerformanceProfile()
>>> for label, n, fav in (("sex=M", 1000, 500), ("sex=F", 1000, 250)):
...     prof.segment(label).add_selections(n, fav)
>>> settings = fairness_settings({"m": {"attributes": ["sex"], "favorable": 1, "reference_group": {"sex": "M"}}})["m"]
>>> report = assess_fairness(prof, None, settings, 0.01, 100)
>>> v = next(v for v in report.values if v.metric == "disparate_impact")
>>> v.group, round(v.value, 2), v.violation
('F', 0.5, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from otel_ml.analyze.stats import holm
from otel_ml.profile.performance import PerformanceProfile, is_positive
from otel_ml.profile.segments import segment_values

RATES = ("selection_rate", "true_positive_rate", "false_positive_rate", "precision")
"""Each group's own rates (``ml_fairness`` with ``ml_group``; no decision)."""
DISPARITIES = ("disparate_impact", "demographic_parity_difference", "equal_opportunity_difference",
               "equalized_odds_difference", "predictive_parity_difference")
"""Each group against the reference group, decided."""
DEFAULT_THRESHOLDS = {"disparate_impact": 0.8, "demographic_parity_difference": 0.1,
                      "equal_opportunity_difference": 0.1, "equalized_odds_difference": 0.1,
                      "predictive_parity_difference": 0.1}
"""A ratio below this (or above its inverse) or a difference beyond ± this is a violation."""
MAX_ATTRIBUTES = 4
"""As segment keys: a model's attributes are its segments' keys."""
Z95 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class FairnessSettings:
    """One model's ``fairness`` entry (docs/statistics.md, Fairness)."""

    attributes: tuple[str, ...]
    favorable: str
    """The favorable prediction (a loan granted), as its class reads (``1``, ``approved``)."""
    reference_groups: Mapping[str, str] = field(default_factory=dict)
    """Attribute → its reference group's value; an attribute without one compares with its largest group."""
    thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))


def fairness_settings(raw: Mapping[str, Any]) -> dict[str, FairnessSettings]:
    """The ``fairness`` config (model → ``attributes``, ``favorable``, ``reference_group``, ``thresholds``),
    checked: a ValueError names the key at fault. ``favorable`` is required: the counts made at ingest and the
    confusion counts read later must name the same class."""
    out = {}
    for model, entry in raw.items():
        where = f"fairness.{model}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: a mapping with attributes (and favorable, reference_group, thresholds)")
        unknown = set(entry) - {"attributes", "favorable", "reference_group", "thresholds"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} (known: attributes, "
                             "favorable, reference_group, thresholds)")
        attributes = entry.get("attributes")
        if not (isinstance(attributes, list) and 1 <= len(attributes) <= MAX_ATTRIBUTES
                and all(isinstance(a, str) and a for a in attributes) and len(set(attributes)) == len(attributes)):
            raise ValueError(f"{where}.attributes: a list of 1 to {MAX_ATTRIBUTES} distinct feature or segment "
                             f"key names, got {attributes!r}")
        favorable = entry.get("favorable")
        if isinstance(favorable, bool) or not isinstance(favorable, (str, int, float)) or favorable == "":
            raise ValueError(f"{where}.favorable: the favorable prediction (a class), got {favorable!r}")
        groups = entry.get("reference_group") or {}
        if not isinstance(groups, Mapping) or not set(groups) <= set(attributes):
            raise ValueError(f"{where}.reference_group: a mapping of attribute to group value, attributes among "
                             f"{attributes}, got {groups!r}")
        thresholds = dict(DEFAULT_THRESHOLDS)
        given = entry.get("thresholds") or {}
        if not isinstance(given, Mapping) or not set(given) <= set(DEFAULT_THRESHOLDS):
            raise ValueError(f"{where}.thresholds: a mapping with keys among {', '.join(DEFAULT_THRESHOLDS)}, "
                             f"got {given!r}")
        for metric, value in given.items():
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
                0 < value < 1 if metric == "disparate_impact" else 0 <= value < 1)
            if not ok:
                raise ValueError(f"{where}.thresholds.{metric}: " + (
                    "a ratio in (0, 1)" if metric == "disparate_impact" else "a difference in [0, 1)") +
                    f", got {value!r}")
            thresholds[metric] = float(value)
        out[str(model)] = FairnessSettings(tuple(attributes), fairness_text(favorable),
                                           {str(k): fairness_text(v) for k, v in groups.items()}, thresholds)
    return out


def fairness_text(value: Any) -> str:
    """A class or group as its label reads it: ``1`` and ``1.0`` are ``"1"``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def favorable_rows(entry: Mapping[str, Any] | None, pred: np.ndarray | None, text: np.ndarray | None
                   ) -> np.ndarray | None:
    """For a model's ``fairness`` entry, each row's outcome at ingest: 1.0 the favorable prediction, 0.0 another,
    NaN none; None for a model without an entry (or a batch without predictions)."""
    if entry is None or (pred is None and text is None):
        return None
    return is_positive(pred, text, fairness_text(entry.get("favorable", "")))


@dataclass
class GroupCounts:
    """One group's counts over a range: predictions, favorable ones, and the labelled outcomes (favorable as the
    positive class)."""

    attribute: str
    group: str
    predictions: float = 0.0
    favorable: float = 0.0
    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0
    tn: float = 0.0

    def add(self, prof: PerformanceProfile, favorable: str) -> None:
        n, fav = prof.sums["sel_n"], prof.sums["sel_fav"]
        if not n and prof.confusion:  # a baseline's rows: every one labelled, its predictions in the confusion
            n = sum(prof.confusion.values())
            fav = sum(c for (_, p), c in prof.confusion.items() if p == favorable)
        self.predictions += n
        self.favorable += fav
        for (truth, predicted), count in prof.confusion.items():
            if truth == favorable:
                if predicted == favorable:
                    self.tp += count
                else:
                    self.fn += count
            elif predicted == favorable:
                self.fp += count
            else:
                self.tn += count

    def rate(self, metric: str) -> tuple[float, float]:
        """(successes, trials) of one of ``RATES``."""
        return {"selection_rate": (self.favorable, self.predictions),
                "true_positive_rate": (self.tp, self.tp + self.fn), "false_positive_rate": (self.fp, self.fp + self.tn),
                "precision": (self.tp, self.tp + self.fp)}[metric]


@dataclass
class FairnessValue:
    """One rate of a group, or one disparity of a group against the reference group, with its decisions."""

    metric: str
    attribute: str
    group: str
    value: float
    low: float
    high: float
    rows: float
    """The rate's denominator in the group (a disparity: the smaller of the group's and the reference group's)."""
    threshold: float | None = None
    reference_value: float | None = None
    """The reference's own value of it (a baseline with the same segments)."""
    p_values: dict[str, float] = field(default_factory=dict)
    """``violation`` and ``changed``: each test's p-value."""
    violation: bool | None = None
    """None: not decided (too few rows, or a rate)."""
    changed: bool | None = None


@dataclass
class FairnessReport:
    """A model's fairness over a range (``assess_fairness``)."""

    favorable: str
    reference_groups: dict[str, str]
    """Attribute → the group the others are compared with."""
    reference_source: str
    """``baseline`` when the reference's own disparities are known (``changed`` decided), else ""."""
    groups: list[GroupCounts]
    values: list[FairnessValue]
    unattributed: float
    """Predictions in no group: ``(missing)`` (a key without a value) and ``(other)`` (past the segment limit)."""

    @property
    def violations(self) -> list[FairnessValue]:
        return [v for v in self.values if v.violation or v.changed]


def group_counts(profile: PerformanceProfile, settings: FairnessSettings
                 ) -> tuple[dict[str, dict[str, GroupCounts]], float]:
    """Attribute → group → counts, from a profile's segments (with two or more attributes, the intersectional one
    too), and the predictions of no group."""
    attributes = list(settings.attributes)
    intersectional = ",".join(attributes) if len(attributes) > 1 else None
    favorable = settings.favorable
    out: dict[str, dict[str, GroupCounts]] = {a: {} for a in [*attributes, *([intersectional] if intersectional
                                                                             else [])]}
    unattributed = 0.0
    for label, prof in sorted(profile.segments.items()):
        values = segment_values(label)
        if values is None or not set(attributes) <= set(values):
            whole = GroupCounts("", "")
            whole.add(prof, favorable)
            unattributed += whole.predictions
            continue
        keys = [(a, values[a]) for a in attributes]
        if intersectional:
            keys.append((intersectional, ",".join(f"{a}={values[a]}" for a in attributes)))
        for attribute, group in keys:
            counts = out[attribute].get(group)
            if counts is None:
                counts = out[attribute][group] = GroupCounts(attribute, group)
            counts.add(prof, favorable)
    return out, unattributed


def _reference_group(attribute: str, groups: dict[str, GroupCounts], settings: FairnessSettings) -> str | None:
    if "," in attribute and attribute not in settings.reference_groups:
        parts = attribute.split(",")
        if all(a in settings.reference_groups for a in parts):
            wanted = ",".join(f"{a}={settings.reference_groups[a]}" for a in parts)
            return wanted if wanted in groups else None
    wanted = settings.reference_groups.get(attribute)
    if wanted is not None:
        return wanted if wanted in groups else None
    return max(groups, key=lambda g: (groups[g].predictions, g)) if groups else None


def _proportion(x: float, n: float) -> tuple[float, float, float]:
    """(p, low, high): the Agresti–Coull interval (two successes and two failures added)."""
    if n <= 0:
        return math.nan, math.nan, math.nan
    p, q = x / n, (x + 2) / (n + 4)
    half = Z95 * math.sqrt(q * (1 - q) / (n + 4))
    return p, max(0.0, q - half), min(1.0, q + half)


def _difference(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """(difference, its standard error) of a's proportion minus b's: Agresti–Caffo's adjusted standard error."""
    (xa, na), (xb, nb) = a, b
    pa, pb = (xa + 1) / (na + 2), (xb + 1) / (nb + 2)
    return xa / na - xb / nb, math.sqrt(pa * (1 - pa) / (na + 2) + pb * (1 - pb) / (nb + 2))


def _log_ratio(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float, float]:
    """(ratio, log ratio used for the tests, its standard error): Katz's, 0.5 added to a count of 0."""
    (xa, na), (xb, nb) = a, b
    ratio = (xa / na) / (xb / nb) if xb else math.inf if xa else math.nan
    if not xa or not xb:
        xa, na, xb, nb = xa + 0.5, na + 0.5, xb + 0.5, nb + 0.5
    return ratio, math.log((xa / na) / (xb / nb)), math.sqrt(max(0.0, 1 / xa - 1 / na + 1 / xb - 1 / nb))


@dataclass
class _Disparity:
    value: float
    low: float
    high: float
    rows: float
    components: list[tuple[float, float]]
    """(estimate, standard error) on the tested scale: one, or two for equalized odds."""


def _disparity(metric: str, g: GroupCounts, r: GroupCounts) -> _Disparity | None:
    rates = {"disparate_impact": ["selection_rate"], "demographic_parity_difference": ["selection_rate"],
             "equal_opportunity_difference": ["true_positive_rate"],
             "equalized_odds_difference": ["true_positive_rate", "false_positive_rate"],
             "predictive_parity_difference": ["precision"]}[metric]
    pairs = [(g.rate(rate), r.rate(rate)) for rate in rates]
    if any(a[1] <= 0 or b[1] <= 0 for a, b in pairs):
        return None
    rows = min(min(a[1], b[1]) for a, b in pairs)
    if metric == "disparate_impact":
        ratio, log_ratio, se = _log_ratio(*pairs[0])
        return _Disparity(ratio, math.exp(log_ratio - Z95 * se), math.exp(log_ratio + Z95 * se), rows,
                          [(log_ratio, se)])
    components = [_difference(a, b) for a, b in pairs]
    if metric == "equalized_odds_difference":
        d, se = max(components, key=lambda c: abs(c[0]))
        ends = sorted((abs(d - Z95 * se), abs(d + Z95 * se)))  # |d|'s interval: from 0 when d's holds 0
        return _Disparity(abs(d), ends[0] if abs(d) > Z95 * se else 0.0, ends[1], rows, components)
    d, se = components[0]
    return _Disparity(d, d - Z95 * se, d + Z95 * se, rows, components)


def _beyond_p(disparity: _Disparity, metric: str, threshold: float) -> float:
    """p-value of "beyond the threshold": against the nearer bound, Bonferroni over two components."""
    bound = -math.log(threshold) if metric == "disparate_impact" else threshold
    ps = [float(stats.norm.cdf((bound - abs(d)) / se)) if se > 0 else float(abs(d) <= bound)
          for d, se in disparity.components]
    return min(1.0, len(ps) * min(ps))


def _changed_p(cur: _Disparity, ref: _Disparity) -> float:
    ps = []
    for (d, se), (d0, se0) in zip(cur.components, ref.components):
        s = math.hypot(se, se0)
        ps.append(float(2 * stats.norm.sf(abs(d - d0) / s)) if s > 0 else float(d == d0))
    return min(1.0, len(ps) * min(ps))


def assess_fairness(current: PerformanceProfile, reference: PerformanceProfile | None, settings: FairnessSettings,
                    alpha: float, min_rows: int) -> FairnessReport:
    """Every group's rates and disparities over ``current`` (a range's merged performance windows), against the
    reference group; ``reference`` (a baseline's profile with the same segments) for ``changed``."""
    groups, unattributed = group_counts(current, settings)
    ref_groups = group_counts(reference, settings)[0] if reference is not None and reference.segments \
        else None
    report = FairnessReport(settings.favorable, {}, "baseline" if ref_groups else "", [], [], unattributed)
    tests: dict[tuple[int, str], float] = {}
    for attribute, by_group in groups.items():
        report.groups.extend(by_group[g] for g in sorted(by_group))
        for group in sorted(by_group):
            for rate in RATES:
                x, n = by_group[group].rate(rate)
                if n > 0:
                    p, low, high = _proportion(x, n)
                    report.values.append(FairnessValue(rate, attribute, group, p, low, high, n))
        reference_group = _reference_group(attribute, by_group, settings)
        if reference_group is None:
            continue
        report.reference_groups[attribute] = reference_group
        for group in sorted(g for g in by_group if g != reference_group):
            for metric in DISPARITIES:
                disparity = _disparity(metric, by_group[group], by_group[reference_group])
                if disparity is None:
                    continue
                value = FairnessValue(metric, attribute, group, disparity.value, disparity.low, disparity.high,
                                      disparity.rows, settings.thresholds[metric])
                at = len(report.values)
                report.values.append(value)
                if disparity.rows < min_rows:
                    continue
                value.p_values["violation"] = tests[(at, "violation")] = _beyond_p(disparity, metric,
                                                                                  settings.thresholds[metric])
                mine = (ref_groups or {}).get(attribute, {})
                before = _disparity(metric, mine[group], mine[reference_group]) \
                    if group in mine and reference_group in mine else None
                if before is not None:
                    value.reference_value = before.value
                    if before.rows >= min_rows:
                        value.p_values["changed"] = tests[(at, "changed")] = _changed_p(disparity, before)
    for (at, test), rejected in holm(tests, alpha).items():
        setattr(report.values[at], test, rejected)
    return report
