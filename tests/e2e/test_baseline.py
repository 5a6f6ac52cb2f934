"""Baselines through the CLI and a running processor: built, shown, put in force while serving."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from otel_ml.core.references import ReferenceStore
from otel_ml.profile import NUMERIC
from otel_ml.profile.model import ModelProfile

REPO = Path(__file__).resolve().parents[2]


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


def test_a_baseline_added_or_rebuilt_while_serving_is_put_in_force_newest_file_wins(tmp_path: Path) -> None:
    """No restart: a baseline written into --baseline-dir takes effect within one evaluation; a second file for the
    same model and version is not merged with the first (the newer one is used, a warning names both)."""
    import os
    import signal
    import time

    from tests.support import request, select, start_serve, wait_for

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


def build_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "m", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("name, content, args, code, expect", [
    ("na.csv", "age,city\n31,Oslo\nNA,Rome\nNULL,Oslo\n45,\n", [], 0, "age                          numeric"),
    ("dup.csv", "a,a,b\n1,2,3\n", [], 2, "column name 'a' appears twice"),
    ("ragged.csv", "a,b\n1,2\n3\n4,5\n", [], 2, "Expected 2 columns"),
    ("semi.csv", "a;b\n1;2\n3;4\n", [], 0, "b                            numeric"),
    ("empty.csv", "", [], 2, "empty file"),
    ("ok.csv", "a\n1\n", ["--chunks", "-1"], 2, "--chunks must be >= 0"),
])


def test_baseline_build_reads_csv_strictly_and_says_what_it_inferred(tmp_path: Path, name: str, content: str,
                                                                      args: list[str], code: int, expect: str) -> None:
    (tmp_path / name).write_text(content)
    out = build_cli(tmp_path, "--input", name, *args)
    assert out.returncode == code, out.stdout + out.stderr
    assert expect in out.stdout + out.stderr, out.stdout + out.stderr


def test_baseline_build_na_cells_are_missing_not_text_and_id_and_time_columns_are_warned(tmp_path: Path) -> None:
    rows = ["user_id,ts,amount,plan"] + [f"u{i},2026-11-{1 + i % 28:02d}T10:00:00,{i if i % 10 else 'NA'},p{i % 3}"
                                         for i in range(200)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    out = build_cli(tmp_path, "--input", "train.csv")
    assert out.returncode == 0, out.stderr
    profile = ModelProfile.from_json((tmp_path / "m-any.baseline.json").read_text())  # the name --help gives
    assert profile.kinds()["amount"] == NUMERIC and profile.features["amount"].missing == 20
    assert "column 'user_id' is id-like" in out.stderr and "column 'ts' is time-like" in out.stderr
    assert "plan" in out.stdout and "'plan'" not in out.stderr
    directory = build_cli(tmp_path, "--input", str(tmp_path))
    assert directory.returncode == 2 and "is a directory" in directory.stderr
