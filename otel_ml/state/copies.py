"""Shared Kafka mode: the windows of partitions this replica does not own, for the models it exports.

To export a model, a replica merges every partition's windows of it, but it owns only some partitions. Holding
the others' windows in memory would cost each replica ``(owned + exported × others) / partitions`` of everything:
5/9 with 3 replicas over 6 partitions, no matter how many replicas are added. So they are kept on disk, as their
owners published them (a cache of the changelog, rebuilt from it at every start), and memory holds only one merge
per model and window start of all of them, rebuilt when a publication changed one of its parts: with 3 replicas a
replica holds its own third of the windows plus 1/6 of each exported model's (issue 28: memory scales out).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import defaultdict
from pathlib import Path

from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import SketchConfig
from otel_ml.sealed import Damaged, opened, seal

log = logging.getLogger(__name__)

Key = tuple[str, str]

COPIES_FILE = "window-copies.db"
"""In the state directory; deleted at start (the changelog holds everything it holds)."""


class WindowCopies:
    """Windows of other partitions, on disk, merged per (model, version) and window start on demand.

    >>> import tempfile
    >>> import numpy as np
    >>> from otel_ml.decode.batch import ColumnarBatch
    >>> def window(*values):
    ...     p = ModelProfile("m", "")
    ...     n = len(values)
    ...     p.update(ColumnarBatch("m", "", n, np.zeros(n, np.int64), np.ones(n),
    ...                            numeric={"x": np.array(values, float)}, span_end_ns=np.zeros(n, np.int64),
    ...                            span_duration_s=np.zeros(n), span_error=np.zeros(n, bool)), {"x": "numeric"})
    ...     return p.to_json().encode()
    >>> copies = WindowCopies(Path(tempfile.mkdtemp()) / COPIES_FILE)
    >>> copies.put(1, "m", "", 0, window(1.0, 2.0))
    >>> copies.put(2, "m", "", 0, window(3.0))
    >>> copies.windows(("m", ""))[0].rows
    3
    >>> copies.put(1, "m", "", 0, window(1.0, 2.0, 5.0))   # partition 1 published that window again
    >>> copies.windows(("m", ""))[0].rows
    4
    >>> copies.drop(2)
    >>> copies.windows(("m", ""))[0].rows
    3
    """

    def __init__(self, path: Path, sketch: SketchConfig | None = None) -> None:
        self.sketch = sketch or SketchConfig()
        path.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        # A cache of the changelog: no fsync (a crash loses nothing the changelog does not hold).
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE copies (partition INTEGER NOT NULL, model TEXT NOT NULL, version TEXT NOT "
                         "NULL, start_ns INTEGER NOT NULL, profile BLOB NOT NULL, "
                         "PRIMARY KEY (model, version, start_ns, partition))")
        self._lock = threading.Lock()
        self._merged: dict[Key, dict[int, ModelProfile]] = {}
        self._stale: defaultdict[Key, set[int]] = defaultdict(set)
        """Window starts whose merge a put or drop changed since it was last built."""

    def put(self, partition: int, model: str, version: str, start_ns: int, profile: bytes | None) -> None:
        """A window of ``partition`` as its owner published it (``ModelProfile.to_json()``; None: deleted)."""
        with self._lock:
            if profile is None:
                self._db.execute("DELETE FROM copies WHERE partition = ? AND model = ? AND version = ? AND "
                                 "start_ns = ?", (partition, model, version, start_ns))
            else:
                self._db.execute("INSERT OR REPLACE INTO copies VALUES (?, ?, ?, ?, ?)",
                                 (partition, model, version, start_ns, seal(profile)))
            self._stale[model, version].add(start_ns)

    def drop(self, partition: int, key: Key | None = None) -> None:
        """Forget a partition's windows (this replica owns it now, or no longer exports its models), or one
        (model, version)'s of it (released by its owner)."""
        where, args = "partition = ?", [partition]
        if key is not None:
            where, args = where + " AND model = ? AND version = ?", [partition, *key]
        with self._lock:
            for model, version, start in self._db.execute(
                    f"SELECT model, version, start_ns FROM copies WHERE {where}", args).fetchall():
                self._stale[model, version].add(start)
            self._db.execute(f"DELETE FROM copies WHERE {where}", args)

    def keep_models(self, keep: set[Key]) -> None:
        """Forget every (model, version) not in ``keep`` (models this replica no longer exports)."""
        with self._lock:
            for model, version in self._db.execute("SELECT DISTINCT model, version FROM copies").fetchall():
                if (model, version) not in keep:
                    self._db.execute("DELETE FROM copies WHERE model = ? AND version = ?", (model, version))
            for key in [k for k in self._merged if k not in keep]:
                del self._merged[key]
            for key in [k for k in self._stale if k not in keep]:
                del self._stale[key]

    def windows(self, key: Key) -> dict[int, ModelProfile]:
        """Window start → the merge of every held partition's window of ``key`` (do not modify them)."""
        with self._lock:
            merged = self._merged.setdefault(key, {})
            for start in self._stale.pop(key, ()):
                into = None
                for partition, blob in self._db.execute(
                        "SELECT partition, profile FROM copies WHERE model = ? AND version = ? AND start_ns = ?",
                        (*key, start)).fetchall():
                    try:
                        window = ModelProfile.from_json(opened(blob, f"partition {partition}'s window copy"))
                    except Damaged as e:  # the changelog still has it: the next publication of it replaces it
                        log.error("%s; left out of model %r's merge until published again", e, key[0])
                        continue
                    if into is None:
                        into = ModelProfile(key[0], key[1], self.sketch)
                    into.merge(window)
                if into is None:
                    merged.pop(start, None)
                else:
                    into.compact()  # read, never written: its sketches serialized (~4x smaller, like settled windows)
                    merged[start] = into
            if not merged:
                del self._merged[key]
            return merged

    def close(self) -> None:
        with self._lock:
            self._db.close()
