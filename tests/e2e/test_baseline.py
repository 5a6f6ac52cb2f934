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


def test_baseline_build_na_cells_are_missing_not_text_and_id_and_time_columns_are_left_out(tmp_path: Path) -> None:
    rows = ["user_id,ts,amount,plan"] + [f"u{i},2026-11-{1 + i % 28:02d}T10:00:00,{i if i % 10 else 'NA'},p{i % 3}"
                                         for i in range(200)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    out = build_cli(tmp_path, "--input", "train.csv")
    assert out.returncode == 0, out.stderr
    profile = ModelProfile.from_json((tmp_path / "m-any.baseline.json").read_text())  # the name --help gives
    assert profile.kinds()["amount"] == NUMERIC and profile.features["amount"].missing == 20
    # issue 31 case 9: warned, and left out (they were kept as features before): --keep profiles one anyway
    assert "left out of the baseline: ts, user_id" in out.stderr, out.stderr
    assert set(profile.features) == {"amount", "plan"} and "LEFT OUT, id-like" in out.stdout
    assert "plan" in out.stdout and "'plan'" not in out.stderr
    kept = build_cli(tmp_path, "--input", "train.csv", "--keep", "user_id", "--output", "kept.json")
    assert kept.returncode == 0 and "column 'user_id' is id-like" in kept.stderr and "(kept: --keep)" in kept.stderr
    assert set(ModelProfile.read(tmp_path / "kept.json").features) == {"amount", "plan", "user_id"}
    typo = build_cli(tmp_path, "--input", "train.csv", "--keep", "userid", "--output", "typo.json")
    assert typo.returncode == 2 and "--keep names no column userid" in typo.stderr
    assert not (tmp_path / "typo.json").exists()
    directory = build_cli(tmp_path, "--input", str(tmp_path))
    assert directory.returncode == 2 and "is a directory" in directory.stderr


def test_a_span_without_the_baselines_version_is_told_which_versions_have_one(tmp_path: Path) -> None:
    """Issue 31 case 3: spans without ml.model.version for a model whose baseline has version '1' quietly became a
    new model pinning its own (maybe drifted) traffic. The log now names the versions that have a baseline and the
    two ways out; a version-less baseline (the documented mapping) then applies to the unversioned stream."""
    import time

    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

    from tests.support import request, select, start_serve, wait_for

    rng = np.random.default_rng(2)
    pd.DataFrame({"x": rng.normal(size=500), "y": rng.normal(size=500)}).to_csv(tmp_path / "a.csv", index=False)
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "churn", "--model-version",
                    "1", "--input", str(tmp_path / "a.csv"), "--output", str(baselines / "churn-1.json")],
                   check=True, capture_output=True)
    sp = start_serve(tmp_path / "state", "--baseline-dir", str(baselines), "--evaluation-interval", "0.3")
    try:
        with grpc.insecure_channel(sp.grpc_endpoint) as channel:
            req = request({"ml.model.name": "churn", "ml.feature.x": 1.0})
            req.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano = time.time_ns()
            TraceServiceStub(channel).Export(req, timeout=10)
        line = wait_for(lambda: next((x for x in sp.log if "no baseline, but" in x), None), what="the hint")
        assert "WARNING" in line and "model 'churn' version ''" in line and "version(s) '1'" in line, line
        assert "ml.model.version" in line and "without --model-version" in line, line

        subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "churn", "--input",
                        str(tmp_path / "a.csv"), "--output", str(baselines / "churn-any.json")], check=True,
                       capture_output=True)

        def source() -> str | None:
            ready = [s for s in select(sp.scrape(), "ml_reference_ready", ml_model_name="churn")
                     if "ml_model_version" not in s.labels]  # the empty version is no label
            return ready[0].labels["ml_reference_source"] if ready else None

        assert wait_for(lambda: source() == "baseline", timeout=20, what="the version-less baseline in force")
        # case 4: the baseline's y never comes with the traffic: one log line, and the API says so
        line = wait_for(lambda: next((x for x in sp.log if "disagree on features" in x), None), what="mismatch")
        assert "model 'churn' version ''" in line and "absent from traffic: y" in line, line
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models/churn/versions/_/drift",
                                    timeout=30) as r:
            rows = {f["name"]: f for f in json.load(r)["features"]}
        assert rows["y"]["withheld_reason"] == "absent_from_current" and rows["y"]["status"] == "quality", rows["y"]
    finally:
        sp.stop()


