"""Model performance of one window: what labelled predictions say, in counts and sums that merge.

A ``PerformanceProfile`` holds, for the predictions of one window of event time: how many carried an id, how
many got a label (and after what delay), and for those the confusion counts (classifiers), the scores of the
positive class binned by label (ROC AUC), log-loss and Brier sums, or error sums and a residual sketch
(regressors). Windows merge by addition, so a horizon's performance is the sum of its windows'. ``metrics``
reads the numbers with a standard error each (for the degradation test, docs/statistics.md).

Probabilities are counted in ``PROBABILITY_BINS`` equal bins of [0, 1]: exact counts that merge, and ROC AUC
from them is exact up to the pairs that share a bin, a bound computed with it (``roc_auc``).

>>> p = PerformanceProfile()
>>> p.add_classified(np.array(["1", "0", "1", "1"]), np.array(["1", "0", "0", "1"]), np.array([.9, .2, .6, .8]))
>>> m = p.metrics("1")
>>> round(m["accuracy"][0], 3), round(m["precision"][0], 3), round(m["recall"][0], 3), round(m["roc_auc"][0], 3)
(0.75, 1.0, 0.667, 1.0)
"""

from __future__ import annotations

import base64
import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import datasketches as ds
import numpy as np

from otel_ml.decode.ids import number_text
from otel_ml.profile.class_probabilities import ClassProbabilities, calibrate
from otel_ml.profile.evaluations import EvaluationScores
from otel_ml.profile.loss_model import LossModel
from otel_ml.profile.probability_bins import (
    PROBABILITY_BINS,
    auc_from_bins,
    bins_from_text,
    bins_to_text,
    probability_bins,
)
from otel_ml.profile.sketch import kll_items
from otel_ml.profile.wrong_predictions import WrongPredictions
from otel_ml.sealed import opened, seal

OTHER_CLASS = "(other)"
"""Classes beyond ``max_classes`` are counted under this name."""
POSITIVE_NAMES = ("1", "true", "yes", "positive", "pos")
"""Without a configured positive class, the first of these that a binary model's classes contain."""
CLASSIFICATION = "classification"
REGRESSION = "regression"
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier")
REGRESSION_METRICS = ("mae", "rmse", "mape", "r2", "bias")
HIGHER_IS_BETTER = {"accuracy": True, "precision": True, "recall": True, "f1": True, "roc_auc": True,
                    "r2": True, "log_loss": False, "brier": False, "mae": False, "rmse": False, "mape": False}
"""Direction of each metric; ``bias`` has none (closer to 0 is better) and is not tested."""
_EPS = 1e-15  # log loss clips probabilities to [eps, 1 - eps], as scikit-learn does


def class_names(num: np.ndarray, text: np.ndarray) -> np.ndarray:
    """One str array of classes from a numeric and a text array (text wins where present): a numeric class reads
    as an int attribute would (``1.0`` → ``"1"``).

    >>> class_names(np.array([1.0, np.nan, 2.5]), np.array(["", "yes", ""])).tolist()
    ['1', 'yes', '2.5']
    """
    out = text.astype(object)
    numeric = (text == "") & np.isfinite(num)
    if numeric.any():
        out[numeric] = number_text(num[numeric])
    return out.astype(str)


def conventional_positive(classes: Iterable[str]) -> str | None:
    """The positive class of a binary classifier without a configured one: the first of ``POSITIVE_NAMES`` (any
    case) among ``classes``.

    >>> conventional_positive(["No", "Yes"]), conventional_positive(["approve", "deny"])
    ('Yes', None)
    """
    present = {c.lower(): c for c in classes}
    return next((present[name] for name in POSITIVE_NAMES if name in present), None)


def negative_of(positive: str) -> str:
    """The class a binary classifier predicts below the threshold, named after its positive class."""
    return {"1": "0", "true": "false", "yes": "no", "positive": "negative", "pos": "neg"}.get(
        positive.lower(), f"not {positive}")


def is_positive(num: np.ndarray | None, text: np.ndarray | None, positive: str) -> np.ndarray:
    """1.0 where the prediction is ``positive``, 0.0 where it is another class, NaN where there is none.

    >>> is_positive(np.array([1.0, 0.0, np.nan]), None, "1").tolist()
    [1.0, 0.0, nan]
    """
    n = len(num) if num is not None else len(text)  # type: ignore[arg-type]
    out = np.full(n, np.nan)
    if num is not None:
        known = np.isfinite(num)
        try:
            target = float(positive)
        except ValueError:
            target = math.nan
        out[known] = (num[known] == target).astype(float)
    if text is not None:
        known = text != ""
        out[known] = (text[known] == positive).astype(float)
    return out


