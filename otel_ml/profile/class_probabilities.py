"""Per-class probabilities of a multiclass classifier, as mergeable per-window state: what its label-free
estimates (multiclass CBPE) and its realized one-vs-rest ROC AUC and log loss are computed from.

A model sends one probability per class (``ml.prediction.probability.<class>``, decoded as the numeric columns
``prediction.probability.<class>``). Each class ``c`` keeps, for the **estimates** (every prediction, once the
model's labelled baseline gave a calibration map per class):

- its probability ``p_c`` binned (``PROBABILITY_BINS``), and per bin the sum of its *calibrated* probability
  ``q_c``: the reference's isotonic map of that class, each row's ``q`` then normalised to sum 1, as NannyML's
  CBPE does;
- sums of ``q_c`` and ``q_c²`` over the rows that predicted ``c`` and over the others (expected TP, FP, FN and
  their Bernoulli variances);

and for the **realized** metrics (labelled predictions): ``p_c`` binned by whether the true class is ``c``, and
the sums of ``-log p(true class)`` (each row's probabilities normalised to sum 1, as scikit-learn's ``log_loss``).

>>> cp = ClassProbabilities()
>>> p = np.array([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.2, 0.2, 0.6], [0.6, 0.3, 0.1]])
>>> cp.add_labelled(["a", "b", "c"], p, np.array(["a", "b", "c", "b"]))
>>> round(cp.realized()["roc_auc"][0], 4), round(cp.realized()["log_loss"][0], 4)  # = scikit-learn's
(1.0, 0.5737)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from otel_ml import semconv
from otel_ml.profile.probability_bins import (
    PROBABILITY_BINS,
    auc_from_bins,
    bins_from_text,
    bins_to_text,
    probability_bins,
)

CLASS_PROBABILITY_PREFIX = semconv.CLASS_PROBABILITY_COLUMN_PREFIX
_EPS = np.finfo(np.float64).eps  # scikit-learn's log_loss clips at its dtype's eps
SUMS = ("n_pred", "q_pred", "q2_pred", "q_rest", "q2_rest")
"""Per class: rows that predicted it, Σq and Σq² over them, Σq and Σq² over the rows that predicted another."""


def class_columns(numeric: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray] | None:
    """The classes a batch gives probabilities for and the (rows × classes) matrix of them (NaN: not given);
    None without any.

    >>> class_columns({"x": np.ones(2), "prediction.probability.b": np.array([0.3, 0.6]),
    ...                "prediction.probability.a": np.array([0.7, 0.4])})[0]
    ['a', 'b']
    """
    names = sorted(k for k in numeric if k.startswith(CLASS_PROBABILITY_PREFIX) and len(k) > len(
        CLASS_PROBABILITY_PREFIX))
    if not names:
        return None
    return [k[len(CLASS_PROBABILITY_PREFIX):] for k in names], np.column_stack([numeric[k] for k in names])


def calibrate(p: np.ndarray, classes: list[str], maps: dict[str, tuple[list[float], list[float]]]) -> np.ndarray:
    """Each class's calibrated probability (its map; a class without one keeps its own), rows normalised to sum 1
    (a row whose calibrated probabilities are all 0 becomes uniform), as NannyML's multiclass CBPE.

    >>> calibrate(np.array([[0.9, 0.1]]), ["a", "b"], {"a": ([0.0, 1.0], [0.0, 0.5])}).round(3).tolist()
    [[0.818, 0.182]]
    """
    q = np.empty_like(p, dtype=np.float64)
    for j, c in enumerate(classes):
        m = maps.get(c)
        q[:, j] = np.clip(np.interp(p[:, j], m[0], m[1]), 0.0, 1.0) if m else np.clip(p[:, j], 0.0, 1.0)
    total = q.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, q / total, 1.0 / max(len(classes), 1))


class ClassProbabilities:
    """Per class: binned probabilities and sums for the estimates and the realized metrics (module docstring).
    At most ``max_classes`` classes are kept (the first seen); probabilities of further ones are left out."""

    def __init__(self, max_classes: int = 32) -> None:
        self.max_classes = max_classes
        self.count: dict[str, np.ndarray] = {}
        """class → rows per bin of its probability (estimates)."""
        self.qsum: dict[str, np.ndarray] = {}
        """class → Σ calibrated probability per bin of its raw probability (estimated positives per bin)."""
        self.sums: dict[str, np.ndarray] = {}
        self.pos: dict[str, np.ndarray] = {}
        """class → labelled rows of that true class per bin of its probability; ``neg``: of another class."""
        self.neg: dict[str, np.ndarray] = {}
        self.n_est = 0.0
        """Rows counted for the estimates."""
        self.ll = self.ll2 = self.n_ll = 0.0
        self.n_ll_withheld = 0.0
        """Labelled rows whose log loss cannot be told: their model gives probabilities for more classes than the
        label join keeps (``MAX_PROBABILITY_CLASSES``), so the true class's share of the row is unknown. While any
        are counted, log loss is withheld, never computed wrong."""

    def _room(self, c: str, table: dict[str, np.ndarray]) -> bool:
        return c in table or len(table) < self.max_classes

    # --- update ---------------------------------------------------------------------------------------------
    def add_predictions(self, classes: list[str], p: np.ndarray, q: np.ndarray, predicted: np.ndarray) -> None:
        """Rows' raw (``p``) and calibrated (``q``) probabilities per class and their predicted class names (""
        when unknown: such rows count for ROC AUC only)."""
        ok = np.isfinite(p).all(axis=1)
        if not ok.all():
            p, q, predicted = p[ok], q[ok], predicted[ok]
        if not len(p):
            return
        self.n_est += len(p)
        for j, c in enumerate(classes):
            if not self._room(c, self.count):
                continue
            bins = probability_bins(np.clip(p[:, j], 0.0, 1.0))
            counts = np.bincount(bins, minlength=PROBABILITY_BINS).astype(np.int64)
            expected = np.bincount(bins, weights=q[:, j], minlength=PROBABILITY_BINS)
            said = predicted == c
            qc = q[:, j]
            add = np.array([said.sum(), qc[said].sum(), np.square(qc[said]).sum(), qc[~said].sum(),
                            np.square(qc[~said]).sum()], np.float64)
            if c in self.count:
                self.count[c] += counts
                self.qsum[c] += expected
                self.sums[c] += add
            else:
                self.count[c], self.qsum[c], self.sums[c] = counts, expected, add

    def add_labelled(self, classes: list[str], p: np.ndarray, truth: np.ndarray, complete: bool = True) -> None:
        """Labelled rows: their probabilities per class (NaN: not given; a row without any is left out) and true
        classes. A class's AUC counts the rows that gave its probability; log loss normalises each row over the
        probabilities it gave, and a true class without one counts as probability 0. ``complete`` False: the rows'
        probabilities lack classes beyond the join's limit; their log loss is withheld (``n_ll_withheld``)."""
        ok = np.isfinite(p).any(axis=1)
        p, truth = np.clip(p[ok], 0.0, 1.0), truth[ok]
        if not len(p):
            return
        for j, c in enumerate(classes):
            if not self._room(c, self.pos):
                continue
            given = np.isfinite(p[:, j])
            y = truth[given] == c
            pc = p[given, j]
            pos = np.bincount(probability_bins(pc[y]), minlength=PROBABILITY_BINS).astype(np.int64)
            neg = np.bincount(probability_bins(pc[~y]), minlength=PROBABILITY_BINS).astype(np.int64)
            if c in self.pos:
                self.pos[c] += pos
                self.neg[c] += neg
            else:
                self.pos[c], self.neg[c] = pos, neg
        if not complete:
            self.n_ll_withheld += len(p)
            return
        index = {c: j for j, c in enumerate(classes)}
        at = np.array([index.get(t, -1) for t in truth.tolist()], np.int64)
        total = np.nansum(p, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mine = np.where(at >= 0, p[np.arange(len(p)), np.maximum(at, 0)], 0.0) / total
        loss = -np.log(np.clip(np.nan_to_num(mine, nan=0.0), _EPS, 1 - _EPS))
        self.ll += float(loss.sum())
        self.ll2 += float(np.square(loss).sum())
        self.n_ll += len(loss)

    def merge(self, other: ClassProbabilities) -> None:
        for mine, theirs in ((self.count, other.count), (self.qsum, other.qsum), (self.sums, other.sums),
                             (self.pos, other.pos), (self.neg, other.neg)):
            for c, a in theirs.items():
                if c in mine:
                    mine[c] = mine[c] + a
                elif len(mine) < self.max_classes:
                    mine[c] = a.copy()
        self.n_est += other.n_est
        self.ll, self.ll2, self.n_ll = self.ll + other.ll, self.ll2 + other.ll2, self.n_ll + other.n_ll
        self.n_ll_withheld += other.n_ll_withheld

    # --- read -----------------------------------------------------------------------------------------------
    @property
    def labelled(self) -> bool:
        return bool(self.pos) or self.n_ll > 0

    def per_class_auc(self) -> dict[str, tuple[float, float, float]]:
        """Realized one-vs-rest ROC AUC per class with both outcomes: (value, standard error, binning bound)."""
        out = {}
        for c in sorted(self.pos):
            auc = auc_from_bins(self.pos[c], self.neg[c])
            if auc is not None:
                out[c] = auc
        return out

    def realized(self) -> dict[str, tuple[float, float, float]]:
        """Macro one-vs-rest ROC AUC (the mean over classes, as scikit-learn's ``multi_class="ovr"``) and log
        loss: (value, standard error, n). The macro AUC's error treats the classes' AUCs as independent."""
        out: dict[str, tuple[float, float, float]] = {}
        aucs = self.per_class_auc()
        if aucs:
            k = len(aucs)
            n = float(sum(self.pos[c].sum() for c in aucs))
            out["roc_auc"] = (float(np.mean([a for a, _, _ in aucs.values()])),
                              math.sqrt(sum(se * se for _, se, _ in aucs.values())) / k, n)
        if self.n_ll and not self.n_ll_withheld:
            n = self.n_ll
            var = max(self.ll2 / n - (self.ll / n) ** 2, 0.0) * n / max(n - 1, 1)
            out["log_loss"] = (self.ll / n, math.sqrt(var / n), n)
        return out

    def auc_bound(self) -> float:
        """How far the realized macro AUC may be from the unbinned scores' (the mean of the classes' bounds)."""
        aucs = self.per_class_auc()
        return float(np.mean([b for _, _, b in aucs.values()])) if aucs else math.nan

    def estimated(self) -> dict[str, tuple[float, float]]:
        """Multiclass CBPE: (value, standard error) of accuracy, macro precision, recall, F1 and one-vs-rest ROC
        AUC. Expected TP of class c: Σq_c over the rows that predicted c; FP: their count minus that; FN: Σq_c
        over the others. Errors: each row's outcome a Bernoulli(q) draw (delta method; Hanley–McNeil for AUC),
        classes independent in the macro means."""
        if not self.n_est or not self.count:
            return {}
        per: dict[str, list[tuple[float, float]]] = {m: [] for m in ("precision", "recall", "f1", "roc_auc")}
        tp_total = var_total = 0.0
        for c in sorted(self.count):
            n_pred, a, a2, b, b2 = self.sums[c].tolist()
            va, vb = max(a - a2, 0.0), max(b - b2, 0.0)
            tp_total += a
            var_total += va
            if n_pred:
                per["precision"].append((a / n_pred, math.sqrt(va) / n_pred))
            if a + b > 0:
                per["recall"].append((a / (a + b), math.sqrt(b * b * va + a * a * vb) / (a + b) ** 2))
            d = a + n_pred + b
            if d > 0:
                per["f1"].append((2 * a / d, 2 * math.sqrt((n_pred + b) ** 2 * va + a * a * vb) / d ** 2))
            expected_pos = self.qsum[c]
            auc = auc_from_bins(expected_pos, np.maximum(self.count[c] - expected_pos, 0.0))
            if auc is not None:
                per["roc_auc"].append((auc[0], auc[1]))
        out = {"accuracy": (tp_total / self.n_est, math.sqrt(var_total) / self.n_est)}
        for m, values in per.items():
            if values:
                out[m] = (float(np.mean([v for v, _ in values])),
                          math.sqrt(sum(se * se for _, se in values)) / len(values))
        return out

    # --- state ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"max_classes": self.max_classes, "n_est": self.n_est, "ll": self.ll, "ll2": self.ll2,
                             "n_ll": self.n_ll, **({"n_ll_withheld": self.n_ll_withheld} if self.n_ll_withheld else {})}
        for name in ("count", "qsum", "pos", "neg"):
            d[name] = {c: bins_to_text(a) for c, a in getattr(self, name).items()}
        d["sums"] = {c: a.tolist() for c, a in self.sums.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassProbabilities:
        out = cls(int(d.get("max_classes", 32)))
        out.n_est, out.ll, out.ll2, out.n_ll, out.n_ll_withheld = (
            float(d.get(k, 0.0)) for k in ("n_est", "ll", "ll2", "n_ll", "n_ll_withheld"))
        for name, dtype in (("count", np.int64), ("qsum", np.float64), ("pos", np.int64), ("neg", np.int64)):
            setattr(out, name, {str(c): bins_from_text(text, dtype) for c, text in d.get(name, {}).items()})
        out.sums = {str(c): np.asarray(v, np.float64) for c, v in d.get("sums", {}).items() if len(v) == len(SUMS)}
        return out
