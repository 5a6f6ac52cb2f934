"""Where labels meet predictions: performance windows per (model, version), fed by the pending-prediction join.

Predictions with an id wait in ``PendingPredictions`` (on disk); each window of event time
(``performance.window_seconds``) of a model counts its predictions, their probabilities, and, once labels
arrive, the labelled outcomes (``PerformanceProfile``). A label updates the window of its *prediction's*
event time. Windows older than ``performance.horizon_seconds`` (event time) leave the horizon for the archive
(``archives``, chosen by the state backend at wiring; otel_ml/state/archive.py): a label for a prediction that old
is still matched and counted once, in its window, as a delta merged into the archived window when the next
checkpoint writes it; it no longer moves the current numbers. Without an archive (``state.durable: false``) such a
label is matched and counted but updates no window.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from otel_ml import semconv
from otel_ml.analyze.fairness import favorable_rows
from otel_ml.analyze.performance import PerformanceConfig
from otel_ml.decode.batch import ColumnarBatch, LabelBatch
from otel_ml.decode.ids import number_text
from otel_ml.labels.diagnosis import UnmatchedLabels
from otel_ml.labels.evaluations import EvaluationJoin, horizon_ns
from otel_ml.labels.pending import JoinResult, LabelsConfig, PendingPredictions, seen
from otel_ml.profile.class_probabilities import calibrate, class_columns
from otel_ml.profile.loss_model import LossModel
from otel_ml.profile.performance import (
    OTHER_CLASS,
    PerformanceProfile,
    PerformanceReference,
    class_names,
    conventional_positive,
    is_positive,
    negative_of,
    performance_blob,
    performance_profile,
)
from otel_ml.sealed import Loss

UNMATCHED_REASONS = ("duplicate", "unknown", "expired", "evicted", "lost", "not_sampled", "early_overflow",
                     "too_many_evaluations")
"""Every ``reason`` of ``ml.ground_truth.unmatched``."""


class PerformanceChanges(NamedTuple):
    """What a checkpoint (or a publication) writes of the performance windows."""

    upserts: list[tuple[str, str, int, bytes]]
    """(model, version, start, sealed profile) of live windows changed."""
    deletes: list[tuple[str, str, int]]
    """Live windows gone (archived, or dropped without an archive)."""
    archived: list[tuple[str, str, int, int, bytes]]
    """(model, version, start, end, sealed profile): windows that left, and deltas of archived windows, for the
    archive to merge in (``archive.insert``)."""


class GroundTruth:
    """The join and the performance windows. ``reference_of(model, version)`` is a model's labelled baseline
    (``PerformanceReference``) when it has one: its positive class, and a multiclass model's calibration maps."""

    def __init__(self, directory: str, labels: LabelsConfig, performance: PerformanceConfig,
                 reference_of: Callable[[str, str], PerformanceReference | None] | None = None,
                 max_skew_ns: int = 3600 * 10**9, archives: bool = False,
                 pass_labels: Mapping[str, list[str]] | None = None) -> None:
        self.config = performance
        self.evaluations = EvaluationJoin(horizon_ns(performance), pass_labels or {})
        """LLM calls' evaluation results: what they count in, and each model's reference (its first horizon)."""
        self.pending = PendingPredictions(directory, int(labels.ttl_seconds * 1e9), labels.max_pending,
                                          int(labels.early_ttl_seconds * 1e9), labels.max_early, labels.sample_ratio,
                                          max_skew_ns)
        self.window_ns = int(performance.window_seconds * 1e9)
        self.horizon_ns = horizon_ns(performance)
        self.windows: dict[tuple[str, str], dict[int, PerformanceProfile]] = {}
        self._reference_of = reference_of or (lambda m, v: None)
        self.applied: Counter[tuple[str, str]] = Counter()
        """Labels applied since the last ``take_counts``, per (model, version)."""
        self.unmatched: Counter[tuple[str, str, str]] = Counter()
        """Labels not applied since the last ``take_counts``, per (model, version, reason)."""
        self.withheld_log_loss: Counter[tuple[str, str]] = Counter()
        """Labelled predictions since the last ``take_counts`` whose log loss was withheld: their model gives more
        classes' probabilities than a waiting prediction keeps (labels/segments.py MAX_PROBABILITY_CLASSES)."""
        self.totals: Counter[tuple[str, str, str]] = Counter()
        """Labels ever applied (``"applied"``) or not (by reason), per (model, version): what shared Kafka mode
        publishes with the partition's state, for the exporting replica to total over every partition."""
        self._changed: set[tuple[str, str, int]] = set()
        """Windows changed since the last ``take_changes`` (a checkpoint writes only those)."""
        self._removed: set[tuple[str, str, int]] = set()
        self.archives = archives
        """Whether windows that leave the horizon go to an archive (set by the state backend at wiring): then they
        and later labels for them come out of ``take_changes`` as archive rows."""
        self.archive_keys: list[list] = []
        """Shared Kafka mode: the changelog keys of the archive rows of the last publication (tombstoned by the
        next, once every replica read them; otel_ml/state/partitions.py)."""
        self._leaving: list[tuple[str, str, int, int, bytes]] = []
        """Archive rows not yet taken: windows that left the horizon, as (model, version, start, end, blob)."""
        self.late: dict[tuple[str, str, int], PerformanceProfile] = {}
        """Per archived window, what came for it since the last ``take_changes`` (labels, late predictions): a
        delta the archive merges into the window."""
        self._loss_seen: dict[tuple[str, str, int], int] = {}
        """Predictions per (model, version, window start) whose expected loss was due: the loss models' budget."""
        self._rng = np.random.default_rng()
        self.diagnosis = UnmatchedLabels()
        """Examples and diagnoses of labels that did not join (labels/diagnosis.py)."""

    def _positive_of(self, model: str, version: str) -> str | None:
        ref = self._reference_of(model, version)
        return ref.positive_class if ref is not None else None

    def _edge(self, model: str) -> int:
        """Windows ending at or before this have left the horizon: the window of ``model``'s own clock (event
        time, maybe still filling) and the whole windows before it, ``horizon_seconds`` in all (a horizon of one
        window reads one window, not the filling one and the one before)."""
        newest = self.pending.clock(model) // self.window_ns * self.window_ns
        return newest + self.window_ns - self.horizon_ns

    def _window(self, key: tuple[str, str], start: int) -> PerformanceProfile | None:
        """The profile what comes for window ``start`` of ``key`` counts in: the live window, a delta of an
        archived one (no older than the labels' wait), or None (no archive, or older)."""
        edge = self._edge(key[0])
        if start + self.window_ns <= edge:
            if not self.archives or start + self.window_ns <= edge - self.pending.ttl_ns:
                return None
            late = self.late.get((*key, start))
            if late is None:
                late = self.late[(*key, start)] = PerformanceProfile(self.config.max_classes)
            return late
        windows = self.windows.setdefault(key, {})
        prof = windows.get(start)
        if prof is None:
            prof = windows[start] = PerformanceProfile(self.config.max_classes)
        self._changed.add((*key, start))  # every caller updates it
        return prof

    # --- predictions ----------------------------------------------------------------------------------------
    def on_predictions(self, batch: ColumnarBatch) -> None:
        """Count a batch's predictions and keep those with an id; labels that were waiting for them apply now."""
        self.count_predictions(batch)
        self.join_predictions(batch)

    def counts_rows_of(self, batch: ColumnarBatch) -> bool:
        """Whether a batch's rows count in performance at all (an id to join, a probability, fairness, or the
        estimates its model's baseline makes): only then does labelling them with their segment pay (LiveModels)."""
        ref = self._reference_of(*batch.key)
        return bool(len(batch.prediction_id) or semconv.PREDICTION_PROBABILITY_FEATURE in batch.numeric or batch.model
                    in self.config.fairness or (ref is not None and (ref.class_calibration or ref.loss_models)))

    def count_predictions(self, batch: ColumnarBatch) -> None:
        """Count a batch's predictions into the performance windows of their event time (how many carry an id:
        the coverage; their probabilities: the label-free estimates)."""
        prob = batch.numeric.get(semconv.PREDICTION_PROBABILITY_FEATURE)
        ids = batch.prediction_id
        ref = self._reference_of(*batch.key)
        by_class = calibrated_classes(batch, ref)
        losses = ref.loss_models if ref is not None and semconv.PREDICTION_FEATURE in batch.numeric else None
        pred = batch.numeric.get(semconv.PREDICTION_FEATURE)
        text = batch.categorical.get(semconv.PREDICTION_FEATURE)
        favorable = favorable_rows(self.config.fairness.get(batch.model), pred, text)
        if not len(ids) and prob is None and by_class is None and not losses and favorable is None:
            return
        if not len(ids):
            ids = np.zeros(batch.n_rows, np.uint64)
        kept = self.pending.keep(ids)
        self.pending.observe(batch.model, int(batch.row_time_ns.max()))
        said_positive = None  # which rows predicted the positive class: what the estimates count as such
        if prob is not None and (pred is not None or text is not None):
            positive = self.config.positive_class or self._positive_of(*batch.key) or conventional_positive(
                np.unique(text).astype(str) if text is not None else np.array(["1"] if pred is not None else []))
            if positive:
                said_positive = is_positive(pred, text, positive)
        starts = batch.row_time_ns // self.window_ns * self.window_ns
        if losses:
            self._count_expected_losses(batch, starts, losses)
        segments = batch.categorical.get(semconv.SEGMENT_COLUMN)
        for start in np.unique(starts).tolist():
            window = self._window(batch.key, start)
            if window is None:
                continue
            in_window = starts == start
            for prof, rows in profiles_of(window, in_window, segments):
                prof.add_predictions(int((kept & rows).sum()), prob[rows] if prob is not None else None,
                                     said_positive[rows] if said_positive is not None else None)
                if favorable is not None:
                    prof.add_selections(int(np.isfinite(favorable[rows]).sum()), int((favorable[rows] == 1).sum()))
                if by_class is not None:
                    classes, p, q, predicted = by_class
                    prof.add_class_probabilities(classes, p[rows], q[rows], predicted[rows])

    def _count_expected_losses(self, batch: ColumnarBatch, starts: np.ndarray, models: dict[str, LossModel]) -> None:
        """A regressor's expected losses into the windows of its predictions' times: every prediction while a window
        has seen fewer than ``loss_rows_per_window``, then a ``loss_sample_ratio`` random share, each weighted by
        the inverse (unbiased)."""
        budget, ratio = self.config.loss_rows_per_window, self.config.loss_sample_ratio
        keep = np.ones(batch.n_rows, bool)
        weight = np.ones(batch.n_rows)
        windows = []
        edge = self._edge(batch.model)
        for start in np.unique(starts).tolist():
            rows = starts == start
            if start + self.window_ns <= edge:  # past the horizon: not counted at all
                keep[rows] = False
                continue
            seen = self._loss_seen.get((*batch.key, start), 0)
            self._loss_seen[(*batch.key, start)] = seen + int(rows.sum())
            if seen >= budget and ratio < 1:
                keep[rows] = self._rng.random(int(rows.sum())) < ratio
                weight[rows] = 1 / ratio
            windows.append((start, rows))
        kept = np.flatnonzero(keep)
        if not len(kept):
            return
        model = next(iter(models.values()))  # every model of a baseline reads the same columns
        numeric = {k: batch.numeric[k][kept] for k in model.columns if k in batch.numeric}
        categorical = {k: batch.categorical[k][kept] for k in model.categorical_inputs if k in batch.categorical}
        x = model.matrix(numeric, categorical, len(kept))
        expected = {target: m.predict(x) for target, m in models.items()}
        segments = batch.categorical.get(semconv.SEGMENT_COLUMN)
        for start, rows in windows:
            window = self._window(batch.key, start)
            in_window = rows[keep]
            if window is None or not in_window.any():
                continue
            for prof, sel in profiles_of(window, in_window, segments[kept] if segments is not None else None):
                prof.add_expected_losses({k: v[sel] for k, v in expected.items()}, weight[keep][sel])

    def join_predictions(self, batch: ColumnarBatch) -> None:
        """Keep a batch's predictions that carry an id until their label comes; labels that were waiting for them
        apply now. (Shared Kafka mode routes these rows to the partition their id hashes to: ``join_rows``.)"""
        ids = batch.prediction_id
        if not len(ids):
            return
        kept = self.pending.keep(ids)
        if not kept.any():
            return
        self.pending.observe(batch.model, int(batch.row_time_ns.max()))
        pred = batch.numeric.get(semconv.PREDICTION_FEATURE)
        text = batch.categorical.get(semconv.PREDICTION_FEATURE)
        prob = batch.numeric.get(semconv.PREDICTION_PROBABILITY_FEATURE)
        n = batch.n_rows
        cls = np.full(n, -1, np.int32)
        if text is not None:
            has = text != ""
            if has.any():
                cls[has] = self.pending.codes.classes_of(text[has])
        self.pending.add(batch.model, batch.version, ids, batch.row_time_ns,
                         pred if pred is not None else np.full(n, np.nan), cls,
                         prob if prob is not None else np.full(n, np.nan), class_columns(batch.numeric),
                         batch.categorical.get(semconv.SEGMENT_COLUMN), batch.row_span_ids())
        self.diagnosis.on_predictions(batch.model, batch.version, ids[kept])
        for due in self.pending.take_early(ids[kept]):
            self.diagnosis.joined_late(due.model, due.prediction_id)
            self._count(due, self.pending.join(due, early=False, mark=due.model != semconv.GENAI_EVALUATIONS))

    # --- labels -----------------------------------------------------------------------------------------------
    def on_labels(self, labels: LabelBatch) -> None:
        if labels.n_rows:
            self.pending.observe(labels.model, int(labels.time_ns.max()))
        self._count(labels, self.pending.join(labels, mark=labels.model != semconv.GENAI_EVALUATIONS))

    def _count(self, labels: LabelBatch, result: JoinResult) -> None:
        for reason, n in result.unmatched.items():
            self.unmatched[(labels.model, labels.version, reason)] += n
            self.totals[(labels.model, labels.version, reason)] += n
        self._diagnose(labels, result)
        for lb, m in result.matched:
            self._apply(lb, m.label_index, m.rows)

    def _diagnose(self, labels: LabelBatch, result: JoinResult) -> None:
        """Examples of the labels that did not join; for those that wait, whether they can join at all. Only the
        first labels of a batch carry their id as sent (``LabelBatch.id_text``): examples come from those."""
        model, version, text = labels.model, labels.version, labels.id_text
        known = len(text) if text is not None else 0
        for reason, at in result.unmatched_at.items():
            self.diagnosis.record(model, version, reason, text[at[at < known][:5]] if text is not None else None)
        waiting = result.waiting_at
        if not len(waiting) or model == semconv.GENAI_EVALUATIONS:  # results: no model of their own to diagnose
            return
        sampled = waiting[waiting < known]
        self.diagnosis.hold(model, labels.prediction_id[sampled], text[sampled] if text is not None else None)
        versions = self.pending.with_ids.get(model, set())
        if not versions or (version and version not in versions):
            self.diagnosis.no_predictions(model, version, sorted(versions))
        elif text is not None and len(sampled):
            self.diagnosis.diagnose_ids(model, version, text[sampled], functools.partial(seen, self.pending))

    def _apply(self, labels: LabelBatch, index: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        if labels.model == semconv.GENAI_EVALUATIONS:  # LLM calls' evaluation results (labels/evaluations.py)
            key, over = (labels.model, labels.version), self.evaluations.apply(
                labels, index, rows, self.pending.codes.keys, self._window, self.window_ns, self.pending.clock)
            self.applied[key] += len(index) - over
            self.totals.update({(*key, "applied"): len(index) - over, (*key, "too_many_evaluations"): over})
            if over:  # results of a name beyond MAX_EVALUATIONS in their window
                self.unmatched[(*key, "too_many_evaluations")] += over
            return
        value, text = labels.value[index], labels.label[index]
        delays = (labels.time_ns[index] - rows["time"]) / 1e9
        starts = rows["time"] // self.window_ns * self.window_ns
        for code in np.unique(rows["key"]).tolist():
            model, version, segment = self.pending.codes.keys[code]
            of_key = rows["key"] == code
            self.applied[(model, version)] += int(of_key.sum())
            self.totals[(model, version, "applied")] += int(of_key.sum())
            positive = self.config.positive_class or self._positive_of(model, version)
            cls, pred, prob = rows["cls"], rows["pred"], rows["prob"].astype(np.float64)
            classified = (cls != -1) | np.isfinite(prob) | (text != "") | (model in self.config.fairness)
            model_code = self.pending.codes.model_key(code)
            by_class = self.pending.codes.prob_classes.get(model_code)
            complete = model_code not in self.pending.codes.truncated
            for start in np.unique(starts[of_key]).tolist():
                window = self._window((model, version), start)
                if window is None:
                    continue
                sel = of_key & (starts == start)
                for prof in (window, window.segment(segment)) if segment else (window,):
                    c = sel & classified
                    if c.any():
                        truth = class_names(value[c], text[c])
                        names = predicted_classes(self.pending.codes.classes, self.config.threshold, cls[c], pred[c],
                                                  prob[c], positive)
                        pos = positive or conventional_positive(np.unique(np.concatenate([truth, names])).tolist())
                        prof.add_classified(truth, names, prob[c] if pos else None, pos or "", delays[c])
                        if prof is window:
                            wrong = (truth != names) & (names != "")
                            self._offer_wrong(prof, rows, np.flatnonzero(c)[wrong], names[wrong], truth[wrong])
                        if by_class and "probs" in rows:  # a multiclass model's probabilities: realized AUC, log loss
                            # Rows written before a class was first seen are narrower: its column is missing (NaN).
                            probs = rows["probs"][c, :len(by_class)].astype(np.float64)
                            prof.add_class_outcomes(by_class[:probs.shape[1]], probs, truth, complete)
                            if not complete and prof is window:
                                self.withheld_log_loss[(model, version)] += int(c.sum())
                    r = sel & ~classified
                    if r.any():
                        prof.add_regressed(value[r], pred[r], delays[r])
                        if prof is window:
                            self._offer_wrong(prof, rows, np.flatnonzero(r), pred[r], value[r], regressed=True)

    def _offer_wrong(self, window: PerformanceProfile, rows: dict[str, np.ndarray], at: np.ndarray,
                     predicted: np.ndarray, truth: np.ndarray, regressed: bool = False) -> None:
        """Rows ``at`` of the matched ``rows`` were wrong (``regressed``: a regressor's, ``predicted`` and ``truth``
        numbers): those whose span is kept (labels/spans.py) are offered as the window's examples
        (profile/wrong_predictions.py). Only those are formatted: most rows have no span kept."""
        found, spans = self.pending.spans.of(rows["id"][at])
        if not found.any():
            return
        predicted, truth = predicted[found], truth[found]
        if regressed:
            error, predicted, truth = predicted - truth, number_text(predicted), number_text(truth)
        else:
            error = np.full(len(predicted), np.nan)
        window.wrong.add(rows["time"][at][found], spans[found], predicted, truth, error)

    # --- reading, time, state -----------------------------------------------------------------------------
    def current(self, model: str, version: str) -> PerformanceProfile | None:
        """The horizon's performance: its windows merged."""
        windows = self.windows.get((model, version))
        if not windows:
            return None
        out = PerformanceProfile(self.config.max_classes)
        edge = self._edge(model)
        for start, prof in windows.items():
            if start + self.window_ns > edge:
                out.merge(prof)
        return out

    def advance(self) -> None:
        """Move windows past the horizon out (to the archive, when there is one); drop early labels past their
        wait (counted ``unknown``)."""
        for key in list(self.windows):
            windows = self.windows[key]
            edge = self._edge(key[0])
            for start in [s for s in windows if s + self.window_ns <= edge]:
                self._leave(key, start)
            if not windows:
                del self.windows[key]
        for lb in self.pending.expire_early():
            self.unmatched[(lb.model, lb.version, "unknown")] += lb.n_rows
            self.totals[(lb.model, lb.version, "unknown")] += lb.n_rows
            self.diagnosis.left_unknown(lb.model, lb.version, lb.prediction_id)

    def _leave(self, key: tuple[str, str], start: int) -> None:
        """Window ``start`` of ``key`` leaves memory: deleted from the live windows' table, kept in the archive."""
        prof = self.windows[key].pop(start)
        self._loss_seen.pop((*key, start), None)
        self._changed.discard((*key, start))
        self._removed.add((*key, start))
        if self.archives:
            self._leaving.append((*key, start, start + self.window_ns, performance_blob(prof)))

    def forget(self, model: str, version: str) -> None:
        """Archive a released model's windows (its waiting predictions stay: a later label still joins, and starts
        its windows again)."""
        key = (model, version)
        for start in list(self.windows.get(key, {})):
            self._leave(key, start)
        self.windows.pop(key, None)

    def take_counts(self) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str, str]]]:
        applied, unmatched = self.applied, self.unmatched
        self.applied, self.unmatched = Counter(), Counter()
        return applied, unmatched

    def state(self) -> dict:
        """The pending store's part of a checkpoint (its files written) and the evaluation references; windows go
        by ``take_changes``."""
        return {"pending": self.pending.state(), **self.evaluations.state(self.pending.clock)}

    def take_changes(self) -> PerformanceChanges:
        """What to write since the last call: live windows changed and gone, and archive rows (windows that left,
        deltas of archived ones), each sealed (otel_ml/sealed.py); ``give_back`` them if not written."""
        upserts = [(m, v, s, performance_blob(self.windows[(m, v)][s]))
                   for m, v, s in self._changed if s in self.windows.get((m, v), {})]
        archived = self._leaving + [(m, v, s, s + self.window_ns, performance_blob(p))
                                    for (m, v, s), p in self.late.items()]
        changes = PerformanceChanges(upserts, list(self._removed), archived)
        self._changed, self._removed, self._leaving, self.late = set(), set(), [], {}
        return changes

    def windows_of(self, model: str, version: str) -> list[tuple[int, int, PerformanceProfile]]:
        """(start, end, profile), copied, of what the archive does not hold yet: the live windows, windows that left
        the horizon and deltas of archived windows since the last ``take_changes``; with the archive's rows, every
        prediction of the model once (what a range read merges)."""
        key = (model, version)
        out = [(s, s + self.window_ns, p.copy()) for s, p in self.windows.get(key, {}).items()]
        out += [(s, e, performance_profile(blob)) for m, v, s, e, blob in self._leaving if (m, v) == key]
        out += [(s, s + self.window_ns, p.copy()) for (m, v, s), p in self.late.items() if (m, v) == key]
        return out

    def give_back(self, changes: PerformanceChanges) -> None:
        self._changed |= {(m, v, s) for m, v, s, _ in changes.upserts}
        self._removed |= set(changes.deletes)
        self._leaving[:0] = changes.archived

    def restore(self, state: dict, windows: Iterable[tuple[str, str, int, bytes]] = (),
                quarantine_dir: Path | None = None) -> list[Loss]:
        """Restore a checkpoint's part; returns what could not be used (damaged files, damaged windows)."""
        losses = self.pending.restore(state.get("pending", {}), quarantine_dir)
        self.evaluations.restore(state)
        self.windows = {}
        for m, v, start, blob in windows:
            try:
                profile = performance_profile(blob)
            except (ValueError, KeyError, TypeError) as e:
                losses.append(Loss("performance_window", f"{m}/{v}@{start}", 0, f"performance window of model {m!r} "
                                   f"version {v!r} starting {start}: {e}; its labelled outcomes are lost"))
                continue
            self.windows.setdefault((m, v), {})[int(start)] = profile
        return losses

    def waiting(self) -> dict[str, tuple[int, int]]:
        """Rows and bytes waiting (predictions for labels, labels for predictions): the gauges'."""
        return self.pending.waiting()