def _hist(p: np.ndarray) -> np.ndarray:
    return np.bincount(probability_bins(p), minlength=PROBABILITY_BINS).astype(np.int64)


_NO_BINS = np.zeros(PROBABILITY_BINS, np.int64)
_NO_BINS.flags.writeable = False

HISTOGRAMS = ("prob_pos", "prob_neg", "prob_all", "prob_pred_pos", "prob_pred_neg")
"""Probabilities binned: of labelled rows whose true class is the positive one (``prob_pos``) or another
(``prob_neg``); of every prediction, labelled or not (``prob_all``: what label-free estimates read), split by
whether it predicted the positive class (``prob_pred_pos``) or another (``prob_pred_neg``; rows in neither, without
``ml.prediction``, use the threshold)."""


class PerformanceProfile:
    """Counts and sums of labelled predictions (and of every prediction's probability, for estimates)."""

    prob_pos = property(lambda self: self._bins.get("prob_pos", _NO_BINS))
    prob_neg = property(lambda self: self._bins.get("prob_neg", _NO_BINS))
    prob_all = property(lambda self: self._bins.get("prob_all", _NO_BINS))
    prob_pred_pos = property(lambda self: self._bins.get("prob_pred_pos", _NO_BINS))
    prob_pred_neg = property(lambda self: self._bins.get("prob_pred_neg", _NO_BINS))

    def _add_bins(self, name: str, counts: np.ndarray) -> None:
        mine = self._bins.get(name)
        if mine is None:
            if counts.any():
                self._bins[name] = counts.astype(np.int64)  # a copy
        else:
            mine += counts

    SUMS = ("ll", "ll2", "br", "br2", "n_prob", "e", "ae", "se", "se2", "ape", "n_ape", "y", "y2", "n_reg",
            "ape2", "y3", "y4", "e2y", "e2y2", "n_moments", "dle_n", "dle_ae", "dle_se", "dle_ape", "sel_n", "sel_fav")
    """``n_moments`` counts the regression rows whose higher moments (``ape2`` … ``e2y2``, for the standard errors
    of MAPE and R²) were summed: windows written before those existed lack them, and a merge with one gives no
    standard error (so no decision) rather than a wrong one. ``dle_*``: a regressor's predictions counted with
    their expected absolute, squared and relative error (``loss_model.py``), for its label-free estimates. ``sel_n``
    and ``sel_fav``: a model with ``fairness`` settings, its predictions with an outcome and those of the favorable
    one (every prediction, labelled or not: the selection rate, analyze/fairness.py)."""

    def __init__(self, max_classes: int = 32) -> None:
        self.max_classes = max_classes
        self.predictions = 0
        """Predictions that carried an id (could be labelled)."""
        self.labeled = 0
        self.confusion: Counter[tuple[str, str]] = Counter()
        """(true class, predicted class) → count."""
        self._bins: dict[str, np.ndarray] = {}
        """The probability histograms (``HISTOGRAMS``), each allocated on first use: a model without probabilities
        (a regressor) pays nothing for them."""
        self.sums = dict.fromkeys(self.SUMS, 0.0)
        self._residuals: ds.kll_doubles_sketch | None = None
        self._delays: ds.kll_doubles_sketch | None = None
        self.multiclass: ClassProbabilities | None = None
        """Per-class probabilities of a multiclass model (``ml.prediction.probability.<class>``), on first use."""
        self.segments: dict[str, PerformanceProfile] = {}
        """Segment label → the same counts of its rows alone (a segmented model: profile/segments.py)."""
        self.evaluations: dict[str, EvaluationScores] = {}
        """An LLM call model's evaluation results by evaluation name (profile/evaluations.py)."""
        self.wrong = WrongPredictions()
        """Wrong predictions whose spans are known (profile/wrong_predictions.py): where a drop can be looked at."""

    def segment(self, label: str) -> PerformanceProfile:
        """The profile of one segment's rows (made on first use)."""
        prof = self.segments.get(label)
        if prof is None:
            prof = self.segments[label] = PerformanceProfile(self.max_classes)
        return prof

    # --- update -------------------------------------------------------------------------------------------
    def add_evaluations(self, name: str, scores: np.ndarray, labels: np.ndarray,
                        pass_labels: Iterable[str] | None = None) -> None:
        """Evaluation results (``name``) of this window's calls: a score (NaN: none) and a label each."""
        ev = self.evaluations.get(name)
        if ev is None:
            ev = self.evaluations[name] = EvaluationScores(pass_labels)
        ev.update(scores, labels)

    def add_selections(self, predictions: int, favorable: int) -> None:
        """Predictions with an outcome, and how many of them the favorable one (a model with ``fairness``)."""
        self.sums["sel_n"] += predictions
        self.sums["sel_fav"] += favorable

    def add_predictions(self, with_id: int, probabilities: np.ndarray | None = None,
                        predicted_positive: np.ndarray | None = None) -> None:
        """Predictions arrived: ``with_id`` of them can be labelled; ``probabilities`` (NaN: none) feed estimates,
        split by ``predicted_positive`` (1.0: the positive class was predicted, 0.0: another, NaN: unknown)."""
        self.predictions += with_id
        if probabilities is not None:
            ok = np.isfinite(probabilities)
            p = probabilities[ok]
            if len(p):
                self._add_bins("prob_all", _hist(p))
                if predicted_positive is not None:
                    pp = predicted_positive[ok]
                    self._add_bins("prob_pred_pos", _hist(p[pp == 1.0]))
                    self._add_bins("prob_pred_neg", _hist(p[pp == 0.0]))

    def _class_probabilities(self) -> ClassProbabilities:
        if self.multiclass is None:
            self.multiclass = ClassProbabilities(self.max_classes)
        return self.multiclass

    def add_class_probabilities(self, classes: list[str], p: np.ndarray, q: np.ndarray, predicted: np.ndarray) -> None:
        """Predictions of a multiclass model: each class's raw and calibrated probability, the predicted class
        (multiclass label-free estimates; ``ClassProbabilities.add_predictions``)."""
        self._class_probabilities().add_predictions(classes, p, q, predicted)

    def add_class_outcomes(self, classes: list[str], p: np.ndarray, truth: np.ndarray, complete: bool = True) -> None:
        """Labelled predictions of a multiclass model: each class's probability and the true class (realized
        one-vs-rest ROC AUC and log loss; ``complete`` False: the rows lack classes, their log loss is withheld)."""
        self._class_probabilities().add_labelled(classes, p, truth, complete)

    def _classes(self, names: np.ndarray) -> np.ndarray:
        known = {t for pair in self.confusion for t in pair}
        if len(known) < self.max_classes and len(known | set(np.unique(names).tolist())) <= self.max_classes:
            return names
        out = names.astype(object)
        for i, c in enumerate(out):
            if c not in known:
                if len(known) < self.max_classes - 1:
                    known.add(c)
                else:
                    out[i] = OTHER_CLASS
        return out.astype(str)

    def add_classified(self, truth: np.ndarray, predicted: np.ndarray, probability: np.ndarray | None = None,
                       positive: str = "1", delays_s: np.ndarray | None = None) -> None:
        """Labelled classifier predictions: true and predicted class names, the positive class's probability."""
        self.labeled += len(truth)
        pairs = np.char.add(np.char.add(self._classes(truth).astype(str), "\x1f"), self._classes(predicted))
        keys, counts = np.unique(pairs, return_counts=True)
        for k, n in zip(keys.tolist(), counts.tolist()):
            t, _, p = k.partition("\x1f")
            self.confusion[(t, p)] += n
        if probability is not None:
            ok = np.isfinite(probability)
            if ok.any():
                p, y = np.clip(probability[ok], 0.0, 1.0), truth[ok] == positive
                self._add_bins("prob_pos", _hist(p[y]))
                self._add_bins("prob_neg", _hist(p[~y]))
                pc = np.clip(p, _EPS, 1 - _EPS)
                ll = -np.where(y, np.log(pc), np.log1p(-pc))
                br = np.square(p - y)
                self.sums["ll"] += float(ll.sum())
                self.sums["ll2"] += float(np.square(ll).sum())
                self.sums["br"] += float(br.sum())
                self.sums["br2"] += float(np.square(br).sum())
                self.sums["n_prob"] += int(ok.sum())
        self._add_delays(delays_s)

    def add_regressed(self, truth: np.ndarray, predicted: np.ndarray, delays_s: np.ndarray | None = None) -> None:
        """Labelled regression predictions: true and predicted values."""
        ok = np.isfinite(truth) & np.isfinite(predicted)
        self.labeled += len(truth)
        y, e = truth[ok], predicted[ok] - truth[ok]
        if len(y):
            s = self.sums
            s["n_reg"] += len(y)
            s["e"] += float(e.sum())
            s["ae"] += float(np.abs(e).sum())
            s["se"] += float(np.square(e).sum())
            s["se2"] += float(np.square(np.square(e)).sum())
            s["y"] += float(y.sum())
            s["y2"] += float(np.square(y).sum())
            nz = y != 0  # MAPE is undefined at a zero target: those rows are left out of it (and counted)
            ape = np.abs(e[nz] / y[nz])
            s["ape"] += float(ape.sum())
            s["n_ape"] += int(nz.sum())
            e2, y2 = np.square(e), np.square(y)
            s["ape2"] += float(np.square(ape).sum())
            s["y3"] += float((y2 * y).sum())
            s["y4"] += float(np.square(y2).sum())
            s["e2y"] += float((e2 * y).sum())
            s["e2y2"] += float((e2 * y2).sum())
            s["n_moments"] += len(y)
            if self._residuals is None:
                self._residuals = ds.kll_doubles_sketch(200)
            self._residuals.update(np.ascontiguousarray(e, dtype=np.float64))
        self._add_delays(delays_s)

    def add_expected_losses(self, losses: dict[str, np.ndarray], weights: np.ndarray | None = None) -> None:
        """A regressor's predictions with their expected loss per target (``abs``, ``squared``, ``abs_pct``);
        ``weights``: how many predictions each stands for (a sample's inverse inclusion probabilities)."""
        s = self.sums
        s["dle_n"] += float(weights.sum()) if weights is not None else len(next(iter(losses.values())))
        for target, name in (("abs", "dle_ae"), ("squared", "dle_se"), ("abs_pct", "dle_ape")):
            if target in losses:
                loss = np.maximum(losses[target], 0.0)
                s[name] += float(loss @ weights if weights is not None else loss.sum())

    def _add_delays(self, delays_s: np.ndarray | None) -> None:
        if delays_s is not None and len(delays_s):
            if self._delays is None:
                self._delays = ds.kll_doubles_sketch(200)
            self._delays.update(np.ascontiguousarray(np.maximum(delays_s, 0.0), dtype=np.float64))

    def copy(self) -> PerformanceProfile:
        """An independent profile with the same counts (to merge into without changing this one)."""
        out = PerformanceProfile(self.max_classes)
        out.merge(self)
        return out

    def merge(self, other: PerformanceProfile) -> None:
        self.predictions += other.predictions
        self.labeled += other.labeled
        self.confusion.update(other.confusion)
        for name, counts in other._bins.items():
            self._add_bins(name, counts)
        for k, v in other.sums.items():
            self.sums[k] += v
        if other.multiclass is not None:
            self._class_probabilities().merge(other.multiclass)
        for name in ("_residuals", "_delays"):
            theirs = getattr(other, name)
            if theirs is not None:
                if getattr(self, name) is None:
                    setattr(self, name, ds.kll_doubles_sketch(200))
                getattr(self, name).merge(theirs)
        for label, prof in other.segments.items():
            self.segment(label).merge(prof)
        for name, ev in other.evaluations.items():
            self.evaluations.setdefault(name, EvaluationScores()).merge(ev)
        if other.wrong:
            self.wrong.merge(other.wrong)

    # --- read ---------------------------------------------------------------------------------------------
    @property
    def task(self) -> str | None:
        if self.confusion or (self.multiclass is not None and self.multiclass.n_est):
            return CLASSIFICATION
        if self.sums["n_reg"] or self.sums["dle_n"]:
            return REGRESSION
        return None

    @property
    def coverage(self) -> float:
        """Share of id-carrying predictions with a label."""
        return self.labeled / self.predictions if self.predictions else math.nan

    def delay_quantile(self, q: float) -> float:
        return float(self._delays.get_quantile(q)) if self._delays is not None and self._delays.n else math.nan

    def residual_quantile(self, q: float) -> float:
        r = self._residuals
        return float(r.get_quantile(q)) if r is not None and r.n else math.nan

    def classes(self) -> list[str]:
        return sorted({c for pair in self.confusion for c in pair})

    def positive_class(self, configured: str | None = None) -> str | None:
        """The positive class of a binary classifier: ``configured``, else a conventional name among its classes."""
        if configured:
            return configured
        return conventional_positive(self.classes())

    def metrics(self, positive: str | None = None) -> dict[str, tuple[float, float, float]]:
        """Each metric this profile can give: (value, standard error, n), the error from the delta method on
        the counts (classification), the sample variance of the per-row loss (log loss, Brier, MAE, MAPE), or
        Hanley and McNeil's formula (ROC AUC). Binary metrics (precision, recall, F1 and the probability ones) are
        of ``positive``; a multiclass model gets macro averages (and ``per_class``)."""
        out: dict[str, tuple[float, float, float]] = {}
        if self.confusion:
            out.update(_confusion_metrics(self.confusion, positive))
            auc = self.roc_auc()
            if auc is not None:
                out["roc_auc"] = auc[0], auc[1], float(self.prob_pos.sum() + self.prob_neg.sum())
            elif self.multiclass is not None and self.multiclass.labelled:  # one-vs-rest, macro; log loss
                out.update(self.multiclass.realized())
            s = self.sums
            n = s["n_prob"]
            if n:
                out["log_loss"] = (s["ll"] / n, _mean_se(s["ll"], s["ll2"], n), n)
                out["brier"] = (s["br"] / n, _mean_se(s["br"], s["br2"], n), n)
        elif self.sums["n_reg"]:
            out.update(_regression_metrics(self.sums))
        return out

    def per_class(self) -> dict[str, dict[str, float]]:
        """Precision, recall and F1 of each class (one against the rest)."""
        out = {}
        for c in self.classes():
            tp = self.confusion.get((c, c), 0)
            fp = sum(n for (t, p), n in self.confusion.items() if p == c and t != c)
            fn = sum(n for (t, p), n in self.confusion.items() if t == c and p != c)
            out[c] = {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
                      "f1": _ratio(2 * tp, 2 * tp + fp + fn)}
        for c, (auc, _, _) in (self.multiclass.per_class_auc() if self.multiclass is not None else {}).items():
            out.setdefault(c, {})["roc_auc"] = auc
        return out

    def roc_auc(self) -> tuple[float, float, float] | None:
        """(ROC AUC, Hanley–McNeil standard error, bound on the binning error) of a binary classifier, None without
        both classes."""
        return auc_from_bins(self.prob_pos, self.prob_neg)

    def auc_bound(self) -> float:
        """How far the realized ROC AUC (binary, or multiclass macro) may be from the unbinned scores'."""
        auc = self.roc_auc()
        if auc is not None:
            return auc[2]
        return self.multiclass.auc_bound() if self.multiclass is not None else math.nan

    # --- state --------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"predictions": self.predictions, "labeled": self.labeled,
                             "confusion": [[t, p, n] for (t, p), n in sorted(self.confusion.items())],
                             "sums": {k: v for k, v in self.sums.items() if v}, "max_classes": self.max_classes}
        for name, counts in self._bins.items():
            d[name] = bins_to_text(counts)
        for name in ("residuals", "delays"):
            s = getattr(self, "_" + name)
            if s is not None:
                d[name] = base64.b64encode(s.serialize()).decode("ascii")
        if self.multiclass is not None:
            d["multiclass"] = self.multiclass.to_dict()
        if self.segments:
            d["segments"] = {label: prof.to_dict() for label, prof in self.segments.items()}
        if self.evaluations:
            d["evaluations"] = {name: ev.to_dict() for name, ev in self.evaluations.items()}
        if self.wrong:
            d["wrong"] = self.wrong.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PerformanceProfile:
        p = cls(int(d.get("max_classes", 32)))
        p.predictions, p.labeled = int(d["predictions"]), int(d["labeled"])
        p.confusion = Counter({(t, c): int(n) for t, c, n in d.get("confusion", [])})
        p.sums.update({k: float(v) for k, v in d.get("sums", {}).items() if k in p.sums})
        p._bins = {name: bins_from_text(d[name]) for name in HISTOGRAMS if name in d}
        for name in ("residuals", "delays"):
            if name in d:
                setattr(p, "_" + name, ds.kll_doubles_sketch.deserialize(base64.b64decode(d[name])))
        if "multiclass" in d:
            p.multiclass = ClassProbabilities.from_dict(d["multiclass"])
        p.segments = {str(label): cls.from_dict(prof) for label, prof in d.get("segments", {}).items()}
        p.evaluations = {str(name): EvaluationScores.from_dict(ev) for name, ev in d.get("evaluations", {}).items()}
        if d.get("wrong"):
            p.wrong = WrongPredictions.from_dict(d["wrong"])
        return p

    def residual_items(self) -> tuple[np.ndarray, np.ndarray]:
        return kll_items(self._residuals.serialize()) if self._residuals is not None else (np.empty(0), np.empty(0))


