"""Where windows live: tumbling event-time windows per (model, version), merged into a trailing horizon.

Event time is the span's end time. The watermark is the newest event time seen minus the allowed
lateness; windows are kept while they can still matter (the horizon plus the lateness behind the
newest window), so memory is bounded by horizon / window windows per model.

Without a baseline, the first full horizon is pinned as the reference: once the watermark passes
``first window start + horizon`` (extended window by window until it holds ``reference_min_rows``), the
windows of that horizon are merged into a reference profile and the current horizon starts after it,
so reference and current never share rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile.comoments import BASIS_MIN_VALUES, Comoments
from otel_ml.profile.exemplars import Exemplars
from otel_ml.profile.model import ModelProfile, choose_kind
from otel_ml.profile.segments import DEFAULT_MAX_SEGMENTS, SegmentCounts
from otel_ml.profile.sketch import GRID_MIN_VALUES, NUMERIC, Grid, NumericProfile, SketchConfig, grid_from_quantiles
from otel_ml.semconv import is_input_column

log = logging.getLogger(__name__)

NS = 1_000_000_000


@dataclass(frozen=True)
class WindowConfig:
    window_seconds: float = 60.0
    horizon_seconds: float = 900.0
    allowed_lateness_seconds: float | None = None
    """How far behind the newest event a span may arrive and still count; default: one window."""
    reference_min_rows: int = 1000
    """A pinned reference spans at least one horizon and at least this many rows: with sparse traffic the
    reference keeps growing, window by window, until it is large enough to compare against."""

    @property
    def window_ns(self) -> int:
        return int(self.window_seconds * NS)

    @property
    def horizon_ns(self) -> int:
        # A whole number of windows, at least one.
        return max(1, round(self.horizon_seconds / self.window_seconds)) * self.window_ns

    @property
    def lateness_ns(self) -> int:
        lateness = self.window_seconds if self.allowed_lateness_seconds is None else self.allowed_lateness_seconds
        return int(lateness * NS)


@dataclass
class WindowChanges:
    """What a checkpoint writes for one model since the previous one (``WindowedProfile.take_changes``)."""

    model: str
    version: str
    changed: dict[int, bytes]
    """Window start → the window's ``ModelProfile.to_json()``, for windows changed (written again)."""
    removed: set[int]
    """Starts of windows that left memory (their stored copies are deleted)."""
    evicted: list[tuple[int, ModelProfile]]
    """Those windows themselves, for the archive (only with ``keep_evicted``)."""


MAX_SEGMENT_KEYS = 4
"""Segment keys a model is segmented by from its spans' ``ml.segment.<key>`` attributes (the first by name)."""


