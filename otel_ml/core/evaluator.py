"""Where scores are computed, every interval: each evaluated window set's horizon against its reference (drift,
data quality), and each model's labels and probabilities (performance), into one immutable ``Snapshot``."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from types import MappingProxyType

import numpy as np

from otel_ml import semconv as sc
from otel_ml.analyze.drift import DriftConfig, ModelReport, compare
from otel_ml.analyze.performance import (
    PerformanceConfig,
    PerformanceReport,
    assess_all,
    loss_inputs_unsupported,
    performance_alpha,
    withhold_outside_support,
)
from otel_ml.analyze.versions import VersionComparison, compare_versions, live_pairs
from otel_ml.core.live import Key, LiveModels
from otel_ml.core.memory import return_free_memory
from otel_ml.core.snapshot import Snapshot
from otel_ml.profile.evaluations import EvaluationScores
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.performance import PerformanceProfile
from otel_ml.profile.sketch import NUMERIC

log = logging.getLogger(__name__)


class Evaluator:
    """Evaluates every ``interval`` seconds (and when woken: a rebalance, a reload) in its own thread; readers take
    ``snapshot``, and ``subscribe``d callables (the exporter rendering its series, the pages' score history) get
    each new one.

    >>> from otel_ml.core.counters import Counters
    >>> from otel_ml.core.live import LiveConfig, OwnViews
    >>> from otel_ml.core.references import ReferenceStore
    >>> live = LiveModels(LiveConfig(), ReferenceStore(None, "/tmp/otel-ml-doctest"), Counters(), OwnViews())
    >>> Evaluator(live, DriftConfig(), PerformanceConfig()).evaluate().reports
    ()
    """

    def __init__(self, live: LiveModels, drift: DriftConfig, performance: PerformanceConfig,
                 interval_seconds: float = 10.0, before: Callable[[], None] | None = None) -> None:
        self.live = live
        self.drift = drift
        self.performance = performance
        self.interval = interval_seconds
        self._before = before
        """Run before each evaluation (the wiring's periodic chores: baselines reloaded, control requests)."""
        self.snapshot = Snapshot()
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._reload = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending_logged: set[Key] = set()
        self._mismatch_logged: set[tuple[Key, str | None]] = set()
        self._codes_logged: set[Key] = set()

    def subscribe(self, fn: Callable[[Snapshot], None]) -> None:
        self._subscribers.append(fn)

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otel-ml-evaluate", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        """Evaluate now (a rebalance moved models here or away: their series move at once)."""
        self._wake.set()

    def request_reload(self) -> None:
        """Read the baseline directory again before the next evaluation, changed or not (SIGHUP)."""
        self._reload.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                started = time.perf_counter()
                if self._before is not None:
                    self._before()
                force = self._reload.is_set()
                self._reload.clear()
                with self.live.lock:
                    self.live.reload_references(force)
                snapshot = self.evaluate()
                log.debug("evaluated %d model(s) in %.3fs", len(snapshot.reports), time.perf_counter() - started)
            except Exception:
                log.exception("evaluation failed")
            return_free_memory()  # an evaluation's merges and reports are garbage now: give the heap back

    # --- one evaluation ----------------------------------------------------------------------------------
    def evaluate(self) -> Snapshot:
        """Evaluate now, publish the snapshot to every subscriber, and return it."""
        with self.live.lock:
            views = self.live.views()
        taken = []
        for key in sorted(views):
            # One model at a time: merging a horizon takes milliseconds, and ingest must not wait for all. In
            # shared mode reading ``views[key]`` builds the model's merge, dropped once its horizon is taken.
            with self.live.lock:
                wp = views[key]
                taken.append((key, wp.reference, wp.reference_source, wp.current(), wp.reference_pending(),
                              wp.last_received_ns or wp.newest_event_ns or 0, len(wp.unprofiled)))
        reports: list[ModelReport] = []
        profiles: dict[Key, tuple[ModelProfile | None, ModelProfile]] = {}
        for key, reference, source, current, pending, last_data_ns, unprofiled in taken:
            report = dataclasses.replace(compare(reference, current, self.drift, source), last_data_ns=last_data_ns,
                                         unprofiled_features=unprofiled)
            if pending is not None:
                report = dataclasses.replace(report, reference_pending_rows=pending[0])
                if key not in self._pending_logged:
                    self._pending_logged.add(key)
                    log.info("model %r version %r: no drift decisions until a reference is pinned from live traffic "
                             "(%d more rows and %.0f s more of event time, or a baseline file); data quality is "
                             "reported meanwhile", key[0], key[1], pending[0], pending[1])
            elif reference is not None and current.rows and (key, source) not in self._mismatch_logged:
                self._log_mismatch(key, source, report)
            if key not in self._codes_logged and current.rows >= 100:
                self._codes_logged.add(key)
                _log_integer_codes(key, current)
            reports.append(report)
            profiles[key] = (reference, current)
            for f in report.features:  # an event counted, for the exemplar that points at its spans (export/)
                if f.overall.detected:
                    self.live.counters.count(sc.METRIC_DRIFT_DETECTIONS, 1, {
                        sc.ATTR_MODEL_NAME: key[0], sc.ATTR_MODEL_VERSION: key[1], sc.ATTR_FEATURE_NAME: f.feature})
        with self.live.lock:
            waiting = tuple(k for k in self.live.references.baselines if k not in views)
            live_models = len(views)
            labels_waiting = self._labels_waiting()
        pinned: dict[Key, dict[str, EvaluationScores]] = {}  # filled by _performance
        performance = tuple(self._performance(set(views), {(r.model, r.version): r for r in reports}, pinned))
        versions = tuple(self.versions(profiles, performance))
        with self.live.lock:
            labels = self.live.label_status()
        snapshot = Snapshot(reports=tuple(reports), performance=performance,
                            profiles=MappingProxyType(profiles), live_models=live_models, waiting_baselines=waiting,
                            waiting=MappingProxyType(labels_waiting), labels=MappingProxyType(labels),
                            evaluation_references=MappingProxyType(pinned), versions=versions)
        self.snapshot = snapshot
        for fn in self._subscribers:
            try:
                fn(snapshot)
            except Exception:  # one reader's bug must not stop the others or the next evaluation
                log.exception("a snapshot reader failed")
        return snapshot

    def versions(self, profiles: dict[Key, tuple[ModelProfile | None, ModelProfile]],
                 performance: tuple[PerformanceReport, ...]) -> list[VersionComparison]:
        """Each model's candidate versions against its busiest one (``live_pairs``), over the horizon."""
        perf = {(r.model, r.version): r for r in performance}
        alpha = performance_alpha(self.drift, self.performance)
        return [compare_versions(profiles[(m, a)][1], profiles[(m, b)][1], perf.get((m, a)), perf.get((m, b)),
                                 self.drift, alpha, self.performance.min_labels)
                for m, a, b in live_pairs((k[0], k[1], current.rows) for k, (_, current) in profiles.items())]

    def _log_mismatch(self, key: Key, source: str | None, report: ModelReport) -> None:
        """One line per model and reference naming the features only one side has (a dropped or renamed column
        reads as data quality on one feature among hundreds otherwise)."""
        self._mismatch_logged.add((key, source))
        absent = [f.feature for f in report.features if f.withheld_reason == "absent_from_current"]
        extra = [f.feature for f in report.features if f.withheld_reason == "not_in_reference"]
        if absent or extra:
            log.warning("model %r version %r: the %s reference and live traffic disagree on features: %s%s%s",
                        key[0], key[1], source, f"absent from traffic: {_names(absent)}" if absent else "",
                        "; " if absent and extra else "", f"not in the reference: {_names(extra)}" if extra else "")

    def _labels_waiting(self) -> dict[str, tuple[int, int, int]]:
        """Rows and bytes waiting to be joined, and their limit, over every partition held (call under the lock)."""
        out: dict[str, tuple[int, int, int]] = {}
        for state in self.live.parts.values():
            if state.labels is None:
                continue
            limits = {"predictions": state.labels.pending.max_pending, "labels": state.labels.pending.max_early}
            for kind, (rows, size) in state.labels.waiting().items():
                r, b, _ = out.get(kind, (0, 0, 0))
                out[kind] = (r + rows, b + size, limits[kind])
        return out

    def _performance(self, evaluated: set[Key], drift: dict[Key, ModelReport], pinned: dict[Key, dict]
                     ) -> list[PerformanceReport]:
        """Realized and estimated performance of every evaluated model with labels, probabilities or a labelled
        baseline: each partition's performance windows of the model merged. A regressor's label-free estimates
        (DLE) carry the share of its rows outside the reference's support, from the drift report's data quality."""
        cfg = self.performance
        with self.live.lock:
            currents: dict[Key, PerformanceProfile] = {}
            for state in self.live.parts.values():
                if state.labels is None:
                    continue
                state.labels.advance()
                for key in state.labels.windows:
                    if not self.live.views_policy.exports(key[0]):
                        continue  # shared mode: another replica reports it
                    part = state.labels.current(*key)
                    if part is not None:
                        currents.setdefault(key, PerformanceProfile(cfg.max_classes)).merge(part)
                for key in state.labels.evaluations.references:  # shared mode: each partition's share of it
                    ref = state.labels.evaluations.reference(*key, state.labels.pending.clock(key[0]))
                    if ref is not None and self.live.views_policy.exports(key[0]):
                        merged = pinned.setdefault(key, {})
                        for name, scores in ref.items():
                            merged.setdefault(name, EvaluationScores()).merge(scores)
            self.live.count_labels()
            references = {}
            # Not a model released since it was evaluated: find() would read its pinned reference back into
            # memory, where nothing forgets it again (tests/e2e/test_model_churn.py saw 5 of 4 held).
            for key in (evaluated & self.live.model_keys()) | set(currents):
                found = self.live.references.find(*key)
                if found is not None and found[0].performance is not None:
                    references[key] = found[0].performance
        out = []
        for key in sorted(set(currents) | set(references)):
            report = assess_all(*key, currents.get(key), references.get(key), self.drift, cfg, pinned.get(key))
            ref = references.get(key)
            if ref is not None and ref.loss_models and report.estimated and key in drift:
                withhold_outside_support(report, loss_inputs_unsupported(drift[key], ref), cfg.max_unsupported_share)
            out.append(report)
        return out


def _names(names: list[str], shown: int = 20) -> str:
    """``names`` for a log line: the first ``shown`` and how many more."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _log_integer_codes(key: Key, current: ModelProfile, most: int = 5) -> None:
    """One line for the numeric features of a model that hold only a few whole numbers (a 0/1 prediction, class
    codes): they are compared as numbers (KS, Wasserstein), which is seldom what a class is; the line says how to
    have them compared as categories. The rule: at least 100 values, at most ``most`` distinct, all whole."""
    codes = []
    for name, profile in current.features.items():
        if profile.kind != NUMERIC or profile.count < 100 or profile.max - profile.min > 1000:
            continue
        if name.startswith("gen_ai."):  # an LLM call's counts and parameters (max_tokens): numbers, not classes
            continue
        values = np.unique(profile.weighted_items()[0])
        if len(values) <= most and np.all(values == np.floor(values)):
            codes.append(f"{name} ({', '.join(f'{v:g}' for v in values)})")
    if codes:
        log.warning("model %r version %r: numeric feature(s) holding only a few whole numbers: %s. They are compared "
                    "as numbers (KS, Wasserstein); to compare classes as categories (chi-squared), send them as "
                    "strings (a classifier's labels: ml.prediction as text), or build the baseline with "
                    "--categorical NAME", key[0], key[1], "; ".join(codes[:20]))