def performance_blob(profile: PerformanceProfile) -> bytes:
    """A performance window as stored (sealed JSON: ``performance_window``, ``performance_archive``, changelog)."""
    return seal(json.dumps(profile.to_dict()).encode())


def performance_profile(blob: bytes) -> PerformanceProfile:
    """A stored performance window (``performance_blob``), its seal checked."""
    return PerformanceProfile.from_dict(json.loads(opened(blob, "performance window")))


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _mean_se(total: float, total_sq: float, n: float) -> float:
    if n < 2:
        return math.nan
    mean = total / n
    return math.sqrt(max(total_sq / n - mean * mean, 0.0) * n / (n - 1) / n)


def _confusion_metrics(confusion: Counter[tuple[str, str]], positive: str | None) -> dict[str, tuple[float, float,
                                                                                                    float]]:
    """Accuracy, precision, recall, F1 with delta-method standard errors on the multinomial cell shares."""
    classes = sorted({c for pair in confusion for c in pair})
    index = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    cells = np.zeros((k, k))
    for (t, p), n in confusion.items():
        cells[index[t], index[p]] += n
    n = float(cells.sum())
    binary = positive is not None and positive in index and k <= 2

    def fns(c: np.ndarray) -> dict[str, float]:
        acc = float(np.trace(c) / c.sum())
        if binary:
            i = index[positive]  # type: ignore[index]
            tp, fp, fn = c[i, i], c[:, i].sum() - c[i, i], c[i, :].sum() - c[i, i]
            return {"accuracy": acc, "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
                    "f1": _ratio(2 * tp, 2 * tp + fp + fn)}
        tp = np.diag(c)
        pred, true = c.sum(axis=0), c.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = np.where(pred > 0, tp / pred, 0.0)
            rec = np.where(true > 0, tp / true, 0.0)
            f1 = np.where(pred + true > 0, 2 * tp / (pred + true), 0.0)
        present = true > 0  # macro over the classes that occur (scikit-learn's zero_division=0 for the rest)
        present |= pred > 0
        return {"accuracy": acc, "precision": float(prec[present].mean()), "recall": float(rec[present].mean()),
                "f1": float(f1[present].mean())}

    values = fns(cells)
    shares = cells.ravel() / n
    # Delta method: Var(f(π̂)) ≈ gᵀ (diag(π) − ππᵀ) g / n, g the gradient of f at the observed shares.
    grads = {name: np.zeros(k * k) for name in values}
    h = 1e-6
    for j in np.flatnonzero(shares):
        bumped = shares.copy()
        bumped[j] += h
        moved = fns(bumped.reshape(k, k))
        for name in values:
            grads[name][j] = (moved[name] - values[name]) / h if math.isfinite(moved[name]) else 0.0
    out = {}
    for name, value in values.items():
        g = grads[name]
        var = float(np.sum(shares * g * g) - np.sum(shares * g) ** 2) / n
        out[name] = (float(value), math.sqrt(max(var, 0.0)), n)
    return out


