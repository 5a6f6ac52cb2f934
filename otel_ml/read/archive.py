"""The read side of a state directory: what the pages, ``otel-ml report``, ``otel-ml archive``, ``otel-ml models
list`` and the notebook client read, read-only (the processor may be running). Written by otel_ml/state/."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from otel_ml.instrument.monitor import iso_time_ns
from otel_ml.profile.model import ModelProfile
from otel_ml.sealed import opened
from otel_ml.state.archive import DAY_NS, HOUR_NS, NS
from otel_ml.state.database import DB_FILE

__all__ = ["DAY_NS", "HOUR_NS", "NS", "export_range", "live_window_ns", "models_in_checkpoint", "open_read_only",
           "parse_time_ns", "rows_in_range", "summary"]


def parse_time_ns(text: str, name: str = "time") -> int:
    """A moment given as Unix seconds or ISO 8601 (UTC unless it says otherwise), in ns; between 1970 and 2262
    (what a signed 64-bit count of ns holds). ``name`` is what the error calls it (a query parameter).

    >>> parse_time_ns("1.5"), parse_time_ns("1970-01-01T00:00:02Z")
    (1500000000, 2000000000)
    >>> parse_time_ns("inf", "from")
    Traceback (most recent call last):
    ...
    ValueError: from: 'inf' is not a time between 1970 and 2262 (ISO 8601 like 2026-11-20T00:00:00Z, or Unix seconds)
    """
    problem = ValueError(f"{name}: {text[:64]!r} is not a time between 1970 and 2262 (ISO 8601 like "
                         "2026-11-20T00:00:00Z, or Unix seconds)")
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = iso_time_ns(text) / 1e9
        except (ValueError, OverflowError) as e:
            raise problem from e
    if not 0 <= seconds < MAX_TIME_S:  # NaN and ±inf fail too
        raise problem
    return int(seconds * 1e9)


MAX_TIME_S = (2**63 - 1) / 1e9
"""2262-04-11: beyond it a time in ns does not fit the int64 columns (SQLite, numpy)."""


def live_window_ns(conn: sqlite3.Connection) -> int | None:
    """The window length the last checkpoint was written with (None before the first, or from an older version)."""
    row = conn.execute("SELECT state FROM checkpoint WHERE id = 1").fetchone()
    return json.loads(opened(row[0], "checkpoint")).get("service", {}).get("window_ns") if row else None


def checkpoint_ground_truth(conn: sqlite3.Connection) -> dict:
    """The ground-truth part of the last checkpoint (``GroundTruth.state``; empty before the first)."""
    row = conn.execute("SELECT state FROM checkpoint WHERE id = 1").fetchone()
    return json.loads(opened(row[0], "checkpoint")).get("service", {}).get("ground_truth", {}) if row else {}


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
    state = json.loads(opened(row[0], "checkpoint"))
    rows: dict[tuple[str, str], int] = {}
    for model, version, blob in conn.execute("SELECT model, version, profile FROM window_state"):
        rows[(model, version)] = rows.get((model, version), 0) + int(json.loads(opened(blob, "window"))["rows"])
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


def export_range(conn: sqlite3.Connection, model: str, version: str, start_ns: int, end_ns: int,
                 live_window_ns: int | None = None) -> ModelProfile:
    """One profile of every archived row of (model, version) inside [start_ns, end_ns), and, with
    ``live_window_ns`` (the windows' length), of the windows still live at the last checkpoint (the current
    horizon, or that of a model that stopped sending): they are in window_state until they leave it."""
    out = ModelProfile(model, version)
    found = False
    query = "SELECT start_ns, profile FROM archive WHERE model=? AND version=? AND start_ns>=? AND end_ns<=?"
    params: tuple = (model, version, start_ns, end_ns)
    if live_window_ns is not None:
        query += (" UNION ALL SELECT start_ns, profile FROM window_state WHERE model=? AND version=? AND start_ns>=?"
                  " AND start_ns+?<=?")
        params += (model, version, start_ns, live_window_ns, end_ns)
    for _start, blob in conn.execute(query + " ORDER BY start_ns", params):
        p = ModelProfile.from_json(blob)
        if not found:
            out = p
            found = True
        else:
            out.merge(p)
    if not found:
        raise ValueError(f"no archived windows of model {model!r} version {version!r} in that range "
                         "(otel-ml archive list shows what there is)")
    return out


def summary(conn: sqlite3.Connection, live_window_ns: int | None) -> list[dict]:
    """Per (model, version) and resolution (``window``, ``hour``, ``day`` in the archive; ``live`` for the
    windows at the last checkpoint): how many profiles, the first start and the last end."""
    out = [{"model": m, "version": v, "resolution": r, "profiles": n, "from_ns": lo, "to_ns": hi}
           for m, v, r, n, lo, hi in conn.execute(
               "SELECT model, version, resolution, COUNT(*), MIN(start_ns), MAX(end_ns) FROM archive "
               "GROUP BY model, version, resolution")]
    if live_window_ns is not None:
        out += [{"model": m, "version": v, "resolution": "live", "profiles": n, "from_ns": lo,
                 "to_ns": hi + live_window_ns}
                for m, v, n, lo, hi in conn.execute("SELECT model, version, COUNT(*), MIN(start_ns), MAX(start_ns) "
                                                    "FROM window_state GROUP BY model, version")]
    order = {"live": 0, "window": 1, "hour": 2, "day": 3}
    return sorted(out, key=lambda r: (r["model"], r["version"], order.get(r["resolution"], 9)))


def rows_in_range(conn: sqlite3.Connection, model: str, version: str, start_ns: int, end_ns: int,
                   window_ns: int | None, newest_first: bool = False) -> sqlite3.Cursor:
    """(start, end, profile) of every archived profile of (model, version) in [start_ns, end_ns), and of the
    windows live at the last checkpoint (``window_ns``: their length), in time order."""
    query = ("SELECT start_ns, end_ns, profile FROM archive WHERE model=? AND version=? AND start_ns>=? "
             "AND end_ns<=?")
    params: tuple = (model, version, start_ns, end_ns)
    if window_ns is not None:
        query += (" UNION ALL SELECT start_ns, start_ns+?, profile FROM window_state WHERE model=? AND version=? "
                  "AND start_ns>=? AND start_ns+?<=?")
        params += (window_ns, model, version, start_ns, window_ns, end_ns)
    return conn.execute(query + (" ORDER BY 1 DESC" if newest_first else " ORDER BY 1"), params)
