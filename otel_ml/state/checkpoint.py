"""Checkpoints and recovery: the live window sets to a ``Checkpoint`` and back (local state, local.py).

The journal (journal.py) makes every applied request durable. A checkpoint writes the state as of a journal
sequence number so that recovery replays only the journal after it: each window set without its windows (one
JSON document, with the counters and what the backend keeps beside: lifecycle, labels, Kafka offsets), the
windows that changed since the previous checkpoint (one row each, so a settled window is written once),
deletions for windows that left memory, and those windows again for the archive.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import SketchConfig
from otel_ml.profile.window import WindowChanges, WindowConfig, WindowedProfile
from otel_ml.sealed import Loss, opened, seal
from otel_ml.state.archive import ArchiveRow, window_row
from otel_ml.state.journal import DB_FILE, Checkpoint, Journal

STATE_FORMAT_VERSION = 2


@dataclass
class Recovered:
    """What ``StateStore.recover`` found: the checkpoint's models and counters, and the journal after it."""

    models: list[WindowedProfile]
    counter_totals: list
    """As the checkpoint stored them (``MetricsExporter.counter_totals``)."""
    seq: int
    """The journal sequence number the checkpoint includes."""
    journal: Iterator[tuple[int, bytes]]
    """(seq, payload) of every journaled request after the checkpoint, to apply in order."""
    service: dict
    """What the service stored beside its models (``capture``'s ``service``), empty when none."""
    losses: list[Loss] = field(default_factory=list)
    """What could not be used (a damaged checkpoint, damaged windows), each said and counted by the caller."""


class StateStore:
    """Turns window sets into checkpoints and back. ``window_options`` are the keyword arguments the live models
    create their ``WindowedProfile``s with (recovered ones get the same)."""

    def __init__(self, journal: Journal, window: WindowConfig, sketch: SketchConfig,
                 window_options: dict[str, int]) -> None:
        self.journal = journal
        self.window = window
        self.sketch = sketch
        self.window_options = window_options
        self._archive_pending: list[ArchiveRow] = []
        """Windows that left memory and are not archived yet: kept until a checkpoint writing them succeeds."""
        self._released: list[WindowChanges] = []
        """Changes of released window sets not written yet (their stored windows are deleted by the next one)."""
        self._pending_lock = threading.Lock()

    def recover(self) -> Recovered:
        """Open the state and load the checkpoint, verifying every blob: a damaged checkpoint makes the database
        unusable (quarantined, started empty), a damaged window is dropped; each loss is in ``losses``."""
        state, seq, journal = self.journal.open()
        losses = self.journal.losses
        if state is None:
            return Recovered([], [], seq, journal, {}, list(losses))
        try:
            data = json.loads(opened(state, "checkpoint"))
            data["models"], data["totals"]
        except (ValueError, KeyError, TypeError) as e:
            self.journal.discard(f"its checkpoint is damaged ({e})", self.journal._earlier_run_files())
            state, seq, journal = self.journal.open()
            return Recovered([], [], seq, journal, {}, list(self.journal.losses))
        stored: dict[tuple[str, str], dict[int, ModelProfile]] = {}
        for model, version, start, blob in list(self.journal.window_rows()):
            try:
                stored.setdefault((model, version), {})[start] = ModelProfile.from_json(blob)
            except ValueError as e:
                self.journal.delete_window(model, version, start)
                losses.append(Loss("window", f"{DB_FILE}: window {model}/{version}@{start}", 0,
                                   f"window of model {model!r} version {version!r} starting at {start} ns is damaged "
                                   f"({e}): its rows are lost"))
        models = [WindowedProfile.from_state(s, stored.get((s["model"], s["version"]), {}), self.window,
                                             self.sketch, **self.window_options) for s in data["models"]]
        return Recovered(models, data["totals"], seq, journal, data.get("service", {}), list(losses))

    def capture(self, models: Iterable[WindowedProfile], released: list[WindowChanges], counter_totals: list,
                seq: int, service: dict | None = None) -> tuple[Checkpoint, list[WindowChanges]]:
        """The checkpoint of ``models`` (and of the window sets ``released`` since the last one: their last
        changes, ``WindowedProfile.close``) as of journal ``seq``, with ``service``, what the backend keeps
        beside (JSON-ready); and the changes it took (``give_back`` them if it cannot be written). Call under the
        lock that guards the models."""
        models = list(models)
        changes = [wp.take_changes() for wp in models]
        window_ns = self.window.window_ns
        with self._pending_lock:
            changes += self._released + released
            self._released = []
            for c in changes:
                self._archive_pending.extend(window_row(start, window_ns, w) for start, w in c.evicted)
            archive_rows = list(self._archive_pending)
        state = {
            "format_version": STATE_FORMAT_VERSION,
            "models": [wp.to_state() for wp in models],
            "totals": counter_totals,
            "service": service or {},
        }
        newest = max((wp.newest_event_ns for wp in models if wp.newest_event_ns), default=None)
        return Checkpoint(
            seq=seq, state=seal(json.dumps(state).encode()),
            window_upserts=[(c.model, c.version, start, seal(blob)) for c in changes
                            for start, blob in c.changed.items()],
            window_deletes=[(c.model, c.version, start) for c in changes for start in c.removed],
            archive_rows=archive_rows, archive_now_ns=newest), changes

    def write(self, checkpoint: Checkpoint) -> None:
        """Write a captured checkpoint; raises StorageError (or TimeoutError) when it could not be."""
        self.journal.checkpoint(checkpoint)
        with self._pending_lock:  # archived now; rows that left memory since stay pending
            del self._archive_pending[:len(checkpoint.archive_rows)]

    def give_back(self, models: dict[tuple[str, str], WindowedProfile], changes: list[WindowChanges]) -> None:
        """After a failed ``write``: the next checkpoint writes these windows again. Call under the models' lock."""
        for c in changes:
            wp = models.get((c.model, c.version))
            if wp is not None:
                wp.restore_changes(c)
            else:  # released since: its stored windows must still be deleted (its evicted ones are pending)
                with self._pending_lock:
                    self._released.append(dataclasses.replace(c, changed={}, evicted=[]))


