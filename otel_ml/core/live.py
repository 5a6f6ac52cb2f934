"""Where windows live: per partition, the window set of each live (model, version), its reference, its lifecycle.

A partition is a share of the input that is always applied in order, and whose state is always the result of a
*prefix* of it: a single processor has one (partition 0, everything it receives); in shared Kafka mode there is
one per partition of the input topic (otel_ml/state/shared.py). Prefix states of different partitions merge
without counting a row twice, because every row is in exactly one partition. Which window sets are evaluated and
exported is the ``Views`` chosen at wiring: a single processor evaluates its own sets (``OwnViews``); shared
replicas evaluate, for the models whose exporting partition they own, the merge of every partition's set
(``MergedViews``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from otel_ml import semconv as sc
from otel_ml.core.counters import Counters
from otel_ml.core.label_report import LabelWarnings, label_status
from otel_ml.core.references import ReferenceStore
from otel_ml.decode.batch import ColumnarBatch, DecodeResult, LabelBatch
from otel_ml.labels.ground_truth import UNMATCHED_REASONS, GroundTruth
from otel_ml.profile.lifecycle import ModelLifecycle, ModelsConfig
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.performance import PerformanceProfile, PerformanceReference
from otel_ml.profile.segments import SegmentCounts
from otel_ml.profile.sketch import SketchConfig
from otel_ml.profile.window import WindowChanges, WindowConfig, WindowedProfile

log = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass(frozen=True)
class LiveConfig:
    """What the live window sets are made with (from ``windows``, ``sketch``, ``models``, ``limits`` and
    ``drift.learned_thresholds`` of the processor's config)."""

    windows: WindowConfig = field(default_factory=WindowConfig)
    sketch: SketchConfig = field(default_factory=SketchConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    max_features: int = 1_000
    reference_chunks: int = 0
    keep_evicted: bool = False
    """Windows that leave memory are kept until a checkpoint archives them (an archive is written)."""
    correlation_features: int = 10
    """``drift.correlation_features``: numeric features whose pairwise moments windows keep."""
    segment_by: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """``segments.by``: model → the features whose values segment it."""
    max_segments: int = 20
    segment_bins: dict[str, list[float]] = field(default_factory=dict)
    """``segments.bins``: a numeric segment key → the edges of its intervals."""


@dataclass
class PartitionState:
    """One partition's window sets, as of ``offset`` (the newest input message applied; -1: none or not Kafka)."""

    lifecycle: ModelLifecycle
    labels: GroundTruth | None = None
    """Predictions waiting for labels and performance windows (None: this partition joins no labels)."""
    offset: int = -1
    caught_up: bool = False
    """Everything written to the partition had been read (when ``offset`` was): it holds no older data back."""
    clock_ns: int | None = None
    """Shared Kafka mode, a partition held for a few models only: the newest event of all of it (its publication
    says), for the topic's watermark."""
    models: dict[Key, WindowedProfile] = field(default_factory=dict)
    released: list[WindowChanges] = field(default_factory=list)
    """The last changes of window sets released since the state backend last wrote this partition."""
    archived: list[list] = field(default_factory=list)
    """Shared Kafka mode: the archive records of the last publication (tombstoned by the next one)."""
    unarchived: list[tuple[list, bytes | None]] = field(default_factory=list)
    """Shared Kafka mode: archived windows a failed publication held (sent with the next one)."""
    outbox: dict[int, DecodeResult] = field(default_factory=dict)
    """Shared Kafka mode: prediction rows and labels whose ids hash to another partition, per destination, to be
    sent there (with this partition's next publication: exactly once)."""


class Views(Protocol):
    """Which window sets are evaluated, chosen at wiring (``OwnViews``, ``MergedViews``)."""

    partial: bool
    """True when a partition's window set is only a share of its model's rows: it pins no reference, and
    ``ml.predictions`` is totalled over every partition when views are built, not counted as rows arrive."""

    def exports(self, model: str) -> bool:
        """Whether this processor evaluates and exports ``model`` (its performance too)."""
        ...

    def build(self, live: LiveModels) -> Mapping[Key, WindowedProfile]:
        """The window sets to evaluate now, per (model, version); read each under ``live.lock``."""
        ...


class LiveModels:
    """Every partition's window sets; ``apply`` is the one way rows get in (call it under ``lock``).

    >>> import numpy as np, threading
    >>> from otel_ml.decode.batch import ColumnarBatch
    >>> cfg = LiveConfig(windows=WindowConfig(window_seconds=1, horizon_seconds=2, allowed_lateness_seconds=0,
    ...                                       reference_min_rows=2))
    >>> live = LiveModels(cfg, ReferenceStore(None, "/tmp/otel-ml-doctest"), Counters(), OwnViews())
    >>> def rows(t):
    ...     return ColumnarBatch("m", "1", 1, np.array([t * 10**9]), np.ones(1), numeric={"x": np.array([1.0 * t])},
    ...                          span_end_ns=np.array([t * 10**9]), span_duration_s=np.array([0.01]),
    ...                          span_error=np.array([False]))
    >>> with live.lock:
    ...     for t in range(5):
    ...         live.apply(DecodeResult([rows(t)], spans_received=1, spans_accepted=1))
    >>> view = live.views()["m", "1"]
    >>> view.reference_source, view.current().rows, live.counters.series("ml.predictions")[0][1]
    ('pinned', 2, 5.0)
    """

    def __init__(self, config: LiveConfig, references: ReferenceStore, counters: Counters, views: Views,
                 labels: Callable[[int], GroundTruth | None] | None = None,
                 routing: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        import threading

        self.config = config
        self.references = references
        self.counters = counters
        self.views_policy = views
        self._labels = labels or (lambda partition: None)
        """Makes a partition's ground truth (None: this processor joins no labels)."""
        self.label_warnings = LabelWarnings()
        self.routing = routing
        """Shared Kafka mode: the partition each prediction id joins its label in (its hash modulo the partition
        count), wherever the row came in. None: every row joins where it came in."""
        self.lock = threading.RLock()
        """Guards every partition: apply, checkpoints and publications, evaluation (one model at a time)."""
        self.archive_gate = threading.Lock()
        """Held by a checkpoint from taking the performance windows that leave memory until the archive holds them,
        and by a range read across its two reads (these windows, then the archive's rows): without it a read in
        between saw a window in neither and counted fewer labels. Taken before ``lock``, never inside it."""
        self.parts: dict[int, PartitionState] = {}
        self._unrecorded: list[WindowedProfile] = []

    # --- partitions and window sets ------------------------------------------------------------------------
    def partition(self, p: int = 0) -> PartitionState:
        state = self.parts.get(p)
        if state is None:
            state = self.parts[p] = PartitionState(ModelLifecycle(self.config.models), self._labels(p))
        return state

    def window_options(self) -> dict:
        """The keyword arguments every window set is made with (recovered ones too)."""
        return {"max_features": self.config.max_features, "reference_chunks": self.config.reference_chunks,
                "keep_evicted": self.config.keep_evicted, "pin_reference": not self.views_policy.partial,
                "correlation_features": self.config.correlation_features,
                "segment_by": self.config.segment_by, "max_segments": self.config.max_segments,
                "segment_bins": self.config.segment_bins}

    def new_window_set(self, model: str, version: str) -> WindowedProfile:
        """An empty window set of (model, version), its reference attached."""
        wp = WindowedProfile(model, version, self.config.windows, self.config.sketch, **self.window_options())
        self.attach_reference(wp)
        return wp

    def attach_reference(self, wp: WindowedProfile) -> None:
        """A baseline file wins; else a pinned reference (its file, or in shared mode what the changelog brought)."""
        found = self.references.find(wp.model, wp.version)
        if found is None or not (found[1] == "baseline" or wp.reference is None):
            return
        wp.set_reference(found[0], found[1])
        start = self.references.current_start.get((wp.model, wp.version))
        if found[1] == "pinned" and start is not None:
            wp.current_start_ns = max(wp.current_start_ns or 0, start)

    def model_keys(self) -> set[Key]:
        return {k for state in self.parts.values() for k in state.models}

    def count(self) -> int:
        return len(self.model_keys())

    # --- apply ---------------------------------------------------------------------------------------------
    def apply(self, result: DecodeResult, partition: int = 0) -> None:
        """Add a decoded request to ``partition`` (its rows to the window sets, ids and labels to the join) and
        count it. Models beyond ``models.max_models`` that none can make room for are refused here, with a reason
        in ``result``. Deterministic: a replay of the same requests in the same order rebuilds the same state."""
        state = self.partition(partition)
        if result.routed:
            self._apply_routed(state, result)
            return
        life = state.lifecycle
        late: Counter[Key] = Counter()
        dropped: Counter[Key] = Counter()
        # The event clock follows the data, but never past when the request was received (journaled with it, so
        # a replay moves it the same way): one client's clock running ahead cannot age every other model.
        bound = result.received_ns or 2**63 - 1
        for batch in result.batches:
            if len(batch.span_end_ns):
                life.advance(min(int(batch.span_end_ns.max()), bound))
        kept = []
        busy = {batch.key for batch in result.batches}
        for batch in result.batches:
            if batch.key not in state.models:
                admitted, release = life.admit(batch.key, state.models, busy)
                if release is not None:
                    self.release(release, "limit", partition)
                if not admitted:
                    result.refuse(len(batch.span_end_ns), "too_many_models",
                                  f"models.max_models={self.config.models.max_models} live, none releasable "
                                  f"(models.when_full={self.config.models.when_full}, release_min_idle_seconds="
                                  f"{self.config.models.release_min_idle_seconds:g}); model {batch.model!r} version "
                                  f"{batch.version!r} not admitted")
                    continue
                wp = state.models[batch.key] = self.new_window_set(batch.model, batch.version)
                if wp.reference is None and not self.views_policy.partial:
                    others = sorted(v for m, v in self.references.baselines if m == batch.model)
                    if others:  # a forgotten ml.model.version would pin live (maybe drifted) traffic silently
                        log.warning(
                            "model %r version %r: no baseline, but the baseline directory has one for version(s) %s "
                            "of this model, which spans of version %r do not use; the first %ss horizon will be "
                            "pinned as reference instead. Set ml.model.version on the spans (or their resource), "
                            "or build a baseline without --model-version: it applies to every version of the model "
                            "that has none of its own", batch.model, batch.version,
                            ", ".join(repr(v) for v in others), batch.version, self.config.windows.horizon_seconds)
                    else:
                        log.info("model %r version %r: no baseline; the first %ss horizon will be pinned as "
                                 "reference", batch.model, batch.version, self.config.windows.horizon_seconds)
            wp = state.models[batch.key]
            if batch.embedding_dimension and wp.embedding_dimension not in (0, batch.embedding_dimension):
                # Vectors of another dimension are projected into another space: their columns would mix with the
                # model's as if they were the same numbers. Refused as one request with two dimensions is.
                result.refuse(len(batch.span_end_ns), "embedding_dimension_mismatch",
                              f"{sc.EMBEDDING} of dimension {batch.embedding_dimension} for model {batch.model!r} "
                              f"version {batch.version!r}, whose embeddings have dimension {wp.embedding_dimension}: "
                              "a new embedding model is a new ml.model.version")
                continue
            wp.embedding_dimension = wp.embedding_dimension or batch.embedding_dimension
            reconstruction = wp.reference.reconstruction if wp.reference is not None else None
            if reconstruction is not None:  # multivariate drift: each row's error, profiled like a feature
                batch.numeric[sc.MULTIVARIATE_FEATURE] = reconstruction.errors(batch.numeric, batch.categorical,
                                                                               batch.n_rows)
            before = wp.dropped_feature_values
            late[batch.key] += wp.update(batch, bound)
            wp.last_received_ns = max(wp.last_received_ns, result.received_ns or time.time_ns())
            dropped[batch.key] += wp.dropped_feature_values - before
            life.touch(batch.key, min(wp.newest_event_ns or 0, bound))
            kept.append(batch)
        result.batches = kept
        if state.labels is not None:
            for batch in kept:
                joined = with_segments(batch, state.models[batch.key].join_segments()) \
                    if state.labels.counts_rows_of(batch) else batch
                state.labels.count_predictions(joined)
                self._join(partition, state, batch=joined)
                if len(batch.call_alias) and (aliased := alias_rows(joined)) is not None:
                    self._join(partition, state, batch=aliased)  # an LLM call under its response id too
            for labels in result.labels:
                self._join(partition, state, labels=labels)
            self.count_labels()
        elif result.labels:
            result.refuse(sum(lb.n_rows for lb in result.labels), "ground_truth_unsupported",
                          "this processor joins no labels")
            result.labels = []
        if life.sweep_due(self.config.windows.window_ns):
            self._release_idle(partition)
        self._count(result, late, dropped)

    def _join(self, partition: int, state: PartitionState, batch: ColumnarBatch | None = None,
              labels: LabelBatch | None = None) -> None:
        """Join a batch's rows with ids, or labels, here or, for ids that hash to another partition, send them
        there (``outbox``)."""
        assert state.labels is not None
        ids = batch.prediction_id if batch is not None else labels.prediction_id  # type: ignore[union-attr]
        if batch is not None and not len(ids):
            return
        dest = self.routing(ids) if self.routing is not None else None
        here = None if dest is None else dest == partition
        if here is None or here.all():
            if batch is not None:
                state.labels.join_predictions(batch)
            else:
                state.labels.on_labels(labels)  # type: ignore[arg-type]
            return
        for q in np.unique(dest).tolist():
            rows = dest == q
            if q == partition:
                if batch is not None:
                    state.labels.join_predictions(join_rows(batch, rows))
                else:
                    state.labels.on_labels(labels.select(rows))  # type: ignore[arg-type]
                continue
            out = state.outbox.setdefault(q, DecodeResult(batches=[], routed=True))
            if batch is not None:
                out.batches.append(join_rows(batch, rows))
            else:
                out.labels.append(labels.select(rows))  # type: ignore[arg-type]

    def _apply_routed(self, state: PartitionState, result: DecodeResult) -> None:
        """Rows and labels another partition sent here to meet (their windows were counted there)."""
        if state.labels is None:
            return
        for batch in result.batches:
            state.labels.join_predictions(batch)
        for labels in result.labels:
            state.labels.on_labels(labels)
        self.count_labels()

    def _count(self, result: DecodeResult, late: Counter[Key], dropped: Counter[Key]) -> None:
        c = self.counters
        c.count(sc.METRIC_SPANS_RECEIVED, result.spans_received)
        c.count(sc.METRIC_SPANS_ACCEPTED, result.spans_accepted)
        c.count(sc.METRIC_SPANS_IGNORED, result.spans_ignored)
        for reason, n in result.rejected.items():
            c.count(sc.METRIC_SPANS_REJECTED, n, {sc.ATTR_REASON: reason})
        for reason, n in result.skipped_messages.items():
            if reason.startswith(sc.KINESIS_SKIP_PREFIX):
                c.count(sc.METRIC_KINESIS_SKIPPED, n, {sc.ATTR_REASON: reason[len(sc.KINESIS_SKIP_PREFIX):]})
            else:
                c.count(sc.METRIC_KAFKA_SKIPPED, n, {sc.ATTR_REASON: reason})
        if not self.views_policy.partial:
            for batch in result.batches:
                c.count(sc.METRIC_PREDICTIONS, float(batch.row_weight.sum()), _attrs(batch.key))
        for key, n in late.items():
            if n:
                c.count(sc.METRIC_ROWS_LATE, n, _attrs(key))
        for key, n in dropped.items():
            if n:
                c.count(sc.METRIC_FEATURE_VALUES_DROPPED, n, _attrs(key))

    # --- lifecycle -----------------------------------------------------------------------------------------
    def release(self, key: Key, reason: str, partition: int | None = None) -> None:
        """Release a (model, version) from ``partition`` (None: from every partition holding it): its windows go to
        the archive with the partition's next write, its memory and exported series are freed. Its baseline or
        pinned reference stays for its return."""
        for p, state in self.parts.items():
            if (partition is not None and p != partition) or key not in state.models:
                continue
            wp = state.models.pop(key)
            if wp.just_pinned:  # its pinned reference is not recorded yet: newly_pinned still hands it over
                self._unrecorded.append(wp)
            state.released.append(wp.close())
            life = state.lifecycle
            idle_ns = life.clock_ns - life.last_active.get(key, life.clock_ns)
            life.release(key)
            if state.labels is not None:
                state.labels.forget(*key)
            log.info("model %r version %r released (%s; idle %.0f s of event time): %d live", key[0], key[1],
                     reason, idle_ns / 1e9, len(state.models))
        if not any(key in state.models for state in self.parts.values()):
            self.counters.forget_model(*key)
            self.references.forget(key)
        self.counters.count(sc.METRIC_MODELS_RELEASED, 1, {sc.ATTR_REASON: reason})

    def _release_idle(self, partition: int) -> None:
        """Release every model idle past models.idle_ttl_seconds in ``partition``, and delete expired pinned
        references. Runs inside ``apply`` as the event clock moves, so a replay releases at the same points."""
        state = self.parts[partition]
        for key in state.lifecycle.idle():
            self.release(key, "idle", partition)
        for key in state.lifecycle.expired_references():
            if key not in self.model_keys() and self.references.pinned_files and self.references.delete_pinned(key):
                log.info("model %r version %r: pinned reference deleted (released longer than "
                         "models.pinned_reference_ttl_seconds)", *key)

    def retire(self, model: str, version: str | None = None, drop_reference: bool = False,
               before_ns: int | None = None) -> list[Key]:
        """Release ``model`` (one version, or all) now, as ``otel-ml models retire`` asks; returns what was.
        ``before_ns``: only window sets without data newer than this (shared mode applies a retire published
        earlier: what came since is a return, and stays)."""
        keys = sorted(k for k in self.model_keys() if k[0] == model and (version is None or k[1] == version))
        for key in keys:
            if before_ns is not None:
                for p, state in self.parts.items():
                    wp = state.models.get(key)
                    if wp is not None and (wp.newest_event_ns or 0) <= before_ns:
                        self.release(key, "retired", p)
                continue
            self.release(key, "retired")
        if drop_reference:
            for state in self.parts.values():
                for key in [k for k in state.lifecycle.released
                            if k[0] == model and (version is None or k[1] == version)]:
                    self.references.delete_pinned(key)
                    state.lifecycle.released.pop(key, None)
        return keys

    # --- references ----------------------------------------------------------------------------------------
    def reload_references(self, force: bool = False) -> None:
        """Put baselines added or replaced since start in force (a baseline wins over a pinned reference); runs
        before every evaluation, so a new file takes effect within one interval."""
        changed = self.references.reload_baselines(force)
        if not changed:
            return
        for state in self.parts.values():
            for wp in state.models.values():
                found = self.references.find(wp.model, wp.version)
                if found is None or found[1] != "baseline" or not {(wp.model, wp.version), (wp.model, "")} & changed:
                    continue
                was = wp.reference_source or "none"
                wp.set_reference(found[0], "baseline")
                log.info("model %r version %r: baseline in force (was: %s)", wp.model, wp.version, was)

    def adopt_reference(self, reference: ModelProfile, current_start_ns: int | None) -> None:
        """A reference pinned from the merge of every partition (shared mode): every window set of the model
        uses it, and their current horizon starts after it."""
        self.references.adopt(reference, current_start_ns)
        key = (reference.model, reference.version)
        for state in self.parts.values():
            wp = state.models.get(key)
            if wp is not None and wp.reference_source != "baseline":
                self.attach_reference(wp)
                wp.evict()  # the reference's horizon leaves the partition's windows (for the archive) now

    def performance_reference(self, model: str, version: str) -> PerformanceReference | None:
        """The model's labelled baseline (its positive class, a multiclass model's calibration maps), if it has one."""
        found = self.references.find(model, version)
        return found[0].performance if found is not None else None

    def performance_windows(self, model: str, version: str) -> list[tuple[int, int, PerformanceProfile]]:
        """Every partition's performance windows of (model, version) that the archive does not hold yet (live,
        leaving, late deltas; ``GroundTruth.windows_of``), copied: a range read adds the archive's rows."""
        with self.lock:
            return [w for state in self.parts.values() if state.labels is not None
                    for w in state.labels.windows_of(model, version)]

    # --- evaluation ------------------------------------------------------------------------------------------
    def views(self) -> Mapping[Key, WindowedProfile]:
        """The window sets to evaluate now (``Views``); call under ``lock``, and read each under it too."""
        return self.views_policy.build(self)

    def newly_pinned(self) -> list[WindowedProfile]:
        """Window sets that pinned a reference since the last call (the state backend records it)."""
        out, self._unrecorded = self._unrecorded, []
        for state in self.parts.values():
            for wp in state.models.values():
                if wp.just_pinned:
                    wp.just_pinned = False
                    out.append(wp)
        return out

    def hand_over_labels(self, p: int, keep: Callable[[str], bool]) -> None:
        """Partition ``p``'s join is another replica's now (shared Kafka mode): its waiting predictions and early
        labels go (the next owner restores them from what was published), its performance windows and totals stay
        for the models ``keep`` says (this replica exports them)."""
        state = self.parts.get(p)
        if state is None or state.labels is None:
            return
        old, fresh = state.labels, self._labels(p)
        assert fresh is not None
        fresh.windows = {key: w for key, w in old.windows.items() if keep(key[0])}
        fresh.totals = old.totals
        fresh.pending.committed({})  # its files too: a later take-over writes what the changelog holds
        state.labels = fresh

    def label_status(self) -> dict[Key, dict]:
        """Per (model, label version) this processor exports: labels joined, not joined by reason, examples and
        diagnoses (core/label_report.py); call under ``lock``."""
        return label_status([s.labels for s in self.parts.values() if s.labels is not None],
                            self.views_policy.exports)

    def count_labels(self) -> None:
        """Move each partition's label counts (joined, and not joined by reason) into the counters. Every reason's
        series exists from a model's first label on, at 0. (Partial views total them when views are built.) What
        deserves a log line is logged, once per model (``LabelWarnings``)."""
        for state in self.parts.values():
            if state.labels is None:
                continue
            applied, unmatched = state.labels.take_counts()
            withheld, state.labels.withheld_log_loss = state.labels.withheld_log_loss, Counter()
            self.label_warnings.interval(state.labels, applied, unmatched, withheld)
            if self.views_policy.partial:
                continue
            for key, n in withheld.items():
                self.counters.count(sc.METRIC_LOG_LOSS_WITHHELD, n, _attrs(key))
            for key, n in applied.items():
                self.counters.count(sc.METRIC_GROUND_TRUTH, n, _attrs(key))
                for reason in UNMATCHED_REASONS:
                    self.counters.count(sc.METRIC_GROUND_TRUTH_UNMATCHED, 0, {**_attrs(key), sc.ATTR_REASON: reason})
            for (model, version, reason), n in unmatched.items():
                self.counters.count(sc.METRIC_GROUND_TRUTH_UNMATCHED, n,
                                    {**_attrs((model, version)), sc.ATTR_REASON: reason})


def join_rows(batch: ColumnarBatch, rows: np.ndarray) -> ColumnarBatch:
    """What the join needs of some rows of a batch: ids, event times, the prediction and its probabilities, and
    (a batch that keeps them) each row's span ids, as a span a row."""
    keep = {sc.PREDICTION_FEATURE, sc.PREDICTION_PROBABILITY_FEATURE, sc.SEGMENT_COLUMN}
    n, span_ids = int(rows.sum()), batch.row_span_ids()
    spans = {} if span_ids is None else {
        "span_end_ns": batch.row_time_ns[rows], "span_duration_s": np.full(n, np.nan),
        "span_error": np.zeros(n, bool), "span_ids": span_ids[rows]}
    return ColumnarBatch(batch.model, batch.version, n, batch.row_time_ns[rows], batch.row_weight[rows],
                         numeric={k: v[rows] for k, v in batch.numeric.items()
                                  if k in keep or k.startswith(sc.CLASS_PROBABILITY_COLUMN_PREFIX)},
                         categorical={k: v[rows] for k, v in batch.categorical.items() if k in keep},
                         prediction_id=batch.prediction_id[rows], **spans)


def alias_rows(batch: ColumnarBatch) -> ColumnarBatch | None:
    """LLM calls' rows under their second key (``call_alias``, their ``gen_ai.response.id``'s hash), for the join
    alone: a result that names only the response finds the call there (in shared mode: in the partition that key
    hashes to). None when no row has one."""
    has = batch.call_alias != 0
    if not has.any():
        return None
    out = join_rows(batch, has)
    out.prediction_id = batch.call_alias[has]
    return out


def with_segments(batch: ColumnarBatch, segmented: SegmentCounts | None) -> ColumnarBatch:
    """A segmented model's batch for the label join: the same rows with each one's segment label
    (``sc.SEGMENT_COLUMN``); the batch itself is left as journaled."""
    if segmented is None or not batch.n_rows:
        return batch
    return dataclasses.replace(batch, categorical={**batch.categorical,
                                                   sc.SEGMENT_COLUMN: segmented.row_labels(batch)})


def _attrs(key: Key) -> dict[str, str]:
    return {sc.ATTR_MODEL_NAME: key[0], sc.ATTR_MODEL_VERSION: key[1]}


class OwnViews:
    """A processor that holds all of its input (one partition): it evaluates its own window sets."""

    partial = False

    def exports(self, model: str) -> bool:
        return True

    def build(self, live: LiveModels) -> dict[Key, WindowedProfile]:
        return {key: wp for state in live.parts.values() for key, wp in state.models.items()}


def exporting_partition(model: str, partitions: int) -> int:
    """The partition whose owner evaluates and exports ``model`` (every replica computes the same; a stable hash,
    not Python's per-process ``hash``).

    >>> exporting_partition("fraud", 6) == exporting_partition("fraud", 6) < 6
    True
    """
    # not crc32: names differing in their last character ("model-1", "model-2") land on the same crc32 residues
    return int.from_bytes(hashlib.blake2b(model.encode(), digest_size=8).digest(), "big") % partitions


@dataclass
class Ownership:
    """Which partitions of the input topic this replica owns now, and how many there are (shared mode; the state
    backend keeps it, the views read it)."""

    partitions: int = 0
    owned: set[int] = field(default_factory=set)
    pinned: set[Key] = field(default_factory=set)
    """References the merges pinned here since the backend last recorded them (the changelog)."""
    others: Callable[[Key], dict[int, ModelProfile]] = lambda key: {}
    """Window start → the merge of the windows of ``key`` in the partitions this replica does not own (the
    backend keeps them; the window sets of those partitions hold no windows)."""

    def exports(self, model: str) -> bool:
        return self.partitions > 0 and exporting_partition(model, self.partitions) in self.owned


class MergedViews:
    """Replicas sharing a Kafka topic (shared mode): for each model whose exporting partition this replica owns,
    the merge of every partition's window set of it, rebuilt at each evaluation. Without a baseline, the merge
    pins the first horizon once every partition's data has passed it (``watermark_ns``): every partition's set
    adopts it, and ``ownership.pinned`` names it for the changelog. ``ml.predictions`` of the evaluated models is
    the total over every partition.

    >>> import numpy as np
    >>> from otel_ml.decode.batch import ColumnarBatch
    >>> cfg = LiveConfig(windows=WindowConfig(window_seconds=1, horizon_seconds=2, allowed_lateness_seconds=0,
    ...                                       reference_min_rows=2))
    >>> views = MergedViews(Ownership(partitions=2, owned={0, 1}))
    >>> live = LiveModels(cfg, ReferenceStore(None, "/tmp/otel-ml-doctest", pinned_files=False), Counters(), views)
    >>> def rows(t):
    ...     return ColumnarBatch("m", "", 1, np.array([t * 10**9]), np.ones(1), numeric={"x": np.array([1.0 * t])},
    ...                          span_end_ns=np.array([t * 10**9]), span_duration_s=np.array([0.01]),
    ...                          span_error=np.array([False]))
    >>> with live.lock:
    ...     for t in range(6):
    ...         live.apply(DecodeResult([rows(t)]), partition=t % 2)  # two partitions, each a share of "m"
    ...     live.parts[0].caught_up = live.parts[1].caught_up = True   # both read to their end
    ...     merged = live.views()["m", ""]
    >>> merged.reference.rows, merged.current().rows, merged.predictions
    (2, 2, 6.0)
    """

    partial = True

    def __init__(self, ownership: Ownership) -> None:
        self.ownership = ownership

    def exports(self, model: str) -> bool:
        return self.ownership.exports(model)

    def build(self, live: LiveModels) -> Mapping[Key, WindowedProfile]:
        watermark = self.watermark_ns(live)
        totals: dict[Key, float] = {}
        for key in sorted(k for k in live.model_keys() if self.exports(k[0])):
            parts = _parts_with_rows(live, key)
            if parts:
                totals[key] = sum(p.predictions for p in parts)
        live.counters.set_totals(sc.METRIC_PREDICTIONS, {
            tuple(_attrs(key).items()): n for key, n in totals.items()})
        self._label_totals(live)
        return _MergedOnDemand(list(totals), lambda key: self._view(live, key, watermark))

    def _view(self, live: LiveModels, key: Key, watermark: int | None) -> WindowedProfile:
        wp = self.merged(live, key, watermark, self.ownership.others)
        if wp is None:  # its rows left since build (released, retired): an empty set evaluates as no data
            return WindowedProfile(*key, live.config.windows, live.config.sketch, **live.window_options())
        if wp.just_pinned and wp.reference is not None:
            wp.just_pinned = False
            live.adopt_reference(wp.reference, wp.current_start_ns)
            self.ownership.pinned.add(key)
            log.info("model %r version %r: reference pinned from every partition's first horizon (%d rows)",
                     *key, wp.reference.rows)
        return wp

    def _label_totals(self, live: LiveModels) -> None:
        """``ml.ground_truth`` and ``ml.ground_truth.unmatched`` of the exported models: every partition's totals."""
        joined: dict[tuple, float] = {}
        unmatched: dict[tuple, float] = {}
        for state in live.parts.values():
            if state.labels is None:
                continue
            for (model, version, reason), n in state.labels.totals.items():
                if not self.exports(model):
                    continue
                attrs = tuple(_attrs((model, version)).items())
                if reason == "applied":
                    joined[attrs] = joined.get(attrs, 0.0) + n
                    for r in UNMATCHED_REASONS:
                        unmatched.setdefault((*attrs, (sc.ATTR_REASON, r)), 0.0)
                else:
                    key = (*attrs, (sc.ATTR_REASON, reason))
                    unmatched[key] = unmatched.get(key, 0.0) + n
        live.counters.set_totals(sc.METRIC_GROUND_TRUTH, joined)
        live.counters.set_totals(sc.METRIC_GROUND_TRUTH_UNMATCHED, unmatched)

    def watermark_ns(self, live: LiveModels) -> int | None:
        """The watermark of the whole topic: the newest event minus the allowed lateness, but no later than the
        newest event of any partition still being read (its older rows may be next): a partition read to its end
        (``caught_up``) holds nothing back, however old its last row. None while a partition has no state yet or
        one still being read has no rows yet."""
        if any(p not in live.parts for p in range(self.ownership.partitions)):
            return None
        clocks = {p: max((wp.newest_event_ns or 0 for wp in state.models.values()), default=state.clock_ns)
                  if p in self.ownership.owned or state.clock_ns is None else state.clock_ns
                  for p, state in live.parts.items()}
        behind = [clocks[p] for p, state in live.parts.items() if not state.caught_up]
        newest = [c for c in clocks.values() if c is not None]
        if None in behind or not newest:
            return None
        return (min(behind) if behind else max(newest)) - live.config.windows.lateness_ns  # type: ignore[type-var]

    @staticmethod
    def merged(live: LiveModels, key: Key, watermark_ns: int | None = None,
               others: Callable[[Key], dict[int, ModelProfile]] | None = None) -> WindowedProfile | None:
        """Every partition's windows of ``key`` merged into one window set. Without a reference, it pins one once
        ``watermark_ns`` has passed the first horizon, so that no partition's rows of that horizon are still to
        come. None when no partition has rows of the model."""
        parts = _parts_with_rows(live, key)
        if not parts:
            return None
        wp = WindowedProfile(*key, live.config.windows, live.config.sketch,
                             **{**live.window_options(), "pin_reference": True, "keep_evicted": False})
        live.attach_reference(wp)
        for part in parts:
            for name, kind in part.kinds.items():
                wp.kinds.setdefault(name, kind)
            if part.current_start_ns is not None:
                wp.current_start_ns = max(wp.current_start_ns or 0, part.current_start_ns)
        wp.newest_event_ns = max(p.newest_event_ns for p in parts)  # type: ignore[type-var]
        wp.last_received_ns = max(p.last_received_ns for p in parts)
        wp.unprofiled = set().union(*(p.unprofiled for p in parts))
        wp.first_window_ns = min(p.first_window_ns for p in parts if p.first_window_ns is not None)
        wp.predictions = sum(p.predictions for p in parts)
        lo = wp.horizon_start_ns() if wp.reference is not None else None  # only the current horizon is needed
        for windows in [*(part.windows for part in parts), others(key) if others is not None else {}]:
            for start, window in windows.items():
                if lo is not None and start < lo:
                    continue
                into = wp.windows.get(start)
                if into is None:
                    into = wp.windows[start] = ModelProfile(key[0], key[1], live.config.sketch)
                into.merge(window)
        if wp.reference is None and watermark_ns is not None:
            wp.maybe_pin(watermark_ns)
        return wp


def _parts_with_rows(live: LiveModels, key: Key) -> list[WindowedProfile]:
    """Every partition's window set of ``key`` that has rows."""
    return [state.models[key] for state in live.parts.values()
            if key in state.models and state.models[key].newest_event_ns is not None]


class _MergedOnDemand(Mapping[Key, WindowedProfile]):
    """The models a replica evaluates, each merge built when it is read and not kept: an evaluation holds one
    model's merged windows at a time, not every exported model's (their sketches are live, ~2x a settled
    window's size)."""

    def __init__(self, keys: list[Key], build: Callable[[Key], WindowedProfile]) -> None:
        self._keys = keys
        self._set = set(keys)
        self._build = build

    def __getitem__(self, key: Key) -> WindowedProfile:
        if key not in self._set:
            raise KeyError(key)
        return self._build(key)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._set