def _regression_metrics(s: dict[str, float]) -> dict[str, tuple[float, float, float]]:
    n = s["n_reg"]
    mae, mse = s["ae"] / n, s["se"] / n
    out = {"mae": (mae, _mean_se(s["ae"], s["se"], n), n),
           # RMSE = sqrt(MSE): delta method, se(MSE) / (2 RMSE)
           "rmse": (math.sqrt(mse), _mean_se(s["se"], s["se2"], n) / (2 * math.sqrt(mse)) if mse else math.nan, n),
           "bias": (s["e"] / n, _mean_se(s["e"], s["se"], n), n)}
    whole = s["n_moments"] == n  # every row's higher moments summed (not a merge with an older window)
    if s["n_ape"]:
        out["mape"] = (s["ape"] / s["n_ape"], _mean_se(s["ape"], s["ape2"], s["n_ape"]) if whole else math.nan,
                       s["n_ape"])
    ss_tot = s["y2"] - s["y"] ** 2 / n
    if ss_tot > 0:
        out["r2"] = (1 - s["se"] / ss_tot, _r2_se(s, n) if whole else math.nan, n)
    return out


def _r2_se(s: dict[str, float], n: float) -> float:
    """Standard error of R² = 1 - E[e²] / Var(y) by the delta method on the sample means of (e², y², y), whose
    covariance comes from the summed products (``e2y``, ``e2y2``, ``y3``, ``y4``)."""
    if n < 3:
        return math.nan
    m1, m2, m3 = s["se"] / n, s["y2"] / n, s["y"] / n
    b = m2 - m3 * m3
    if not b > 0:
        return math.nan
    grad = np.array([-1 / b, m1 / (b * b), -2 * m3 * m1 / (b * b)])
    c11 = s["se2"] / n - m1 * m1
    c22 = s["y4"] / n - m2 * m2
    c33 = m2 - m3 * m3
    c12 = s["e2y2"] / n - m1 * m2
    c13 = s["e2y"] / n - m1 * m3
    c23 = s["y3"] / n - m2 * m3
    cov = np.array([[c11, c12, c13], [c12, c22, c23], [c13, c23, c33]])
    var = float(grad @ cov @ grad) / (n - 1)
    return math.sqrt(var) if var > 0 else math.nan


