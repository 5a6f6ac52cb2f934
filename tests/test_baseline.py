"""Baselines: built from CSV and Parquet alike, found by content (model and version), not by file name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from otel_ml.profile import CATEGORICAL, NUMERIC
from otel_ml.profile.baseline import build_baseline
from otel_ml.store import ReferenceStore

REPO = Path(__file__).resolve().parents[1]


def test_baseline_from_csv_and_parquet_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    df = pd.DataFrame({
        "id": np.arange(1000),
        "x": rng.normal(size=1000),
        "zip": rng.choice([1000, 2000, 3000], 1000),
        "city": rng.choice(["Oslo", "Rome", None], 1000),
        "vip": rng.choice([True, False], 1000),
        "y": rng.integers(0, 2, 1000),
    })
    df.loc[::10, "x"] = np.nan
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet")
    kw = {"prediction_column": "y", "exclude": ["id"], "categorical": ["zip"]}
    a = build_baseline(tmp_path / "d.csv", "m", "1", **kw)
    b = build_baseline(tmp_path / "d.parquet", "m", "1", **kw)
    for p in (a, b):
        assert p.kinds() == {"x": NUMERIC, "zip": CATEGORICAL, "city": CATEGORICAL, "vip": CATEGORICAL,
                             "prediction": NUMERIC}
        assert p.rows == 1000 and p.features["x"].missing == 100
        assert p.features["city"].missing == int(df.city.isna().sum())
        assert set(p.features["vip"].frequencies()) == {"true", "false"}
        assert set(p.features["zip"].frequencies()) == {"1000", "2000", "3000"}
    assert a.features["x"].mean == pytest.approx(b.features["x"].mean)
    with pytest.raises(ValueError, match="no column"):
        build_baseline(tmp_path / "d.csv", "m", prediction_column="nope")


def test_cli_build_and_pick_up_by_content_not_name(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n1,x\n2,y\n")
    out = tmp_path / "dir" / "zzz.bin"
    out.parent.mkdir()
    subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "m", "--input",
                    str(tmp_path / "d.csv"), "--output", str(out)], check=True, capture_output=True)
    (out.parent / "notes.txt").write_text("not a profile")
    store = ReferenceStore(str(out.parent), str(tmp_path / "state"))
    store.open()
    found = store.find("m", "any-version")  # a version-less baseline serves every version
    assert found is not None and found[1] == "baseline" and found[0].rows == 2
    assert store.find("other", "") is None


def test_unwritable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = ReferenceStore(None, str(blocker / "state"))
    with pytest.raises(RuntimeError, match="not writable"):
        store.open()


def test_a_baseline_added_or_rebuilt_while_serving_is_put_in_force_newest_file_wins(tmp_path: Path) -> None:
    """No restart: a baseline written into --baseline-dir takes effect within one evaluation; a second file for the
    same model and version is not merged with the first (the newer one is used, a warning names both)."""
    import os
    import signal
    import time

    from tests.conftest import select, start_serve, wait_for
    from tests.test_decode import request

    baselines = tmp_path / "baselines"
    baselines.mkdir()
    sp = start_serve(tmp_path / "state", "--baseline-dir", str(baselines), "--evaluation-interval", "0.3",
                     "--receiver-processes", "0")
    try:
        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

        with grpc.insecure_channel(sp.grpc_endpoint) as channel:
            req = request({"ml.model.name": "late", "ml.feature.x": 1.0})
            req.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano = time.time_ns()
            TraceServiceStub(channel).Export(req, timeout=10)

        def source() -> str | None:
            ready = select(sp.scrape(), "ml_reference_ready", ml_model_name="late")
            return ready[0].labels["ml_reference_source"] if ready else None

        assert wait_for(lambda: source() == "none", what="the model without a reference")
        rng = np.random.default_rng(1)
        pd.DataFrame({"x": rng.normal(size=500)}).to_csv(tmp_path / "a.csv", index=False)
        subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "late", "--input",
                        str(tmp_path / "a.csv"), "--output", str(baselines / "first.json")], check=True,
                       capture_output=True)
        assert wait_for(lambda: source() == "baseline", timeout=20, what="the new baseline in force")
        assert "model 'late' version '': baseline in force (was: none)" in "".join(sp.log)

        time.sleep(0.05)  # a later modification time for the rebuilt one
        subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "late", "--input",
                        str(tmp_path / "a.csv"), "--output", str(baselines / "rebuilt.json")], check=True,
                       capture_output=True)
        assert wait_for(lambda: "rebuilt.json is newer than first.json and is used" in "".join(sp.log),
                        timeout=20, what="the warning naming both files")
        os.kill(sp.proc.pid, signal.SIGHUP)  # a forced reload: still serving, nothing changes
        time.sleep(1)
        assert sp.proc.poll() is None and source() == "baseline"
    finally:
        sp.stop()
