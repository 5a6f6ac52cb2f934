"""Archived windows: every window that leaves the horizon is kept, compacted by merging as it ages.

Windows are exact to merge (counts, moments, KLL and frequent-items sketches), so an hour made of sixty
one-minute windows is the profile of that hour; older data is kept at coarser resolution:

    age < raw_hours          the windows themselves
    age < hourly_days        one profile per hour
    age < retention_days     one profile per day
    older                    deleted

``otel-ml archive export`` merges any past range into one profile file: offline analysis without the raw
data, or a baseline pinned from last week's traffic.

Performance windows (labelled outcomes, probabilities: ``PerformanceProfile``) are archived the same way in a
table of their own, ``performance_archive``: a window that leaves the performance horizon is inserted whole, and a
label that arrives later for a prediction of an archived window is inserted as a *delta* (a profile of that label
alone) for the same slot, which ``insert`` merges into the row already there. One row per slot remains (bounded
bytes per model-window), and a label counts once because its delta is written in the same transaction as the
checkpoint that marks it joined (docs/state.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from otel_ml.profile.model import ModelProfile
from otel_ml.profile.performance import performance_blob, performance_profile
from otel_ml.sealed import seal
from otel_ml.state.database import DB_FILE
from otel_ml.state.database import SCHEMA as STATE_SCHEMA

NS = 1_000_000_000
HOUR_NS = 3600 * NS
DAY_NS = 24 * HOUR_NS

SCHEMA = """
CREATE TABLE IF NOT EXISTS archive (
    model TEXT NOT NULL, version TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    resolution TEXT NOT NULL, profile BLOB NOT NULL, PRIMARY KEY (model, version, start_ns, resolution));
CREATE INDEX IF NOT EXISTS archive_by_time ON archive (model, version, start_ns);
CREATE TABLE IF NOT EXISTS performance_archive (
    model TEXT NOT NULL, version TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    resolution TEXT NOT NULL, profile BLOB NOT NULL, PRIMARY KEY (model, version, start_ns, resolution));
