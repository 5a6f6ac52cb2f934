"""Durable state: a journal of applied requests (append-only files, request_log.py) plus periodic checkpoints
in SQLite (WAL mode).

Why this shape: an OTLP Export may be answered OK only once its effect survives ``kill -9``, and its effect
must be in memory only if it was answered OK (a refused request is retried; had it been applied, it would
count twice). Writing what the request added (its decoded columns, ``DecodeResult.to_bytes``; the service
decides the payload) is far cheaper than writing the sketches it changed, so each payload is appended to the
journal and committed, several per fsync when they arrive together (group commit, one writer thread), and
only then applied, by the writer thread in sequence order (``append``'s ``apply``), before the sender is
answered. Sequence numbers are given at commit, so they are exactly the committed payloads in the order they
were applied: a replay of the journal rebuilds the same state. Every ``checkpoint_interval`` the in-memory
state is written with the sequence number it includes, and the journal up to there is deleted. Recovery
loads the checkpoint and applies the journal after it.

A failed write (disk full, read-only file system, I/O error) raises ``StorageError`` to every waiter of that
commit: nothing of it was applied, and the next write tries again, so the journal recovers by itself when the
cause goes away.

The records go to append-only files (request_log.py: written once, deleted a file at a time), everything that
changes in place to SQLite from the standard library: one file, atomic transactions, WAL for concurrent reads,
nothing to install. (Records of a journal written into the database's ``journal`` table by an earlier otel-ml are
replayed, then deleted by the first checkpoint.) Every blob in it is sealed (otel_ml/sealed.py) by whoever writes
it. A database that cannot be read, or an empty (or missing) one beside an earlier run's files, is damage: it is
moved to ``quarantine/`` with them (the journal's files included) and the processor starts empty, saying exactly
what it dropped (``losses``), rather than failing to start, starting silently with less, or loading garbage.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from otel_ml.sealed import Loss, quarantine
from otel_ml.state import archive
from otel_ml.state.archive import ArchiveConfig, ArchiveRow
from otel_ml.state.database import DB_FILE, SCHEMA
from otel_ml.state.request_log import RequestLog

log = logging.getLogger(__name__)



class StateCorrupted(RuntimeError):
    pass


class StorageError(Exception):
    """The state could not be written (``op``: "journal" or "checkpoint"); nothing of that write took effect."""

    def __init__(self, op: str, cause: BaseException) -> None:
        super().__init__(f"{op} write failed: {type(cause).__name__}: {cause}")
        self.op = op
        self.cause = cause


@dataclass
class _Write:
    payload: bytes | memoryview
    apply: Callable[[int], None]
    done: threading.Event
    seq: int = 0
    error: BaseException | None = None




@dataclass
class Checkpoint:
    """Everything one checkpoint writes, in one transaction."""

    seq: int
    """The newest journal sequence number the state includes: the journal up to it is deleted."""
    state: bytes
    """The processor's state without its windows (store/state.py makes it)."""
    window_upserts: list[tuple[str, str, int, bytes]] = field(default_factory=list)
    """(model, version, window start, profile) of every window changed since the previous checkpoint."""
    window_deletes: list[tuple[str, str, int]] = field(default_factory=list)
    """(model, version, window start) of the windows gone from memory since then."""
    archive_rows: list[ArchiveRow] = field(default_factory=list)
    """Those gone windows, for the archive."""
    performance_upserts: list[tuple[str, str, int, bytes]] = field(default_factory=list)
    """(model, version, window start, performance profile) changed since the previous checkpoint."""
    performance_deletes: list[tuple[str, str, int]] = field(default_factory=list)
    performance_archive: list[tuple[str, str, int, int, bytes]] = field(default_factory=list)
    """(model, version, start, end, performance profile): windows that left the performance horizon and deltas of
    archived ones (labels that came later), merged into ``performance_archive``."""
    archive_now_ns: int | None = None
    """Compact the archive as of this time (the newest event of any model); None: do not compact."""


@dataclass
class _Checkpoint:
    checkpoint: Checkpoint
    done: threading.Event
    error: BaseException | None = None


