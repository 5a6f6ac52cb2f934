"""Archived windows: every window that leaves the horizon is kept, compacted by merging as it ages.

Windows are exact to merge (counts, moments, KLL and frequent-items sketches), so an hour made of sixty
one-minute windows is the profile of that hour; older data is kept at coarser resolution:

    age < raw_hours          the windows themselves
    age < hourly_days        one profile per hour
    age < retention_days     one profile per day
    older                    deleted

``otel-ml archive export`` merges any past range into one profile file: offline analysis without the raw
data, or a baseline pinned from last week's traffic.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from otel_ml.profile.model import ModelProfile
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


def window_row(start_ns: int, window_ns: int, profile: ModelProfile) -> ArchiveRow:
    return ArchiveRow(profile.model, profile.version, start_ns, start_ns + window_ns, "window",
                      seal(profile.to_json().encode()))


def insert(conn: sqlite3.Connection, rows: Iterable[ArchiveRow]) -> None:
    """Insert (inside the caller's transaction); a second row for the same slot is merged into the first."""
    for row in rows:
        old = conn.execute("SELECT profile FROM archive WHERE model=? AND version=? AND start_ns=? AND resolution=?",
                           (row.model, row.version, row.start_ns, row.resolution)).fetchone()
        if old is not None:
            merged = ModelProfile.from_json(old[0])
            merged.merge(ModelProfile.from_json(row.profile))
            row = row._replace(profile=seal(merged.to_json().encode()))
        conn.execute("INSERT OR REPLACE INTO archive VALUES (?, ?, ?, ?, ?, ?)", row)


def compact(conn: sqlite3.Connection, now_ns: int, cfg: ArchiveConfig) -> int:
    """Merge aged windows into hours and aged hours into days, delete what is past retention; returns the
    number of rows rewritten. Runs inside the caller's transaction."""
    changed = 0
    for finer, coarser, age_ns, size_ns in (("window", "hour", cfg.raw_hours * HOUR_NS, HOUR_NS),
                                            ("hour", "day", cfg.hourly_days * DAY_NS, DAY_NS)):
        cutoff = now_ns - int(age_ns)
        rows = conn.execute("SELECT model, version, start_ns, profile FROM archive WHERE resolution=? AND end_ns<=?",
                            (finer, cutoff)).fetchall()
        groups: dict[tuple[str, str, int], ModelProfile] = {}
        for model, version, start, blob in rows:
            key = (model, version, (start // size_ns) * size_ns)
            p = ModelProfile.from_json(blob)
            if key in groups:
                groups[key].merge(p)
            else:
                groups[key] = p
        insert(conn, (ArchiveRow(m, v, s, s + size_ns, coarser, seal(p.to_json().encode()))
                      for (m, v, s), p in groups.items()))
        conn.execute("DELETE FROM archive WHERE resolution=? AND end_ns<=?", (finer, cutoff))
        changed += len(rows)
    gone = conn.execute("DELETE FROM archive WHERE end_ns<=?", (now_ns - int(cfg.retention_days * DAY_NS),))
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

    def insert_published(self, partition: int, offset: int, rows: list[ArchiveRow]) -> bool:
        """Merge a publication's archived windows in, once; False when that publication was applied already."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = conn.execute("SELECT applied FROM changelog_position WHERE partition=?", (partition,)).fetchone()
            if done is not None and done[0] >= offset:
                conn.execute("ROLLBACK")
                return False
            insert(conn, rows)
            conn.execute("INSERT OR REPLACE INTO changelog_position VALUES (?, ?)", (partition, offset))
            newest = max((r.end_ns for r in rows), default=None)
            if newest is not None and self.config.enabled:
                compact(conn, newest, self.config)
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