def isotonic_calibration(p: np.ndarray, y: np.ndarray, max_knots: int = 512) -> tuple[list[float], list[float]]:
    """P(y = 1 | p) as a non-decreasing step map (pool-adjacent-violators on the sorted scores), as knots for
    ``np.interp``: what NannyML's CBPE calibrates with (isotonic regression), small enough for a baseline file.

    >>> x, v = isotonic_calibration(np.array([.1, .2, .3, .4]), np.array([0, 1, 0, 1]))
    >>> [round(t, 2) for t in v]
    [0.0, 0.5, 0.5, 1.0]
    """
    order = np.argsort(p, kind="stable")
    p, y = np.asarray(p, float)[order], np.asarray(y, float)[order]
    # Blocks of equal scores first (ties get one value), then pool adjacent violators.
    xs, inv = np.unique(p, return_inverse=True)
    sums = np.bincount(inv, weights=y)
    counts = np.bincount(inv).astype(float)
    vals: list[float] = []
    wts: list[float] = []
    ends: list[int] = []
    for i in range(len(xs)):
        v, w = sums[i] / counts[i], counts[i]
        while vals and vals[-1] >= v:
            pv, pw = vals.pop(), wts.pop()
            ends.pop()
            v, w = (pv * pw + v * w) / (pw + w), pw + w
        vals.append(v)
        wts.append(w)
        ends.append(i)
    fitted = np.repeat(vals, np.diff([-1, *ends]))
    if len(xs) > max_knots:  # keep the map small: knots at evenly spaced ranks
        keep = np.unique(np.linspace(0, len(xs) - 1, max_knots).round().astype(int))
        xs, fitted = xs[keep], fitted[keep]
    return xs.tolist(), fitted.tolist()