"""


@dataclass(frozen=True)
class ArchiveConfig:
    enabled: bool = True
    raw_hours: float = 24.0
    """Windows younger than this (behind the newest data of their model) are kept as they are."""
    hourly_days: float = 7.0
    """Then one merged profile per hour, until this age."""
    retention_days: float = 90.0
    """Then one merged profile per day, until this age; older archives are deleted."""


class ArchiveRow(NamedTuple):
    """One row of the archive table, in its column order."""

    model: str
    version: str
    start_ns: int
    end_ns: int
    resolution: str
    """``window``, ``hour`` or ``day``."""
    profile: bytes
    """``ModelProfile.to_json()``, encoded."""


@dataclass(frozen=True)
class ArchiveTable:
    """One archive table: its name, and how its sealed profiles are read and written (both kinds of profile
    ``merge`` exactly)."""

    name: str
    load: Callable[[bytes], Any]
    dump: Callable[[Any], bytes]


DRIFT = ArchiveTable("archive", ModelProfile.from_json, lambda p: seal(p.to_json().encode()))
PERFORMANCE = ArchiveTable("performance_archive", performance_profile, performance_blob)


def window_row(start_ns: int, window_ns: int, profile: ModelProfile) -> ArchiveRow:
    return ArchiveRow(profile.model, profile.version, start_ns, start_ns + window_ns, "window",
                      seal(profile.to_json().encode()))


def insert(conn: sqlite3.Connection, rows: Iterable[ArchiveRow], table: ArchiveTable = DRIFT) -> None:
    """Insert (inside the caller's transaction); a second row for the same slot is merged into the first."""
    for row in rows:
        old = conn.execute(f"SELECT profile, end_ns FROM {table.name} WHERE model=? AND version=? AND start_ns=? "
                           "AND resolution=?", (row.model, row.version, row.start_ns, row.resolution)).fetchone()
        if old is not None:
            merged = table.load(old[0])
            merged.merge(table.load(row.profile))
            row = row._replace(profile=table.dump(merged), end_ns=max(int(old[1]), row.end_ns))
        conn.execute(f"INSERT OR REPLACE INTO {table.name} VALUES (?, ?, ?, ?, ?, ?)", row)


def compact(conn: sqlite3.Connection, now_ns: int, cfg: ArchiveConfig, table: ArchiveTable = DRIFT) -> int:
    """Merge aged windows into hours and aged hours into days, delete what is past retention; returns the
    number of rows rewritten. Runs inside the caller's transaction."""
    changed = 0
    for finer, coarser, age_ns, size_ns in (("window", "hour", cfg.raw_hours * HOUR_NS, HOUR_NS),
                                            ("hour", "day", cfg.hourly_days * DAY_NS, DAY_NS)):
        cutoff = now_ns - int(age_ns)
        rows = conn.execute(f"SELECT model, version, start_ns, end_ns, profile FROM {table.name} WHERE resolution=? "
                            "AND end_ns<=?", (finer, cutoff)).fetchall()
        groups: dict[tuple[str, str, int], list] = {}
        for model, version, start, end, blob in rows:
            s = (start // size_ns) * size_ns
            group = groups.get((model, version, s))
            if group is None:  # (end, profile); a window longer than the part keeps its own end
                groups[(model, version, s)] = [max(end, s + size_ns), table.load(blob)]
            else:
                group[0] = max(group[0], end)
                group[1].merge(table.load(blob))
        insert(conn, (ArchiveRow(m, v, s, end, coarser, table.dump(p)) for (m, v, s), (end, p) in groups.items()),
               table)
        conn.execute(f"DELETE FROM {table.name} WHERE resolution=? AND end_ns<=?", (finer, cutoff))
        changed += len(rows)
    gone = conn.execute(f"DELETE FROM {table.name} WHERE end_ns<=?",
                        (now_ns - int(cfg.retention_days * DAY_NS),))
    return changed + gone.rowcount


class ArchiveWriter:
    """A replica's own archive in shared Kafka mode (``<state dir>/otel-ml.db``, the tables the read side reads):
    each partition's owner publishes the windows that left its horizon, and every replica merges them in here,
    compacting as a single processor does. A publication is applied once: the offset that closed it is kept per
    changelog partition in the same transaction, so reading the changelog again from its start adds nothing twice.

    >>> import tempfile
    >>> w = ArchiveWriter(tempfile.mkdtemp())
    >>> w.insert_published(0, 7, [])
    True
    >>> w.insert_published(0, 7, [])  # the same publication again
    False
    """

    def __init__(self, state_dir: str, config: ArchiveConfig | None = None) -> None:
        self.config = config or ArchiveConfig()
        self._conn = sqlite3.connect(Path(state_dir) / DB_FILE, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(STATE_SCHEMA + SCHEMA + POSITIONS)

    def insert_published(self, partition: int, offset: int, rows: list[ArchiveRow],
                         performance: list[ArchiveRow] | None = None) -> bool:
        """Merge a publication's archived windows (drift ``rows``, ``performance`` windows and deltas) in, once;
        False when that publication was applied already."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = conn.execute("SELECT applied FROM changelog_position WHERE partition=?", (partition,)).fetchone()
            if done is not None and done[0] >= offset:
                conn.execute("ROLLBACK")
                return False
            insert(conn, rows)
            insert(conn, performance or [], PERFORMANCE)
            conn.execute("INSERT OR REPLACE INTO changelog_position VALUES (?, ?)", (partition, offset))
            newest = max((r.end_ns for r in rows), default=None)
            if newest is not None and self.config.enabled:
                compact(conn, newest, self.config)
                compact(conn, newest, self.config, PERFORMANCE)
            conn.execute("COMMIT")
            return True
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()


POSITIONS = """
CREATE TABLE IF NOT EXISTS changelog_position (partition INTEGER PRIMARY KEY, applied INTEGER NOT NULL);
"""