def profiles_of(window: PerformanceProfile, rows: np.ndarray, segments: np.ndarray | None
                ) -> Iterable[tuple[PerformanceProfile, np.ndarray]]:
    """The profiles ``rows`` of a window count in: the window's, and (a segmented model, ``segments`` each
    row's label) each of their segments' with its rows."""
    yield window, rows
    if segments is not None:
        for label in np.unique(segments[rows]).tolist():
            yield window.segment(str(label)), rows & (segments == label)


def calibrated_classes(batch: ColumnarBatch, ref: PerformanceReference | None
                       ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None:
    """A multiclass batch's classes, probabilities, calibrated probabilities and predicted classes, when its
    model's labelled baseline ``ref`` has the calibration maps the estimates need (else None)."""
    if ref is None or not ref.class_calibration:
        return None
    found = class_columns(batch.numeric)
    if found is None:
        return None
    classes, p = found
    pred = batch.numeric.get(semconv.PREDICTION_FEATURE)
    text = batch.categorical.get(semconv.PREDICTION_FEATURE)
    predicted = class_names(pred if pred is not None else np.full(batch.n_rows, np.nan),
                            text if text is not None else np.full(batch.n_rows, ""))
    return classes, p, calibrate(p, classes, ref.class_calibration), predicted


def predicted_classes(classes: list[str], threshold: float, cls: np.ndarray, pred: np.ndarray, prob: np.ndarray,
                      positive: str | None) -> np.ndarray:
    """The predicted class of each matched row: its class code, else its numeric prediction, else (only a
    probability) the side of the threshold it is on; "" when none is known."""
    out = np.full(len(cls), "", dtype=object)
    coded = cls >= 0
    out[coded] = np.asarray(classes, dtype=object)[cls[coded]]
    out[cls == -2] = OTHER_CLASS
    numeric = (cls == -1) & np.isfinite(pred)
    out[numeric] = number_text(pred[numeric])
    if positive:
        thresholded = (cls == -1) & ~np.isfinite(pred) & np.isfinite(prob)
        out[thresholded] = np.where(prob[thresholded] >= threshold, positive, negative_of(positive))
    return out.astype(str)