class WindowedProfile:
    """Windows of one (model, version), the reference it is compared with, and the feature kinds.

    >>> import numpy as np
    >>> cfg = WindowConfig(window_seconds=1, horizon_seconds=2, allowed_lateness_seconds=0, reference_min_rows=2)
    >>> wp = WindowedProfile("m", "", cfg)
    >>> def batch(t):
    ...     return ColumnarBatch("m", "", 1, np.array([t * NS]), np.ones(1), numeric={"x": np.array([float(t)])},
    ...                          span_end_ns=np.array([t * NS]), span_duration_s=np.array([0.01]),
    ...                          span_error=np.array([False]))
    >>> for t in range(5):
    ...     _ = wp.update(batch(t))
    >>> wp.reference.rows, wp.reference_source, wp.current().rows
    (2, 'pinned', 2)
    """

    def __init__(
        self,
        model: str,
        version: str,
        window: WindowConfig,
        sketch: SketchConfig | None = None,
        reference: ModelProfile | None = None,
        kinds: dict[str, str] | None = None,
        max_features: int = 1_000,
        reference_chunks: int = 0,
        keep_evicted: bool = False,
        pin_reference: bool = True,
        correlation_features: int = 10,
        segment_by: dict[str, tuple[str, ...]] | None = None,
        max_segments: int = DEFAULT_MAX_SEGMENTS,
        segment_bins: dict[str, list[float]] | None = None,
    ) -> None:
        self.model = model
        self.version = version
        self.window = window
        self.sketch = sketch or SketchConfig()
        self.windows: dict[int, ModelProfile] = {}
        self.grids: dict[str, Grid] = {}
        """Every window's numeric binning, shared: exact bin counts of one grid add up across the horizon and
        compare exactly with a reference on the same grid (a baseline's grid is adopted)."""
        self.kinds: dict[str, str] = dict(kinds or {})
        self.reference: ModelProfile | None = None
        self.reference_source: str | None = None
        self.first_window_ns: int | None = None
        self.newest_event_ns: int | None = None
        self.ignored_segment_keys: set[str] = set()  # ml.segment.<key> keys it is not segmented by (logged once)
        self.embedding_dimension = 0
        """The dimension of the model's ``ml.embedding`` vectors, set by the first batch with any (checkpointed):
        vectors of another dimension project into another space, so later ones are refused (core/live.py)."""
        self.last_received_ns = 0
        """The processor's clock when data of this model last arrived (0: not since the process started); the
        pages mark a model stale from it."""
        self.current_start_ns: int | None = None
        """Start of the earliest window the current horizon may use (after a pinned reference)."""
        self.just_pinned = False
        self.max_features = max_features
        self.reference_chunks = reference_chunks
        """Groups of windows a pinned reference keeps for learned thresholds (0: none, saving their memory)."""
        self.keep_evicted = keep_evicted
        self.pin_reference = pin_reference
        """False for a partial window set (one Kafka partition's share of a model): only the merge of every
        partition may pin a reference (profile/partitioned.py)."""
        self.correlation_features = correlation_features
        self.correlated: Comoments | None = None
        """The features (and basis) whose pairwise moments every window keeps: a baseline's, else chosen from the
        windows once they hold enough values (``Comoments.choose``); None: none yet, or off."""
        by = (segment_by or {}).get(model)
        self.max_segments, self.segment_bins = max_segments, segment_bins
        self.segmented: SegmentCounts | None = SegmentCounts(tuple(by), max_segments, bins=segment_bins) if by else None
        """How rows are segmented (config ``segments.by``, else a baseline's or the stored windows', else the
        ``ml.segment.<key>`` attributes of the first spans that carry any); None: not."""
        self.predictions = 0.0
        """Predictions ever added (row weights, late rows included): ``ml.predictions`` in shared Kafka mode."""
        # What changed since the last checkpoint; read and reset only through take_changes/restore_changes.
        self._evicted: list[tuple[int, ModelProfile]] = []  # windows that left memory, for the archive
        self._dirty: set[int] = set()  # windows changed (only these are written again)
        self._removed: set[int] = set()  # windows gone (their stored copies are deleted)
        self.dropped_feature_values = 0
        """Values of features beyond ``max_features`` that were not profiled."""
        self.unprofiled: set[str] = set()
        """The names of those features (each logged once)."""
        self._changes = 0
        self._changed_at: dict[int, int] = {}
        """Per window, the change count when it last changed: tells whether the settled merge is still valid."""
        self._compacted: set[int] = set()
        self._settled: tuple[tuple[tuple[int, int], ...], ModelProfile] | None = None
        """The merge of the horizon's settled windows and which windows (at which change) it holds."""
        if reference is not None:
            self.set_reference(reference, "baseline")

    def set_reference(self, reference: ModelProfile, source: str) -> None:
        self.reference = reference
        self.reference_source = source
        for name, kind in reference.kinds().items():
            self.kinds.setdefault(name, kind)
        # Windows from now on bin on the reference's grid, so that the horizon and the reference compare on exact
        # counts once the windows binned otherwise have left it.
        self.grids.update(reference.numeric_grids())
        # Windows keep the moments the reference has, on its basis (a baseline without them: no correlation test).
        self.correlated = reference.comoments.empty_like() if reference.comoments is not None and \
            self.correlation_features >= 2 else None
        if reference.segments is not None:  # a reference's segments are what the windows are compared by
            self.segmented = reference.segments.empty_like()

    def update(self, batch: ColumnarBatch, clock_bound_ns: int | None = None) -> int:
        """Add a batch; returns the number of rows dropped because they arrived too late. ``clock_bound_ns``: the
        model's event clock (what lateness and the horizon are measured from) moves with the data but never past
        this, the processor's clock when the request was received: one client's clock ahead cannot make every
        other client's rows late (rows stamped ahead wait in their own window)."""
        win = self.window.window_ns
        unprofiled: list[str] = []
        for name in batch.feature_names():
            if name not in self.kinds:
                if len(self.kinds) >= self.max_features:
                    self.dropped_feature_values += batch.n_rows
                    if name not in self.unprofiled and len(self.unprofiled) < 100_000:
                        self.unprofiled.add(name)
                        unprofiled.append(name)
                    continue
                self.kinds[name] = choose_kind(batch, name) if (
                    name in batch.numeric or name in batch.categorical) else "numeric"
        if unprofiled:  # each feature named once: nobody can tell otherwise which ones are not monitored
            log.warning("model %r version %r: %d more feature(s) beyond limits.max_profiled_features_per_model (%d) "
                        "are not profiled (%d so far): %s%s", self.model, self.version, len(unprofiled),
                        self.max_features, len(self.unprofiled), ", ".join(unprofiled[:20]),
                        ", ..." if len(unprofiled) > 20 else "")
        if keys := batch.segment_keys():
            if self.segmented is None:
                self.segmented = SegmentCounts(tuple(keys[:MAX_SEGMENT_KEYS]), self.max_segments,
                                               bins=self.segment_bins)
            _name_ignored_keys(self, keys)
        late = 0
        self.predictions += float(batch.row_weight.sum())
        for start, part in batch.split_by_window(win).items():
            if self.first_window_ns is None:
                self.first_window_ns = start
            if start < self._oldest_kept_ns(start):
                late += part.n_rows
                continue
            w = self.windows.get(start)
            if w is None:
                self._grids_from_newest_window()
                self._correlated_from_windows()
                newest = self.windows[max(self.windows)].segments if self.windows else None
                if self.segmented is not None and newest is not None:  # the busiest segments keep their place
                    self.segmented.rank_from(newest)
                w = self.windows[start] = ModelProfile(self.model, self.version, self.sketch, self.grids)
            w.update(part, self.kinds, self.correlated, self.segmented)
            self._dirty.add(start)
            self._changes += 1
            self._changed_at[start] = self._changes
            self._compacted.discard(start)  # an update made its sketches live again
            newest = int(part.span_end_ns.max()) if len(part.span_end_ns) else start
            if clock_bound_ns is not None:
                newest = min(newest, clock_bound_ns)
            if self.newest_event_ns is None or newest > self.newest_event_ns:
                self.newest_event_ns = newest
        self.maybe_pin()
        self._evict()
        self._compact_settled()
        return late

    def join_segments(self) -> SegmentCounts | None:
        """What rows are labelled with on their way to the label join: the newest window's segments (so a label
        counts in the segment its prediction's drift counted in, ``(other)`` alike); None: not segmented."""
        newest = self.windows[max(self.windows)].segments if self.segmented is not None and self.windows else None
        return newest if newest is not None else self.segmented

    def _grids_from_newest_window(self) -> None:
        """Features still without a grid (their batches were too small to choose one) get one from the newest
        window's sketch once it holds enough values: a model sending one span per request gets exact counts
        from its next window on."""
        missing = [n for n, k in self.kinds.items() if k == NUMERIC and n not in self.grids]
        if not missing or not self.windows:
            return
        newest = self.windows[max(self.windows)]
        for name in missing:
            prof = newest.features.get(name)
            if isinstance(prof, NumericProfile) and prof.count >= GRID_MIN_VALUES:
                self.grids[name] = grid_from_quantiles(prof.quantile(0.25), prof.quantile(0.5), prof.quantile(0.75),
                                                       prof.std)

    def _correlated_from_windows(self) -> None:
        """Without a reference to follow, the correlated features and their basis are chosen when a window opens
        and the windows kept hold enough values of two of them (``Comoments.choose``: a sparse model, or one
        Kafka partition's share of one, gets there after a few windows); windows from then on keep their moments."""
        if self.correlated is not None or self.reference is not None or self.correlation_features < 2 or \
                not self.windows:
            return
        # Counts add up over the windows; the quartiles (only a power of ten is taken from them) come from the window
        # holding most of the feature's values. No sketch is merged: merges draw on KLL's random compaction.
        counts: dict[str, int] = {}
        fullest: dict[str, NumericProfile] = {}
        for window in self.windows.values():
            for name, p in window.features.items():
                if isinstance(p, NumericProfile) and p.count and is_input_column(name):
                    counts[name] = counts.get(name, 0) + p.count
                    if name not in fullest or p.count > fullest[name].count:
                        fullest[name] = p
        summaries = {name: (n, fullest[name].quantile(0.25), fullest[name].quantile(0.5), fullest[name].quantile(0.75))
                     for name, n in counts.items() if n >= BASIS_MIN_VALUES}
        self.correlated = Comoments.choose(summaries, self.correlation_features)

    def _compact_settled(self) -> None:
        """Compact the windows the watermark has passed: they rarely change again (late rows make one live)."""
        wm = self.watermark_ns()
        if wm is None:
            return
        for start, w in self.windows.items():
            if start + self.window.window_ns <= wm and start not in self._compacted:
                w.compact()
                self._compacted.add(start)

    def watermark_ns(self) -> int | None:
        return None if self.newest_event_ns is None else self.newest_event_ns - self.window.lateness_ns

    def _newest_window_ns(self) -> int | None:
        if self.newest_event_ns is None:
            return None
        return (self.newest_event_ns // self.window.window_ns) * self.window.window_ns

    def _oldest_kept_ns(self, incoming_start: int) -> int:
        """Windows starting before this are gone (or never kept): a row for one is late."""
        newest = self._newest_window_ns()
        if newest is None:
            return incoming_start
        oldest = newest - self.window.horizon_ns - self.window.lateness_ns + self.window.window_ns
        if self.reference is None and self.first_window_ns is not None:
            oldest = min(oldest, self.first_window_ns)  # still collecting the reference horizon
        if self.current_start_ns is not None:
            oldest = max(oldest, self.current_start_ns)  # rows for the pinned horizon come too late
        return oldest

    def reference_pending(self) -> tuple[int, float] | None:
        """Without a reference yet: (rows, seconds of event time) still needed before one is pinned; else None."""
        if self.reference is not None:
            return None
        rows = sum(w.rows for w in self.windows.values())
        if self.first_window_ns is None:
            return self.window.reference_min_rows, self.window.horizon_ns / NS
        wm = self.watermark_ns() or self.first_window_ns
        return (max(0, self.window.reference_min_rows - rows),
                max(0.0, (self.first_window_ns + self.window.horizon_ns - wm) / NS))

    def maybe_pin(self, watermark_ns: int | None = None) -> None:
        """Pin the first horizon once ``watermark_ns`` (default: this profile's own) has passed it."""
        if self.reference is not None or self.first_window_ns is None or not self.pin_reference:
            return
        wm = self.watermark_ns() if watermark_ns is None else watermark_ns
        end = self.first_window_ns + self.window.horizon_ns
        rows = 0
        for start in sorted(self.windows):
            if start >= end and rows >= self.window.reference_min_rows:
                break
            rows += self.windows[start].rows
            end = max(end, start + self.window.window_ns)
        if wm is None or wm < end or rows < self.window.reference_min_rows:
            return
        ref = ModelProfile(self.model, self.version, self.sketch)
        pinned = [(start, self.windows.pop(start)) for start in sorted(self.windows) if start < end]
        for start, window in pinned:
            ref.merge(window)
            self._forget(start, window)  # archived like any window that left the horizon
        # Up to reference_chunks consecutive groups of windows: the reference's own variability.
        groups = np.array_split(np.arange(len(pinned)), min(self.reference_chunks, len(pinned))) \
            if self.reference_chunks and pinned else []
        for group in groups:
            chunk = ModelProfile(self.model, self.version, self.sketch)
            for i in group:
                chunk.merge(pinned[i][1])
            ref.chunks.append(chunk)
        for profile in (ref, *ref.chunks):  # a reference's example predictions would point at nothing that moved
            profile.exemplars = Exemplars()
        self.set_reference(ref, "pinned")
        self.current_start_ns = end
        self.just_pinned = True
        log.info("model %r version %r: no baseline given, pinned the first horizon (%d rows) as reference",
                 self.model, self.version, ref.rows)

    def evict(self) -> None:
        """Let windows out that can no longer matter (before the horizon, or inside a pinned reference's)."""
        self._evict()

    def _evict(self) -> None:
        newest = self._newest_window_ns()
        if newest is None:
            return
        oldest = self._oldest_kept_ns(newest)
        for start in sorted(s for s in self.windows if s < oldest):
            self._forget(start, self.windows.pop(start))

    def _forget(self, start: int, window: ModelProfile) -> None:
        """A window left memory: its stored copy goes, and it is kept for the archive if one is written."""
        self._dirty.discard(start)
        self._removed.add(start)
        self._compacted.discard(start)
        self._changed_at.pop(start, None)
        if self.keep_evicted:
            self._evicted.append((start, window))

    # --- state for checkpoints (a baseline reference is not included: it is reloaded from its file) ------
    def take_changes(self) -> WindowChanges:
        """What changed since the last call, serialized, and forget it: give it back with ``restore_changes`` if
        it could not be written. Call under the lock that guards ``update``."""
        changes = WindowChanges(
            self.model, self.version,
            changed={start: self.windows[start].to_json().encode() for start in self._dirty},
            removed=set(self._removed), evicted=self._evicted)
        self._dirty.clear()
        self._removed.clear()
        self._evicted = []
        return changes

    def close(self) -> WindowChanges:
        """Forget every window (kept for the archive with ``keep_evicted``) and return what a checkpoint must
        still write: this (model, version) is being released."""
        for start in sorted(self.windows):
            self._forget(start, self.windows.pop(start))
        self._settled = None
        return self.take_changes()

    def restore_changes(self, changes: WindowChanges) -> None:
        """Undo ``take_changes`` after a failed write (what changed since is kept too), except the evicted windows,
        which the caller keeps until they are archived."""
        self._dirty.update(s for s in changes.changed if s in self.windows)
        self._removed.update(s for s in changes.removed if s not in self.windows)

    def to_state(self) -> dict:
        """Everything but the windows, which checkpoints store one row each (``take_changes``)."""
        return {
            "model": self.model, "version": self.version, "kinds": self.kinds,
            "first_window_ns": self.first_window_ns, "newest_event_ns": self.newest_event_ns,
            "current_start_ns": self.current_start_ns, "predictions": self.predictions,
            **({"embedding_dimension": self.embedding_dimension} if self.embedding_dimension else {}),
            "pinned_reference": self.reference.to_dict() if self.reference_source == "pinned" and self.reference
            else None,
        }

    @classmethod
    def from_state(cls, state: dict, windows: dict[int, ModelProfile], window: WindowConfig, sketch: SketchConfig,
                   **options: int) -> WindowedProfile:
        """The inverse of ``to_state``, with the stored windows (kept apart: only changed ones are rewritten)."""
        wp = cls(state["model"], state["version"], window, sketch, kinds=state["kinds"], **options)
        wp.first_window_ns = state["first_window_ns"]
        wp.newest_event_ns = state["newest_event_ns"]
        wp.current_start_ns = state["current_start_ns"]
        wp.predictions = float(state.get("predictions", 0.0))
        wp.embedding_dimension = int(state.get("embedding_dimension", 0))
        wp.windows = dict(windows)
        wp.adopt_window_grids()
        if state.get("pinned_reference"):
            wp.set_reference(ModelProfile.from_dict(state["pinned_reference"]), "pinned")
        wp._compact_settled()
        return wp

    def adopt_window_grids(self) -> None:
        """Windows read from storage share this set's grids, and new windows bin on the newest ones' grids."""
        for start in sorted(self.windows):
            self.windows[start].grids = self.grids
            for name, prof in self.windows[start].features.items():
                if isinstance(prof, NumericProfile) and prof.grid is not None:
                    self.grids[name] = prof.grid
            if self.windows[start].comoments is not None and self.correlation_features >= 2:
                self.correlated = self.windows[start].comoments.empty_like()  # type: ignore[union-attr]
            if self.windows[start].segments is not None and self.segmented is None:
                self.segmented = self.windows[start].segments.empty_like()  # type: ignore[union-attr]

    def horizon_start_ns(self) -> int | None:
        """Start of the oldest window in the current horizon (None: no data yet)."""
        newest = self._newest_window_ns()
        if newest is None:
            return None
        lo = newest - self.window.horizon_ns + self.window.window_ns
        return lo if self.current_start_ns is None else max(lo, self.current_start_ns)

    def current(self) -> ModelProfile:
        """The trailing horizon ending with the newest window (which may still be filling), merged.

        The merge of the settled windows (those the watermark has passed) is kept between calls and redone only
        when that set or one of its windows changes, so an evaluation merges ~3 profiles per feature, not one
        per window of the horizon."""
        out = ModelProfile(self.model, self.version, self.sketch)
        lo = self.horizon_start_ns()
        if lo is None:
            return out
        wm = self.watermark_ns() or 0
        starts = sorted(s for s in self.windows if s >= lo)
        settled = tuple((s, self._changed_at.get(s, 0)) for s in starts if s + self.window.window_ns <= wm)
        if self._settled is None or self._settled[0] != settled:
            merged = ModelProfile(self.model, self.version, self.sketch)
            for start, _ in settled:
                merged.merge(self.windows[start], segments=False)
            parts = [c for c in (self.windows[s].segments for s, _ in settled) if c is not None]
            merged.segments = SegmentCounts.merged(parts) if parts else None
            self._settled = (settled, merged)
        out.merge(self._settled[1])
        for start in starts[len(settled):]:
            out.merge(self.windows[start])
        return out


def _name_ignored_keys(wp: WindowedProfile, keys: list[str]) -> None:
    """Log, once each, the ``ml.segment.<key>`` keys a model's spans carry that it is not segmented by (at most
    ``MAX_SEGMENT_KEYS``, fixed by its first spans or the config): the limit is documented, the silence was not."""
    assert wp.segmented is not None
    ignored = sorted(set(keys) - set(wp.segmented.by) - wp.ignored_segment_keys)
    if ignored:
        wp.ignored_segment_keys.update(ignored)
        log.warning("model %r version %r: segment key(s) %s (ml.segment.*) not segmented by: this model is segmented "
                    "by %s (at most %d keys, the first by name, fixed by its first spans)", wp.model, wp.version,
                    ", ".join(ignored), ", ".join(wp.segmented.by), MAX_SEGMENT_KEYS)
