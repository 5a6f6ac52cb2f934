"""An LLM call's evaluation results (``gen_ai.evaluation.result``), per evaluation name: the ground truth of a GenAI
model (issue 45). Each result that joined its call counts in the performance window of the call's time.

A result carries a score (``gen_ai.evaluation.score.value``), a label (``gen_ai.evaluation.score.label``) or both.
Scores are kept as a KLL sketch (their distribution) with their count, sum and sum of squares (the mean and its
standard error); labels as counts (the first ``MAX_LABELS``, the rest as ``(other)``). A label is a *pass* or a
*fail* when it reads as one (``PASS_LABELS``, ``FAIL_LABELS``: the conventions' examples ``relevant``, ``correct``,
``pass`` and their opposites, case and ``-``/space/``_`` ignored), or by ``genai.evaluations.<name>.pass_labels``;
the pass rate is passes over the results that are either (other labels are shown, not rated).

>>> s = EvaluationScores()
>>> s.update(np.array([4.0, 5.0, np.nan]), np.array(["relevant", "Not-Relevant", "relevant"]))
>>> s.n, s.passed, s.failed, s.pass_rate()[0], s.mean_score()[0]
(3, 2, 1, 0.6666666666666666, 4.5)
>>> t = EvaluationScores.from_dict(s.to_dict()); t.merge(s); t.n, t.labels["relevant"], t.score_quantile(0.0)
(6, 4, 4.0)
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import datasketches as ds
import numpy as np

MAX_LABELS = 32
"""Distinct labels counted per evaluation; more count as ``(other)``."""
OTHER_LABEL = "(other)"
PASS_LABELS = frozenset({"pass", "passed", "correct", "relevant", "true", "yes", "good", "grounded", "faithful",
                         "safe", "accepted", "helpful", "success"})
FAIL_LABELS = frozenset({"fail", "failed", "incorrect", "not_relevant", "irrelevant", "false", "no", "bad",
                         "ungrounded", "unfaithful", "unsafe", "rejected", "not_helpful", "unhelpful", "failure"})
KLL_K = 200


def label_key(label: str) -> str:
    """How a label is compared with the pass and fail names: lower case, ``-`` and spaces as ``_``.

    >>> label_key("Not Relevant"), label_key("not-relevant")
    ('not_relevant', 'not_relevant')
    """
    return label.strip().lower().replace("-", "_").replace(" ", "_")


class EvaluationScores:
    """The results of one evaluation (by name) of one model's calls over some time: scores and labels."""

    def __init__(self, pass_labels: Iterable[str] | None = None) -> None:
        self.n = 0
        """Results counted (with a score, a label or both)."""
        self.passed = 0
        self.failed = 0
        self.labels: Counter[str] = Counter()
        self.score_n = 0
        self.score_sum = 0.0
        self.score_sum2 = 0.0
        self._scores: ds.kll_doubles_sketch | None = None
        self._pass = frozenset(label_key(x) for x in pass_labels) if pass_labels is not None else None
        """Configured pass labels (every other label a fail), or None: the conventional names."""

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        """Add results: a score (NaN: none) and a label (``""``: none) each."""
        self.n += len(scores)
        ok = np.isfinite(scores)
        if ok.any():
            s = np.ascontiguousarray(scores[ok], dtype=np.float64)
            if self._scores is None:
                self._scores = ds.kll_doubles_sketch(KLL_K)
            self._scores.update(s)
            self.score_n += len(s)
            self.score_sum += float(s.sum())
            self.score_sum2 += float(np.dot(s, s))
        names, counts = np.unique(labels[labels != ""], return_counts=True)
        for name, count in zip(names.tolist(), counts.tolist()):
            self._add_label(name, count)

    def _add_label(self, name: str, count: int) -> None:
        key = label_key(name)
        if (key in self._pass) if self._pass is not None else key in PASS_LABELS:
            self.passed += count
        elif self._pass is not None or key in FAIL_LABELS:
            self.failed += count
        if name in self.labels or len(self.labels) < MAX_LABELS:
            self.labels[name] += count
        else:
            self.labels[OTHER_LABEL] += count

    def merge(self, other: EvaluationScores) -> None:
        self.n += other.n
        self.passed += other.passed
        self.failed += other.failed
        for name, count in other.labels.items():
            if name in self.labels or len(self.labels) < MAX_LABELS:
                self.labels[name] += count
            else:
                self.labels[OTHER_LABEL] += count
        self.score_n += other.score_n
        self.score_sum += other.score_sum
        self.score_sum2 += other.score_sum2
        if other._scores is not None:
            if self._scores is None:
                self._scores = ds.kll_doubles_sketch(KLL_K)
            self._scores.merge(other._scores)

    # --- read ---------------------------------------------------------------------------------------------
    def pass_rate(self) -> tuple[float, float, int]:
        """(pass rate, its standard error, results rated): passes over passes and fails; NaN without any."""
        rated = self.passed + self.failed
        if not rated:
            return math.nan, math.nan, 0
        p = self.passed / rated
        return p, math.sqrt(p * (1 - p) / rated), rated

    def mean_score(self) -> tuple[float, float, int]:
        """(mean score, its standard error, scores); NaN without any."""
        n = self.score_n
        if not n:
            return math.nan, math.nan, 0
        mean = self.score_sum / n
        var = max(self.score_sum2 / n - mean * mean, 0.0) * n / (n - 1) if n > 1 else math.nan
        return mean, math.sqrt(var / n) if n > 1 else math.nan, n

    def score_quantile(self, q: float) -> float:
        return float(self._scores.get_quantile(q)) if self._scores is not None and self._scores.n else math.nan

    # --- state --------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"n": self.n, "passed": self.passed, "failed": self.failed, "labels": dict(self.labels),
                             "score_n": self.score_n, "score_sum": self.score_sum, "score_sum2": self.score_sum2}
        if self._scores is not None:
            d["scores"] = base64.b64encode(self._scores.serialize()).decode("ascii")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvaluationScores:
        s = cls()
        s.n, s.passed, s.failed = int(d["n"]), int(d.get("passed", 0)), int(d.get("failed", 0))
        s.labels = Counter({str(k): int(v) for k, v in d.get("labels", {}).items()})
        s.score_n, s.score_sum, s.score_sum2 = int(d.get("score_n", 0)), float(d.get("score_sum", 0.0)), float(
            d.get("score_sum2", 0.0))
        if "scores" in d:
            s._scores = ds.kll_doubles_sketch.deserialize(base64.b64decode(d["scores"]))
        return s