class Journal:
    """Append-only request journal with checkpoints. ``append`` returns once the payload is durable."""

    def __init__(self, state_dir: str | Path, max_batch: int = 256,
                 archive_config: ArchiveConfig | None = None) -> None:
        self.path = Path(state_dir) / DB_FILE
        self.archive_config = archive_config or ArchiveConfig()
        self.max_batch = max_batch
        self._queue: queue.Queue[_Write | _Checkpoint | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self.log: RequestLog | None = None
        """The records' files (set by ``open``)."""
        self._seq = 0  # the newest committed sequence number; the writer thread moves it
        self.commits = 0
        self.appended = 0
        self.losses: list[Loss] = []
        """What ``open`` had to drop."""

    # --- lifecycle -------------------------------------------------------------------------------
    def open(self) -> tuple[bytes | None, int, Iterator[tuple[int, bytes]]]:
        """Open (quarantining a damaged database); returns (checkpoint state or None, its seq, journal after it)."""
        earlier = self._earlier_run_files()
        if earlier and (not self.path.exists() or self.path.stat().st_size == 0):
            self.discard(f"{'empty (zero bytes)' if self.path.exists() else 'missing'}, while the state directory "
                         f"holds an earlier run's files ({', '.join(sorted({p.parent.name for p in earlier}))}/)",
                         earlier)
        try:
            return self._open()
        except (sqlite3.DatabaseError, StateCorrupted) as e:
            self.discard(f"unreadable ({e})", earlier)
            return self._open()

    def _earlier_run_files(self) -> list[Path]:
        """Files only a run that had a database writes (waiting predictions, journal records)."""
        dirs = [self.path.parent / "pending", self.path.parent / "journal"]
        return sorted(p for d in dirs if d.is_dir() for p in d.iterdir() if p.is_file())

    def discard(self, why: str, also: list[Path] = ()) -> None:  # type: ignore[assignment]
        """Move the database (and ``also``: files that only made sense with it) to quarantine/, and note the loss:
        the windows, counters, waiting predictions and Kafka offsets it held."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.log is not None:
            self.log.close()
            also = [*also, *(f for f in self.log.files() if f not in also)]
            self.log = None
        moved = [quarantine(Path(str(self.path) + suffix), self.path.parent) for suffix in ("", "-wal", "-shm")]
        for f in also:
            quarantine(f, self.path.parent)
        where = next((m for m in moved if m is not None), None)
        self.losses.append(Loss("database", self.path.name, 0, f"{why}: every live window, counter, waiting "
                                f"prediction and Kafka offset it held is lost; started empty"
                                + (f" (moved to {where.parent})" if where is not None else "")))

    def delete_window(self, model: str, version: str, start_ns: int) -> None:
        """Drop a stored window that cannot be read (call after ``open``, before ``start``)."""
        assert self._conn is not None
        self._conn.execute("DELETE FROM window_state WHERE model=? AND version=? AND start_ns=?",
                           (model, version, start_ns))

    def _open(self) -> tuple[bytes | None, int, Iterator[tuple[int, bytes]]]:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA + archive.SCHEMA)
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StateCorrupted(f"quick_check: {check}")
        row = conn.execute("SELECT seq, state FROM checkpoint WHERE id = 1").fetchone()
        cp_seq, state = (int(row[0]), bytes(row[1])) if row else (0, None)
        identity = conn.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
        if identity is None:
            identity = (uuid.uuid4().hex,)
            conn.execute("INSERT INTO meta (key, value) VALUES ('identity', ?)", identity)
        if self.log is not None:
            self.log.close()
        self.log = RequestLog(self.path.parent / "journal", identity[0])
        last_file = self.log.open()
        self.losses += self.log.losses
        last = conn.execute("SELECT MAX(seq) FROM journal").fetchone()[0]  # an earlier otel-ml's records
        self._seq = max(cp_seq, int(last or 0), last_file)
        log_records = self.log

        def replay() -> Iterator[tuple[int, bytes]]:
            for seq, payload in conn.execute("SELECT seq, payload FROM journal WHERE seq > ? ORDER BY seq",
                                             (cp_seq,)):
                yield int(seq), bytes(payload)
            yield from log_records.read(cp_seq)

        return state, cp_seq, replay()

    def window_rows(self) -> Iterator[tuple[str, str, int, bytes]]:
        """The stored windows (call after ``open``, before ``start``)."""
        assert self._conn is not None
        for model, version, start, blob in self._conn.execute("SELECT model, version, start_ns, profile FROM "
                                                              "window_state"):
            yield model, version, int(start), bytes(blob)

    def performance_rows(self) -> Iterator[tuple[str, str, int, bytes]]:
        """The stored performance windows (call after ``open``, before ``start``)."""
        assert self._conn is not None
        for model, version, start, blob in self._conn.execute("SELECT model, version, start_ns, profile FROM "
                                                              "performance_window"):
            yield model, version, int(start), bytes(blob)

    def start(self) -> None:
        self._writer = threading.Thread(target=self._write_loop, name="otel-ml-journal", daemon=True)
        self._writer.start()

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=30)
            self._writer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.log is not None:
            self.log.close()

    # --- writing ---------------------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        """The sequence number of the newest committed payload."""
        return self._seq

    def append(self, payload: bytes | memoryview, apply: Callable[[int], None], timeout: float = 30.0) -> int:
        """Commit ``payload`` to disk, then call ``apply(seq)`` (on the writer thread, in sequence order) and
        return ``seq``. Raises StorageError when the commit failed (``apply`` is not called), TimeoutError when
        the writer did not get to it in time (it may still commit and apply later), or what ``apply`` raised."""
        item = _Write(payload, apply, threading.Event())
        self._queue.put(item)
        if not item.done.wait(timeout):
            raise TimeoutError("journal write did not complete")
        if item.error is not None:
            raise item.error
        return item.seq

    def checkpoint(self, checkpoint: Checkpoint, timeout: float = 60.0) -> None:
        """Write ``checkpoint`` and drop the journal up to its ``seq``, in one transaction; raises StorageError
        when it could not be written (nothing of it was)."""
        item = _Checkpoint(checkpoint, threading.Event())
        self._queue.put(item)
        if not item.done.wait(timeout):
            raise TimeoutError("checkpoint did not complete")
        if item.error is not None:
            raise item.error

    def _write_loop(self) -> None:
        assert self._conn is not None and self.log is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            # Group commit: take whatever else is already waiting, up to max_batch.
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            writes = [it for it in batch if isinstance(it, _Write)]
            first_seq = self._seq
            for it in writes:
                self._seq += 1
                it.seq = self._seq
            try:
                self.log.append([(it.seq, it.payload) for it in writes])  # one sync for the group
            except Exception as e:  # disk full, I/O error: every waiter learns it, none is applied or acknowledged
                self._seq = first_seq  # nothing of these exists: the next commit reuses their numbers
                for it in writes:
                    it.error = StorageError("journal", e)
                    it.done.set()
                writes = []
            else:
                self.commits += bool(writes)
                self.appended += len(writes)
            # A checkpoint's state was taken before any of these writes was applied: its seq is below theirs.
            checkpoints = [it for it in batch if isinstance(it, _Checkpoint)]
            for it in checkpoints:
                try:
                    self._commit_checkpoint(it.checkpoint)
                except Exception as e:
                    it.error = StorageError("checkpoint", e)
            for it in writes:
                try:
                    it.apply(it.seq)
                except Exception as e:  # a bug: the record is durable and will be replayed; the sender learns
                    log.exception("applying journaled request %d failed", it.seq)
                    it.error = e
                it.done.set()
            for it in checkpoints:
                it.done.set()

    def _commit_checkpoint(self, cp: Checkpoint) -> None:
        """Write ``cp`` in one transaction; then the journal's files it includes go."""
        assert self._conn is not None and self.log is not None
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM journal WHERE seq <= ?", (cp.seq,))  # an earlier otel-ml's records
            conn.execute("INSERT OR REPLACE INTO checkpoint (id, seq, created, state) VALUES (1, ?, ?, ?)",
                         (cp.seq, time.time(), cp.state))
            conn.executemany("DELETE FROM window_state WHERE model=? AND version=? AND start_ns=?", cp.window_deletes)
            conn.executemany("INSERT OR REPLACE INTO window_state VALUES (?, ?, ?, ?)", cp.window_upserts)
            conn.executemany("DELETE FROM performance_window WHERE model=? AND version=? AND start_ns=?",
                             cp.performance_deletes)
            conn.executemany("INSERT OR REPLACE INTO performance_window VALUES (?, ?, ?, ?)", cp.performance_upserts)
            if self.archive_config.enabled:
                archive.insert(conn, cp.archive_rows)
                archive.insert(conn, (archive.ArchiveRow(m, v, s, e, "window", blob)
                                      for m, v, s, e, blob in cp.performance_archive), archive.PERFORMANCE)
                if cp.archive_now_ns is not None:
                    archive.compact(conn, cp.archive_now_ns, self.archive_config)
                    archive.compact(conn, cp.archive_now_ns, self.archive_config, archive.PERFORMANCE)
            conn.execute("COMMIT")
        except Exception:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        self.log.rotate()
        try:
            self.log.drop_through(cp.seq)
        except OSError as e:  # left for the next checkpoint; replay skips what the checkpoint includes
            log.warning("could not delete journal files up to %d: %s", cp.seq, e)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # shrinks the WAL; a failure only leaves it large
        except sqlite3.Error as e:
            log.warning("could not truncate the write-ahead log: %s", e)