@dataclass
class PerformanceReference:
    """What a baseline knows about performance: its labelled rows' profile, the metric's spread from chunk to
    chunk of the reference, and the calibration map label-free estimates use (binary classifiers)."""

    profile: PerformanceProfile
    chunk_std: dict[str, float] = field(default_factory=dict)
    calibration: tuple[list[float], list[float]] | None = None
    positive_class: str | None = None
    class_calibration: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    """A multiclass model's isotonic map per class (its probability against "the true class is it"): what the
    processor calibrates each prediction's class probabilities with at ingest (``class_probabilities.calibrate``)."""
    loss_models: dict[str, LossModel] = field(default_factory=dict)
    """A regressor's expected-loss models by target (``abs``, ``squared``, ``abs_pct``): its label-free estimates."""

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile.to_dict(), "chunk_std": self.chunk_std,
                **({"calibration": {"x": self.calibration[0], "y": self.calibration[1]}} if self.calibration else {}),
                **({"positive_class": self.positive_class} if self.positive_class else {}),
                **({"class_calibration": {c: {"x": x, "y": y} for c, (x, y) in self.class_calibration.items()}}
                   if self.class_calibration else {}),
                **({"loss_models": {k: m.to_dict() for k, m in self.loss_models.items()}} if self.loss_models else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PerformanceReference:
        cal = d.get("calibration")
        return cls(PerformanceProfile.from_dict(d["profile"]), {k: float(v) for k, v in d.get("chunk_std", {}).items()},
                   (list(cal["x"]), list(cal["y"])) if cal else None, d.get("positive_class"),
                   {str(c): ([float(v) for v in m["x"]], [float(v) for v in m["y"]])
                    for c, m in d.get("class_calibration", {}).items()},
                   {str(k): LossModel.from_dict(m) for k, m in d.get("loss_models", {}).items()})


def outcomes_profile(truth_num: np.ndarray, truth_text: np.ndarray, pred_num: np.ndarray | None,
                     pred_text: np.ndarray | None, prob: np.ndarray | None, positive: str | None,
                     threshold: float = 0.5, max_classes: int = 32,
                     class_prob: tuple[list[str], np.ndarray] | None = None,
                     class_calibration: dict[str, tuple[list[float], list[float]]] | None = None) -> PerformanceProfile:
    """The performance of labelled rows given as columns (a baseline's): classification when the prediction
    or the target is text, or a probability is given; regression otherwise. ``class_prob``: a multiclass
    model's (classes, rows × classes probabilities), calibrated for the estimates with ``class_calibration``."""
    n = len(truth_num)
    prof = PerformanceProfile(max_classes)
    predicted_positive = None
    if prob is not None and positive and (pred_num is not None or pred_text is not None):
        predicted_positive = is_positive(pred_num, pred_text, positive)
    prof.add_predictions(n, prob, predicted_positive)
    has_text = (pred_text is not None and (pred_text != "").any()) or (truth_text != "").any()
    if class_prob is not None:
        predicted_names = class_names(pred_num if pred_num is not None else np.full(n, np.nan),
                                      pred_text if pred_text is not None else np.full(n, ""))
        classes, p = class_prob
        prof.add_class_probabilities(classes, p, calibrate(p, classes, class_calibration or {}), predicted_names)
        truth = class_names(truth_num, truth_text)
        labelled = truth != ""
        prof.add_class_outcomes(classes, p[labelled], truth[labelled])
    if has_text or prob is not None or class_prob is not None:
        truth = class_names(truth_num, truth_text)
        if pred_text is not None or pred_num is not None:
            predicted = class_names(pred_num if pred_num is not None else np.full(n, np.nan),
                                    pred_text if pred_text is not None else np.full(n, ""))
        else:
            predicted = np.full(n, "", dtype=object)
        if prob is not None and positive:
            missing = (predicted == "") & np.isfinite(prob)
            predicted = np.where(missing, np.where(prob >= threshold, positive, negative_of(positive)),
                                 predicted).astype(str)
        ok = (truth != "") & (predicted.astype(str) != "")
        prof.add_classified(truth[ok], predicted[ok].astype(str), prob[ok] if prob is not None else None,
                            positive or "")
    elif pred_num is not None:
        prof.add_regressed(truth_num, pred_num)
    return prof


def reference_performance(truth_num: np.ndarray, truth_text: np.ndarray, pred_num: np.ndarray | None,
                          pred_text: np.ndarray | None, prob: np.ndarray | None, positive: str | None = None,
                          threshold: float = 0.5, chunks: int = 10,
                          class_prob: tuple[list[str], np.ndarray] | None = None,
                          segments: np.ndarray | None = None) -> PerformanceReference:
    """A baseline's ``PerformanceReference``: every labelled row, each metric's spread over ``chunks``
    consecutive parts, and (with probabilities) the isotonic calibration map (a multiclass model's
    ``class_prob``: one per class). ``segments``: each row's segment label (a segmented baseline), whose rows'
    performance each segment is compared with."""
    if positive is None and class_prob is None:
        positive = conventional_positive(np.unique(class_names(truth_num, truth_text)).tolist())
    class_calibration = {}
    if class_prob is not None:
        truth = class_names(truth_num, truth_text)
        for j, c in enumerate(class_prob[0]):
            ok = np.isfinite(class_prob[1][:, j]) & (truth != "")
            class_calibration[c] = isotonic_calibration(class_prob[1][ok, j], (truth[ok] == c).astype(float))
    whole = outcomes_profile(truth_num, truth_text, pred_num, pred_text, prob, positive, threshold,
                             class_prob=class_prob, class_calibration=class_calibration)
    for label in np.unique(segments).tolist() if segments is not None else []:
        rows = segments == label
        whole.segments[str(label)] = outcomes_profile(
            truth_num[rows], truth_text[rows], None if pred_num is None else pred_num[rows],
            None if pred_text is None else pred_text[rows], None if prob is None else prob[rows], positive, threshold,
            class_prob=None if class_prob is None else (class_prob[0], class_prob[1][rows]),
            class_calibration=class_calibration)
    per_chunk: dict[str, list[float]] = {}
    n = len(truth_num)
    for part in np.array_split(np.arange(n), chunks) if chunks > 1 and n >= chunks else []:
        prof = outcomes_profile(truth_num[part], truth_text[part], None if pred_num is None else pred_num[part],
                                None if pred_text is None else pred_text[part], None if prob is None else prob[part],
                                positive, threshold,
                                class_prob=None if class_prob is None else (class_prob[0], class_prob[1][part]),
                                class_calibration=class_calibration)
        for name, (value, _, _) in prof.metrics(positive).items():
            per_chunk.setdefault(name, []).append(value)
    calibration = None
    if prob is not None and positive:
        y = class_names(truth_num, truth_text) == positive
        ok = np.isfinite(prob)
        calibration = isotonic_calibration(prob[ok], y[ok].astype(float))
    return PerformanceReference(whole, {k: float(np.nanstd(v)) for k, v in per_chunk.items() if len(v) > 1},
                                calibration, positive, class_calibration)
