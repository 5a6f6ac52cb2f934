"""Where windows live when processors share models (Kafka in shared mode): one window set per Kafka partition,
merged for evaluation.

A partition's windows are always the result of a *prefix* of that partition's messages, up to its ``offset``.
Prefix states of different partitions can be merged without counting a row twice (each row is in exactly one
partition), and a partition's consumption resumes just past the offset of whatever state is held for it. That
is what makes ownership changes safe: whoever takes a partition over continues from the state it has (its own,
or the latest one its previous owner published to the changelog, store/changelog.py), never from a mix.

A partition's state travels as records (key, value): ``["m", model, version]`` → the window set's
``to_state()``, ``["w", model, version, start]`` → one window's ``ModelProfile.to_json()``, ``None`` for a
deleted one, and last ``["p"]`` → ``{"offset": ...}``, which closes a publication.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import SketchConfig
from otel_ml.profile.window import WindowChanges, WindowConfig, WindowedProfile

Key = tuple[str, str]
Record = tuple[list, bytes | None]


def exporting_partition(model: str, partitions: int) -> int:
    """The partition whose owner evaluates and exports ``model`` (every replica computes the same; a stable hash,
    not Python's per-process ``hash``).

    >>> exporting_partition("fraud", 6) == exporting_partition("fraud", 6) < 6
    True
    """
    # not crc32: names differing in their last character ("model-1", "model-2") land on the same crc32 residues
    return int.from_bytes(hashlib.blake2b(model.encode(), digest_size=8).digest(), "big") % partitions


def encode_key(key: list) -> bytes:
    return json.dumps(key, separators=(",", ":")).encode()


@dataclass
class PartitionState:
    """One partition's windows per (model, version), as of ``offset`` (the newest message applied; -1: none)."""

    offset: int = -1
    caught_up: bool = False
    """Everything written to the partition had been read (when ``offset`` was): it holds no older data back."""
    models: dict[Key, WindowedProfile] = field(default_factory=dict)
    dropped: dict[Key, list[int]] = field(default_factory=dict)
    """(model, version)s dropped since the last successful publication, with the windows their records hold."""


class PartitionedWindows:
    """Every partition's window sets (owned ones updated here, the others replaced from the changelog), and
    their merge per (model, version).

    >>> import numpy as np
    >>> cfg = WindowConfig(window_seconds=1, horizon_seconds=2, allowed_lateness_seconds=0, reference_min_rows=2)
    >>> pw = PartitionedWindows(cfg, SketchConfig())
    >>> def batch(t):
    ...     return ColumnarBatch("m", "", 1, np.array([t * 10**9]), np.ones(1), numeric={"x": np.array([float(t)])},
    ...                          span_end_ns=np.array([t * 10**9]), span_duration_s=np.array([0.01]),
    ...                          span_error=np.array([False]))
    >>> for t in range(6):
    ...     _ = pw.update(t % 2, t, [batch(t)])   # two partitions, each a share of model "m"
    >>> pw.parts[0].caught_up = pw.parts[1].caught_up = True   # both read to their end
    >>> [pw.parts[p].models["m", ""].predictions for p in (0, 1)]
    [3.0, 3.0]
    >>> merged = pw.merged(("m", ""), pw.watermark_ns(2))
    >>> merged.reference.rows, merged.current().rows, merged.predictions
    (2, 2, 6.0)
    """

    def __init__(self, window: WindowConfig, sketch: SketchConfig, options: dict | None = None,
                 prepare: Callable[[WindowedProfile], None] = lambda wp: None) -> None:
        self.window = window
        self.sketch = sketch
        self.options = dict(options or {})
        self.prepare = prepare
        """Called on every window set created (here or from the changelog): attaches the model's reference."""
        self.parts: dict[int, PartitionState] = {}

    def _new(self, model: str, version: str, partial: bool) -> WindowedProfile:
        wp = WindowedProfile(model, version, self.window, self.sketch, pin_reference=not partial, **self.options)
        self.prepare(wp)
        return wp

    # --- owned partitions ----------------------------------------------------------------------------
    def update(self, partition: int, offset: int, batches: Iterable[ColumnarBatch]) -> dict[Key, int]:
        """Apply one message's batches; returns the rows dropped as late per (model, version)."""
        state = self.parts.setdefault(partition, PartitionState())
        late: dict[Key, int] = {}
        for batch in batches:
            wp = state.models.get(batch.key)
            if wp is None:
                wp = state.models[batch.key] = self._new(batch.model, batch.version, partial=True)
                state.dropped.pop(batch.key, None)
            late[batch.key] = late.get(batch.key, 0) + wp.update(batch)
        state.offset = max(state.offset, offset)
        return late

    def drop_idle(self, partition: int, idle_ns: int) -> list[Key]:
        """Drop the window sets of (model, version)s without data for ``idle_ns`` of this partition's event time."""
        state = self.parts.get(partition)
        if state is None or not state.models:
            return []
        clock = max(wp.newest_event_ns or 0 for wp in state.models.values())
        gone = [k for k, wp in state.models.items() if (wp.newest_event_ns or 0) < clock - idle_ns]
        for key in gone:
            state.dropped[key] = sorted(state.models.pop(key).close().removed)
        return gone

    def take_records(self, partition: int) -> tuple[list[Record], list[tuple[WindowedProfile, WindowChanges]]]:
        """What changed in ``partition`` since its last publication, as changelog records closed by its offset
        record; and the changes taken, for ``give_back`` if they could not be published."""
        state = self.parts.get(partition)
        if state is None:
            return [], []
        records: list[Record] = []
        taken = []
        for (model, version), starts in state.dropped.items():
            records += [(["w", model, version, s], None) for s in starts]
            records.append((["m", model, version], None))
        for (model, version), wp in state.models.items():
            changes = wp.take_changes()
            if not (changes.changed or changes.removed):
                continue
            taken.append((wp, changes))
            meta = wp.to_state()
            meta.pop("pinned_reference", None)  # a partial set pins nothing; the merge's reference has its record
            records.append((["m", model, version], json.dumps(meta).encode()))
            records += [(["w", model, version, s], v) for s, v in changes.changed.items()]
            records += [(["w", model, version, s], None) for s in changes.removed]
        records.append((["p"], json.dumps({"offset": state.offset, "caught_up": state.caught_up}).encode()))
        return records, taken

    @staticmethod
    def give_back(taken: list[tuple[WindowedProfile, WindowChanges]]) -> None:
        """A publication failed: what it held is published next time (dropped sets stay until ``published``)."""
        for wp, changes in taken:
            wp.restore_changes(changes)

    def published(self, partition: int) -> None:
        state = self.parts.get(partition)
        if state is not None:
            state.dropped.clear()

    # --- partitions owned elsewhere ------------------------------------------------------------------
    def apply_records(self, partition: int, records: list[Record]) -> None:
        """One publication of ``partition`` from the changelog (or all of them, replayed from its start), applied
        as one: meta records first, then windows, then the offset."""
        state = self.parts.setdefault(partition, PartitionState())
        touched: set[Key] = set()
        for key, value in records:
            if key[0] != "m":
                continue
            mv = (key[1], key[2])
            if value is None:
                state.models.pop(mv, None)
                continue
            meta = json.loads(value)
            wp = state.models.get(mv)
            if wp is None:
                wp = state.models[mv] = self._new(key[1], key[2], partial=True)
            wp.kinds.update(meta["kinds"])
            wp.first_window_ns, wp.newest_event_ns = meta["first_window_ns"], meta["newest_event_ns"]
            wp.current_start_ns = meta["current_start_ns"] if wp.current_start_ns is None else max(
                wp.current_start_ns, meta["current_start_ns"] or 0)
            wp.predictions = float(meta.get("predictions", 0.0))
        for key, value in records:
            if key[0] != "w":
                continue
            wp = state.models.get((key[1], key[2]))
            if wp is None:  # its model's record was deleted after this window's
                continue
            if value is None:
                wp.windows.pop(int(key[3]), None)
            else:
                wp.windows[int(key[3])] = ModelProfile.from_json(value)
            touched.add((key[1], key[2]))
        for mv in touched:
            wp = state.models[mv]
            wp.adopt_window_grids()
            wp.take_changes()  # what came from the changelog is published already
        for key, value in records:
            if key[0] == "p" and value is not None:
                offset = json.loads(value)
                state.offset, state.caught_up = int(offset["offset"]), bool(offset.get("caught_up", False))

    # --- the merge ------------------------------------------------------------------------------------
    def model_keys(self) -> set[Key]:
        return {k for state in self.parts.values() for k in state.models}

    def watermark_ns(self, partitions: int) -> int | None:
        """The watermark of the whole topic: the newest event minus the allowed lateness, but no later than the
        newest event of any partition still being read (its older rows may be next): a partition read to its end
        (``caught_up``) holds nothing back, however old its last row. None while a partition has no state yet or
        one still being read has no rows yet."""
        if any(p not in self.parts for p in range(partitions)):
            return None
        clocks = {p: max((wp.newest_event_ns or 0 for wp in state.models.values()), default=None)
                  for p, state in self.parts.items()}
        behind = [clocks[p] for p, state in self.parts.items() if not state.caught_up]
        newest = [c for c in clocks.values() if c is not None]
        if None in behind or not newest:
            return None
        return (min(behind) if behind else max(newest)) - self.window.lateness_ns  # type: ignore[type-var]

    def merged(self, key: Key, watermark_ns: int | None = None) -> WindowedProfile | None:
        """Every partition's windows of ``key`` merged into one window set (reference attached by ``prepare``).
        Without a reference, it pins one once ``watermark_ns`` (``watermark_ns(partitions)``: every partition's
        data has passed it) has passed the first horizon, so that no partition's rows of that horizon are still to
        come. None when no partition has the model."""
        parts = [state.models[key] for state in self.parts.values() if key in state.models]
        parts = [wp for wp in parts if wp.newest_event_ns is not None]
        if not parts:
            return None
        wp = self._new(*key, partial=False)
        for part in parts:
            for name, kind in part.kinds.items():
                wp.kinds.setdefault(name, kind)
            if part.current_start_ns is not None:
                wp.current_start_ns = max(wp.current_start_ns or 0, part.current_start_ns)
        wp.newest_event_ns = max(p.newest_event_ns for p in parts)  # type: ignore[type-var]
        wp.first_window_ns = min(p.first_window_ns for p in parts if p.first_window_ns is not None)
        wp.predictions = sum(p.predictions for p in parts)
        lo = wp.horizon_start_ns() if wp.reference is not None else None  # only the current horizon is needed
        for part in parts:
            for start, window in part.windows.items():
                if lo is not None and start < lo:
                    continue
                into = wp.windows.get(start)
                if into is None:
                    into = wp.windows[start] = ModelProfile(key[0], key[1], self.sketch)
                into.merge(window)
        if wp.reference is None and watermark_ns is not None:
            wp.maybe_pin(watermark_ns)
        return wp
