"""Archived windows, in process: compacted by merging as they age, exported for any past range."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile import NUMERIC, ModelProfile
from otel_ml.profile.model import ModelProfile as MP
from otel_ml.read.archive import export_range
from otel_ml.state import archive
from otel_ml.state.archive import DAY_NS, HOUR_NS, NS, ArchiveConfig


def window(start_ns: int, values: np.ndarray) -> ModelProfile:
    p = MP("m", "")
    n = len(values)
    p.update(ColumnarBatch("m", "", n, np.full(n, start_ns), np.ones(n), numeric={"x": values}), {"x": NUMERIC})
    return p


def test_compaction_merges_by_age_and_retention_deletes() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(archive.SCHEMA)
    now = 100 * DAY_NS
    minute = 60 * NS
    rows = []
    # 3 days of one-minute windows, 10 values each, ending now; plus one ancient window.
    for k in range(3 * 24 * 60):
        start = now - (k + 1) * minute
        rows.append(archive.window_row(start, minute, window(start, np.full(10, float(k)))))
    rows.append(archive.window_row(5 * DAY_NS, minute, window(5 * DAY_NS, np.ones(10))))
    archive.insert(conn, rows)
    cfg = ArchiveConfig(raw_hours=6, hourly_days=1, retention_days=30)
    archive.compact(conn, now, cfg)
    by_res = dict(conn.execute("SELECT resolution, COUNT(*) FROM archive GROUP BY resolution").fetchall())
    assert by_res == {"window": 6 * 60, "hour": 18, "day": 2}
    # Nothing lost in the merges: the whole range still holds every value.
    whole = export_range(conn, "m", "", 0, now + 1)
    assert whole.rows == 3 * 24 * 60 * 10
    assert whole.features["x"].mean == pytest.approx(np.mean(np.arange(3 * 24 * 60)))
    last_hour = export_range(conn, "m", "", now - HOUR_NS, now)
    assert last_hour.rows == 600