def test_compare_lists_every_feature_of_either_side(tmp_path: Path) -> None:
    """Issue 31 case 4: `otel-ml compare` listed the current side's extra features (not_in_reference) but hid the
    reference's features missing from the current profile: a dropped column, what people run compare to catch."""
    import json

    rng = np.random.default_rng(3)
    pd.DataFrame({"age": rng.normal(40, 5, 800), "plan": rng.choice(["a", "b"], 800),
                  "income": rng.normal(5, 1, 800)}).to_csv(tmp_path / "ref.csv", index=False)
    pd.DataFrame({"age": rng.normal(40, 5, 800), "tenure": rng.normal(3, 1, 800)}).to_csv(tmp_path / "cur.csv",
                                                                                           index=False)
    for name in ("ref", "cur"):
        subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "m", "--input",
                        str(tmp_path / f"{name}.csv"), "--output", str(tmp_path / f"{name}.json")], check=True,
                       capture_output=True)
    out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "compare", str(tmp_path / "ref.json"),
                          str(tmp_path / "cur.json"), "--format", "json"], check=True, capture_output=True, text=True)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"age", "plan", "income", "tenure"}, rows
    assert rows["tenure"]["withheld_reason"] == "not_in_reference"
    for name in ("plan", "income"):
        assert rows[name]["withheld_reason"] == "absent_from_current", rows[name]
        assert rows[name]["missing_ratio"] == 1.0 and rows[name]["status"] == "quality", rows[name]
        assert rows[name]["reference_count"] == 800 and rows[name]["current_count"] == 0
    assert rows["age"]["withheld_reason"] is None
    text = subprocess.run([sys.executable, "-m", "otel_ml.cli", "compare", str(tmp_path / "ref.json"),
                           str(tmp_path / "cur.json")], check=True, capture_output=True, text=True).stdout
    assert "absent_from_current" in text and "income" in text, text


def test_malformed_and_oversized_baseline_files_are_skipped_and_the_others_still_load(tmp_path: Path) -> None:
    """Issue 49 G and I: a baseline whose `model` is a list, or nested 100,000 brackets deep, stopped the processor
    at start (TypeError, RecursionError) and, dropped into a running one, kept later good baselines from loading;
    a 2 GB file took it to 4.2 GB RSS. Each is skipped with a warning naming the file (and, for the size, the
    setting), at start and while serving."""
    import json as jsonlib
    import time

    from tests.support import select, start_serve, wait_for

    baselines = tmp_path / "baselines"
    baselines.mkdir()
    rng = np.random.default_rng(2)
    pd.DataFrame({"x": rng.normal(size=300)}).to_csv(tmp_path / "a.csv", index=False)
    for model in ("good", "later"):
        subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", model, "--input",
                        str(tmp_path / "a.csv"), "--output", str(tmp_path / f"{model}.json")], check=True,
                       capture_output=True)
    good = jsonlib.loads((tmp_path / "good.json").read_text())
    (baselines / "good.json").write_text(jsonlib.dumps(good))
    (baselines / "list-model.json").write_text(jsonlib.dumps({**good, "model": ["a", "b"]}))
    (baselines / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (baselines / "big.json").write_text(jsonlib.dumps({**good, "model": "big", "padding": "x" * 400_000}))
    config = tmp_path / "c.yaml"
    config.write_text("limits:\n  max_baseline_bytes: 300000\n")  # deep.json (200 kB) is under it, big.json over
    sp = start_serve(tmp_path / "state", "--config", str(config), "--baseline-dir", str(baselines),
                     "--evaluation-interval", "0.3")
    try:
        log = "".join(sp.log)
        assert "list-model.json: skipped, not an otel-ml profile" in log, log
        assert "deep.json: skipped, not an otel-ml profile (RecursionError" in log, log
        assert "big.json: skipped" in log and "over limits.max_baseline_bytes" in log, log
        assert "Traceback" not in log
        (baselines / "deep-again.json").write_text("[" * 100_000 + "]" * 100_000)  # dropped into a running one
        time.sleep(1)
        (tmp_path / "later.json").replace(baselines / "later.json")

        def loaded() -> bool:
            ready = {s.labels["ml_model_name"] for s in select(sp.scrape(), "ml_reference_ready")}
            return "later" in ready or "baseline for model 'later'" in "".join(sp.log)

        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

        from tests.support import request

        with grpc.insecure_channel(sp.grpc_endpoint) as channel:
            for model in ("good", "later"):
                req = request({"ml.model.name": model, "ml.feature.x": 1.0})
                req.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano = time.time_ns()
                TraceServiceStub(channel).Export(req, timeout=10)

        def sources() -> dict[str, str] | None:
            got = {s.labels["ml_model_name"]: s.labels["ml_reference_source"]
                   for s in select(sp.scrape(), "ml_reference_ready")}
            return got if got.get("good") == "baseline" and got.get("later") == "baseline" else None

        wait_for(sources, timeout=30, what="both good baselines in force beside the bad files")
        assert "deep-again.json: skipped" in "".join(sp.log)
        assert sp.proc.poll() is None and "Traceback" not in "".join(sp.log)
        assert loaded()
    finally:
        sp.stop()
