"""Checkpoints and recovery: the processor's in-memory state to a ``Checkpoint`` and back.

The service keeps its models (``WindowedProfile``) and counter totals in memory; the journal
(store/journal.py) makes every applied request durable. A checkpoint writes the state as of a journal
sequence number so that recovery replays only the journal after it: each model without its windows (one
JSON document), the windows that changed since the previous checkpoint (one row each, so a settled window is
written once), deletions for windows that left memory, and those windows again for the archive.

A Kafka source (a later change) will add its partition offsets to the same checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import SketchConfig
from otel_ml.profile.window import WindowChanges, WindowConfig, WindowedProfile
from otel_ml.store.archive import ArchiveRow, window_row
from otel_ml.store.journal import DB_FILE, Checkpoint, Journal

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


class StateStore:
    """Turns the service's models into checkpoints and back. ``window_options`` are the keyword arguments the
    service creates its ``WindowedProfile``s with (recovered models get the same)."""

    def __init__(self, journal: Journal, window: WindowConfig, sketch: SketchConfig,
                 window_options: dict[str, int]) -> None:
        self.journal = journal
        self.window = window
        self.sketch = sketch
        self.window_options = window_options
        self._archive_pending: list[ArchiveRow] = []
        """Windows that left memory and are not archived yet: kept until a checkpoint writing them succeeds."""
        self._released: list[WindowChanges] = []
        """The last changes of released models (their stored windows are deleted by the next checkpoint)."""
        self._pending_lock = threading.Lock()

    def recover(self) -> Recovered:
        """Open the state (quarantining an unreadable file) and load the checkpoint."""
        state, seq, journal = self.journal.open()
        if state is None:
            return Recovered([], [], seq, journal, {})
        data = json.loads(state)
        stored: dict[tuple[str, str], dict[int, ModelProfile]] = {}
        for model, version, start, blob in self.journal.window_rows():
            stored.setdefault((model, version), {})[start] = ModelProfile.from_json(blob)
        models = [WindowedProfile.from_state(s, stored.get((s["model"], s["version"]), {}), self.window,
                                             self.sketch, **self.window_options) for s in data["models"]]
        return Recovered(models, data["totals"], seq, journal, data.get("service", {}))

    def released(self, changes: WindowChanges) -> None:
        """A released model's last changes (``WindowedProfile.close``): written by the next checkpoint."""
        with self._pending_lock:
            self._released.append(changes)

    def capture(self, models: Iterable[WindowedProfile], counter_totals: list, seq: int,
                service: dict | None = None) -> tuple[Checkpoint, list[WindowChanges]]:
        """The checkpoint of ``models`` as of journal ``seq`` (with ``service``, the service's own JSON-ready
        state), and the changes it took (``give_back`` them if it cannot be written). Call under the lock that
        guards the models."""
        models = list(models)
        changes = [wp.take_changes() for wp in models]
        window_ns = self.window.window_ns
        with self._pending_lock:
            changes += self._released
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
            seq=seq, state=json.dumps(state).encode(),
            window_upserts=[(c.model, c.version, start, blob) for c in changes for start, blob in c.changed.items()],
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


def live_window_ns(conn: sqlite3.Connection) -> int | None:
    """The window length the last checkpoint was written with (None before the first, or from an older version)."""
    row = conn.execute("SELECT state FROM checkpoint WHERE id = 1").fetchone()
    return json.loads(row[0]).get("service", {}).get("window_ns") if row else None


def open_read_only(state_dir: str | Path) -> sqlite3.Connection:
    """The state database of ``state_dir``, read-only (the processor may be running), for the offline commands."""
    db = Path(state_dir) / DB_FILE
    if not db.exists():
        raise FileNotFoundError(f"{db} does not exist (no state written there yet?)")
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def models_in_checkpoint(conn: sqlite3.Connection) -> tuple[int, list[dict]]:
    """What the last checkpoint says about each (model, version): (event clock, rows). Each row: model, version,
    status (live or released), idle_seconds (live: event time since its last data; released: since the release),
    reference (pinned or not_pinned: a baseline file is not recorded here), rows (in its live windows)."""
    row = conn.execute("SELECT state FROM checkpoint WHERE id = 1").fetchone()
    if row is None:
        return 0, []
    state = json.loads(row[0])
    rows: dict[tuple[str, str], int] = {}
    for model, version, blob in conn.execute("SELECT model, version, profile FROM window_state"):
        rows[(model, version)] = rows.get((model, version), 0) + int(json.loads(blob)["rows"])
    life = state.get("service", {}).get("lifecycle", {})
    clock = int(life.get("clock_ns", 0))
    last_active = {(m, v): t for m, v, t in life.get("last_active", [])}
    out = [{"model": s["model"], "version": s["version"], "status": "live",
            "idle_seconds": (clock - last_active.get((s["model"], s["version"]), clock)) / 1e9,
            "reference": "pinned" if s.get("pinned_reference") else "not_pinned",
            "rows": rows.get((s["model"], s["version"]), 0)} for s in state["models"]]
    out += [{"model": m, "version": v, "status": "released", "idle_seconds": (clock - t) / 1e9,
             "reference": "", "rows": 0} for m, v, t in life.get("released", [])]
    return clock, sorted(out, key=lambda r: (r["model"], r["version"]))
