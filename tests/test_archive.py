"""Archived windows: kept when they leave the horizon, compacted by merging, exported for any past range."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile import NUMERIC, ModelProfile
from otel_ml.profile.model import ModelProfile as MP
from otel_ml.read.archive import export_range
from otel_ml.state import archive
from otel_ml.state.archive import DAY_NS, HOUR_NS, NS, ArchiveConfig
from tests.conftest import start_serve


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


def test_windows_leaving_the_horizon_are_archived_and_exported(tmp_path: Path) -> None:
    state = tmp_path / "state"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("state:\n  checkpoint_interval_seconds: 0.2\n")
    sp = start_serve(state, "--config", str(cfg), "--window", "1", "--horizon", "3", "--no-otlp-http")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://{sp.grpc_endpoint}",
                                                                    insecure=True), schedule_delay_millis=50))
    tracer = provider.get_tracer("t")
    t0 = (time.time_ns() // NS - 100) * NS
    for sec in range(30):
        for i in range(50):
            t = t0 + sec * NS + i * 10_000_000
            tracer.start_span("p", attributes={"ml.model.name": "arch", "ml.feature.x": float(sec)},
                              start_time=t).end(end_time=t)
    provider.shutdown()
    assert sp.stop() == 0
    out = tmp_path / "range.json"
    subprocess.run([sys.executable, "-m", "otel_ml.cli", "archive", "export", "--state-dir", str(state),
                    "--model", "arch", "--from", str(t0 / NS), "--to", str(t0 / NS + 20), "--output", str(out)],
                   check=True, capture_output=True)
    profile = ModelProfile.from_json(out.read_text())
    assert profile.rows == 20 * 50
    assert profile.features["x"].min == 0.0 and profile.features["x"].max == 19.0
    # Up to now: the last horizon (still live when the model stopped sending) is exported too.
    everything = tmp_path / "all.json"
    subprocess.run([sys.executable, "-m", "otel_ml.cli", "archive", "export", "--state-dir", str(state),
                    "--model", "arch", "--from", str(t0 / NS), "--to", str(t0 / NS + 60), "--output",
                    str(everything)], check=True, capture_output=True)
    assert ModelProfile.from_json(everything.read_text()).rows == 30 * 50
    listing = subprocess.run([sys.executable, "-m", "otel_ml.cli", "archive", "list", "--state-dir", str(state)],
                             check=True, capture_output=True, text=True).stdout
    kinds = {line.split()[1] for line in listing.splitlines() if line.startswith("arch ")}
    assert kinds == {"live", "window"}, listing
    # The exported range is a baseline like any other.
    baselines = tmp_path / "b"
    baselines.mkdir()
    (baselines / "from-archive.json").write_text(out.read_text())
    sp2 = start_serve(state, "--baseline-dir", str(baselines), "--no-otlp-http")
    try:
        assert any("baseline for model 'arch' version '' loaded" in line for line in sp2.log), sp2.log
    finally:
        sp2.stop()
