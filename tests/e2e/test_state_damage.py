"""State files damaged while the processor is stopped (issue 29): every kind of file it writes × {missing, zero
length, truncated, a garbled byte, a wrong file}, then start, send predictions and labels, kill -9, start again.
Each cell must end in "recovered, with a named loss" (the log names the file, otel_ml_state_recovered_total{kind}
counts it) with counts equal to what was acknowledged minus what was reported lost; never a traceback, a crash
loop, a silent start with less data, or a label applied twice."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.support import (
    LOGS,
    TRACES,
    ServeProcess,
    counter,
    export,
    labels_request,
    predictions_request,
    start_serve,
    wait_for,
)

MODEL = "loans"
ARGS = ("--receiver-processes", "0", "--no-otlp-http", "--window", "1", "--horizon", "2",
        "--evaluation-interval", "0.3")
CONFIG = "windows:\n  reference_min_rows: 20\nstate:\n  checkpoint_interval_seconds: 0.3\n"


def rows(ids: list[str]) -> list[dict]:
    return [{"ml.prediction.id": i, "ml.prediction": k % 2, "ml.prediction.probability": 0.8 if k % 2 else 0.2,
             "ml.feature.x": float(k)} for k, i in enumerate(ids)]


def serve(state: Path, config: Path, **ports: int) -> ServeProcess:
    return start_serve(state, "--config", str(config), *ARGS, **ports)


def prepared(tmp: Path, config: Path, tag: str) -> Path:
    """A state directory as a graceful stop leaves it: 200 waiting predictions (50 labelled), 30 early labels
    waiting for predictions not sent yet, a pinned reference."""
    state = tmp / f"prepared-{tag}"
    sp = serve(state, config)
    try:
        now = time.time_ns()
        for second in range(4):  # four windows of event time: the first two horizons pin a reference
            export(sp, TRACES, predictions_request(MODEL, rows([f"{tag}p{second}-{i}" for i in range(50)]),
                                                   now - (4 - second) * 10**9))
        export(sp, LOGS, labels_request(MODEL, [(f"{tag}p0-{i}", i % 2) for i in range(50)], now))
        export(sp, LOGS, labels_request(MODEL, [(f"q{i}", i % 2) for i in range(30)], now))  # early
        wait_for(lambda: counter(sp, "ml_ground_truth_total") == 50, what="50 labels joined")
        wait_for(lambda: list((state / "pinned").glob("*.json")), what="a pinned reference")
    finally:
        assert sp.stop() == 0
    return state


def damage(path: Path, how: str, wrong: Path) -> None:
    if how == "missing":
        path.unlink()
    elif how == "zero":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbled":
        data = bytearray(path.read_bytes())
        # In the database, inside the checkpoint (a byte of free space would harm nothing, and go unseen).
        at = data.find(b'"format_version"') if path.name.endswith(".db") else -1
        data[at + 4 if at >= 0 else len(data) // 2] ^= 0x5A
        path.write_bytes(bytes(data))
    else:  # wrong: the same kind of file of another processor
        shutil.copyfile(wrong, path)


KINDS = {  # kind of file: (how to find it in a state directory, the kind of loss reported)
    "database": (lambda d: d / "otel-ml.db", "database"),
    "predictions": (lambda d: next((d / "pending").glob("*-pred.seg")), "pending_pred"),
    "flags": (lambda d: next((d / "pending").glob("*-pred.*.flags")), "pending_flags"),
    "early labels": (lambda d: next((d / "pending").glob("*-early.seg")), "pending_early"),
    # the sampled spans of waiting predictions (labels/spans.py): only their wrong predictions' traces are lost
    "prediction spans": (lambda d: next((d / "pending").glob("*-spans.seg")), "pending_spans"),
    "pinned reference": (lambda d: next((d / "pinned").glob("*.json")), "pinned_reference"),
}
DAMAGE = ("missing", "zero", "truncated", "garbled", "wrong")


@pytest.fixture(scope="module")
def prepared_pair(tmp_path_factory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("damage")
    config = tmp / "c.yaml"
    config.write_text(CONFIG)
    return prepared(tmp, config, "a"), prepared(tmp, config, "b"), config


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_damaged_state_file_is_recovered_with_a_named_loss(prepared_pair, tmp_path: Path, kind: str,
                                                             how: str) -> None:
    if (kind, how) == ("database", "wrong"):
        pytest.skip("a whole, valid database of another processor is taken for this one's (docs/state.md)")
    original, other, config = prepared_pair
    state = tmp_path / "state"
    shutil.copytree(original, state)
    find, loss_kind = KINDS[kind]
    damage(find(state), how, find(other))
    sp = serve(state, config)  # recovers (never refuses, never a traceback)
    log = "".join(sp.log)
    assert "Traceback" not in log, log
    lost_db = kind == "database"
    # What was lost is said (the file named) and counted; a pinned reference of a live model is in its checkpoint:
    # written again, nothing lost but the damaged file (a missing one is simply written again).
    silent = kind == "pinned reference" and how == "missing"
    if not silent:
        assert f"state recovered without {'otel-ml.db' if lost_db else ''}" in log, log
        assert counter(sp, "otel_ml_state_recovered_total", kind=loss_kind) >= 1
    before = 0 if lost_db else 200
    assert counter(sp, "ml_predictions_total") == before
    # After the damage: 100 new predictions with their labels, labels for 50 predictions from before, and the
    # predictions 30 early labels were waiting for.
    now = time.time_ns()
    export(sp, TRACES, predictions_request(MODEL, rows([f"r{i}" for i in range(100)] + [f"q{i}" for i in range(30)]),
                                           now))
    export(sp, LOGS, labels_request(MODEL, [(f"r{i}", i % 2) for i in range(100)], now))
    export(sp, LOGS, labels_request(MODEL, [(f"ap1-{i}", i % 2) for i in range(50)], now))
    pending_ok = not lost_db and kind not in ("predictions", "flags")
    early_ok = not lost_db and kind != "early labels"
    joined = (0 if lost_db else 50) + 100 + (50 if pending_ok else 0) + (30 if early_ok else 0)
    lost = 50 if kind == "flags" else 0
    wait_for(lambda: counter(sp, "ml_ground_truth_total") == joined, what=f"{joined} labels joined")
    time.sleep(0.5)  # the journal has them; kill -9 before or after a checkpoint, either is recovered exactly
    sp.proc.kill()
    sp.proc.wait()
    again = serve(state, config, grpc_port=sp.grpc_port, prom_port=sp.prom_port)
    try:
        assert counter(again, "ml_predictions_total") == before + 130
        assert counter(again, "ml_ground_truth_total") == joined  # never a label applied twice
        assert counter(again, "ml_ground_truth_unmatched_total", reason="lost") == lost
        assert counter(again, "ml_ground_truth_unmatched_total", reason="duplicate") == 0
        assert "Traceback" not in "".join(again.log)
    finally:
        again.stop()
