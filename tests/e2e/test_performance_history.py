"""Performance over any range (issue 43): a month replayed with labels a day late, the README's backfill settings and
no ``performance`` setting. Windows leave the one-day performance horizon for the archive, labels that come after
their window left count there once (across a ``kill -9``), and the API, the notebook client and ``otel-ml report``
(JSON and HTML) give the same numbers and decisions for a range, equal to scikit-learn on exactly the labelled
predictions of that range."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm

from otel_ml.read.archive import open_read_only
from otel_ml.read.performance import archived_windows, merged
from tests.e2e.test_replay import DAYS, SHIFT_DAY, month
from tests.support import select, wait_for

HALF = 15


def replay(sp, path: Path, model: str = "churn", *labels: str) -> str:
    """`otel-ml replay` of ``path`` (time, id, pred columns; ``labels``: more options, the target's)."""
    done = subprocess.run([sys.executable, "-m", "otel_ml.cli", "replay", "--input", str(path), "--model", model,
                           "--time-column", "time", "--id-column", "id", "--prediction-column", "pred",
                           "--max-request-span", "3600", "--endpoint", sp.grpc_endpoint, *labels],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


LABELLED = ("--probability-column", "p", "--target-column", "y", "--target-time-column", "known")


def api(sp, query: str) -> dict | None:
    try:
        return json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{sp.ui_port}/api/v1/models/churn/versions/_/performance{query}", timeout=30).read())
    except urllib.error.HTTPError as e:
        if e.code == 404:  # before the model's first evaluation
            return None
        raise


def metric(doc: dict, name: str) -> dict:
    return next(m for m in doc["metrics"] if m["metric"] == name)


def test_a_replayed_month_has_performance_over_any_range_the_same_everywhere(serve_factory, tmp_path: Path) -> None:
    rng = np.random.default_rng(43)
    frame = month(rng)
    # A labelled baseline from the model's own past (before the change): the reference the decisions compare with.
    x = rng.normal(size=4000)
    p = 1 / (1 + np.exp(-2 * x))
    reference = pd.DataFrame({"x": x, "plan": rng.choice(["basic", "pro", "team"], len(x), p=[0.5, 0.3, 0.2]),
                              "p": p, "pred": (p >= 0.5).astype(int), "y": (rng.uniform(size=len(x)) < p).astype(int)})
    reference.to_csv(tmp_path / "reference.csv", index=False)
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    built = subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "churn", "--input",
                            str(tmp_path / "reference.csv"), "--prediction-column", "pred", "--probability-column",
                            "p", "--target-column", "y", "--output", str(baselines / "churn.json")],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    halves = []
    for k, part in enumerate((frame[frame.day < HALF], frame[frame.day >= HALF])):
        halves.append(tmp_path / f"half-{k}.csv")
        part.drop(columns="day").to_csv(halves[-1], index=False, date_format="%Y-%m-%dT%H:%M:%S")
    config = tmp_path / "otel-ml.yaml"  # checkpoints often: a kill -9 finds some late labels written, some not
    config.write_text("state:\n  checkpoint_interval_seconds: 1\n")
    args = ("--config", str(config), "--baseline-dir", str(baselines), "--window", "86400", "--horizon", "604800",
            "--evaluation-interval", "0.5")
    state = tmp_path / "state"
    sp = serve_factory(*args, state_dir=state)
    replay(sp, halves[0], "churn", *LABELLED)
    sp.proc.kill()  # kill -9: what the last checkpoint did not hold is in the journal
    sp.proc.wait()
    sp = serve_factory(*args, state_dir=state, grpc_port=sp.grpc_port, prom_port=sp.prom_port, ui_port=sp.ui_port)
    replay(sp, halves[1], "churn", *LABELLED)

    labelled = frame[frame.y.notna()]
    n_labels = len(labelled)

    def all_joined() -> float | None:
        got = sum(s.value for s in select(sp.scrape(), "ml_ground_truth_total", ml_model_name="churn"))
        return got if got == n_labels else None

    wait_for(all_joined, timeout=120, what=f"all {n_labels} labels joined")
    assert sum(s.value for s in select(sp.scrape(), "ml_ground_truth_unmatched_total")) == 0
    start = pd.Timestamp(frame.time.min()).normalize()
    shift = start + pd.Timedelta(days=SHIFT_DAY)
    end = start + pd.Timedelta(days=DAYS)
    ranges = {"before": (start, shift), "after": (shift, end)}

    def query(lo: pd.Timestamp, hi: pd.Timestamp) -> str:
        return f"?from={lo.isoformat()}Z&to={int(hi.timestamp())}"

    def settled() -> dict | None:  # every label of the range counted, in the archive or in memory
        docs = {}
        for name, (lo, hi) in ranges.items():
            doc = api(sp, query(lo, hi))
            expected = int(((labelled.time >= lo) & (labelled.time < hi)).sum())
            if doc is None or doc["performance"]["labeled"] != expected:
                return None
            docs[name] = doc["performance"]
        return docs

    docs = wait_for(settled, timeout=120, what="every label counted in its range")
    for name, (lo, hi) in ranges.items():
        rows = labelled[(labelled.time >= lo) & (labelled.time < hi)]
        accuracy = metric(docs[name], "accuracy")
        assert accuracy["realized"]["value"] == pytest.approx(skm.accuracy_score(rows.y.astype(int), rows.pred),
                                                              abs=1e-12)
        assert metric(docs[name], "precision")["realized"]["value"] == pytest.approx(
            skm.precision_score(rows.y.astype(int), rows.pred), abs=1e-12)
        assert docs[name]["predictions_with_id"] == int(((frame.time >= lo) & (frame.time < hi)).sum())
    assert "accuracy" not in docs["before"]["degraded"], docs["before"]["degraded"]
    assert "accuracy" in docs["after"]["degraded"], docs["after"]["degraded"]

    # History of the whole month: a realized value for every labelled day, degraded parts only after the change.
    month_doc = api(sp, query(start, end))["performance"]
    parts = month_doc["history"]
    assert 0 < len(parts) <= 48
    for day in sorted(labelled.day.unique()):
        t = (start + pd.Timedelta(days=int(day))).timestamp()
        part = next((h for h in parts if h["start_unix"] <= t < h["end_unix"]), None)
        assert part is not None and metric(part, "accuracy")["realized"]["value"] is not None, (day, parts)
    for h in parts:
        if h["end_unix"] <= shift.timestamp():
            assert not metric(h, "accuracy")["degraded"], h
    assert sum(h["labeled"] for h in parts) == n_labels

    with pytest.raises(urllib.error.HTTPError) as backwards:  # issue 49 N: `from` after `to` is an error, not empty
        api(sp, "?from=2000000000&to=1000000000")
    assert backwards.value.code == 400 and b"later than" in backwards.value.read()

    import otel_ml  # the notebook client reads the same range

    client = otel_ml.Client(f"http://127.0.0.1:{sp.ui_port}")
    summary = client.performance_summary("churn", start=start.to_pydatetime(), end=shift.to_pydatetime())
    assert metric(summary, "accuracy") == metric(docs["before"], "accuracy")
    model_page = urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/models/churn/versions/_"
                                        + query(start, end), timeout=60).read().decode()
    assert "Performance over time" in model_page
    overview = urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/", timeout=30).read().decode()
    assert re.search(r"accuracy \d\.\d{3}", overview), overview[-3000:]
    assert sp.stop() == 0  # the final checkpoint writes what memory held
    conn = open_read_only(state)
    try:  # the labels of the month's first 27 days came after their windows left the one-day horizon: archived
        archived = merged(archived_windows(conn, "churn", "", 0, int((end - pd.Timedelta(days=2)).value)))
    finally:
        conn.close()
    assert archived is not None and archived.labeled == int((labelled.time < end - pd.Timedelta(days=2)).sum())

    for name, (lo, hi) in ranges.items():  # the report decides with the processor's settings: the same answer
        out = tmp_path / f"report-{name}.json"
        done = subprocess.run([sys.executable, "-m", "otel_ml.cli", "report", "--state-dir", str(state), "--model",
                               "churn", "--from", lo.isoformat() + "Z", "--to", str(int(hi.timestamp())), "--format",
                               "json", "--output", str(out)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "decided with the processor's settings" in done.stdout, done.stdout
        report = json.loads(out.read_text())["performance"]
        assert report["labeled"] == docs[name]["labeled"]
        assert report["degraded"] == docs[name]["degraded"]
        assert report["estimated_degraded"] == docs[name]["estimated_degraded"]
        # Sums of per-row terms (log loss, Brier) are added in another order (the archive's compaction): equal
        # within n rounding errors of the sum; counts (accuracy, precision, ...) exactly.
        bound = n_labels * np.finfo(float).eps
        for m in docs[name]["metrics"]:
            got = metric(report, m["metric"])
            for side in ("realized", "estimated", "reference"):
                assert (got[side] is None) == (m[side] is None), (m["metric"], side)
                if m[side] is not None:
                    assert got[side] == pytest.approx(m[side], rel=bound, abs=0), (m["metric"], side)
            assert (got["degraded"], got["estimated_degraded"]) == (m["degraded"], m["estimated_degraded"])
    backwards = subprocess.run([sys.executable, "-m", "otel_ml.cli", "report", "--state-dir", str(state), "--model",
                                "churn", "--from", str(int(end.timestamp())), "--to", str(int(start.timestamp())),
                                "--output", str(tmp_path / "x.html")], capture_output=True, text=True, timeout=120)
    assert backwards.returncode == 2 and "is later than --to" in backwards.stderr, backwards.stderr
    html = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "otel_ml.cli", "report", "--state-dir", str(state), "--model", "churn",
                           "--from", str(int(shift.timestamp())), "--to", str(int(end.timestamp())), "--output",
                           str(html)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = html.read_text()
    shown = re.search(r"<td class=name>accuracy</td><td class=num>([0-9.]+)", text)
    assert shown and float(shown.group(1)) == pytest.approx(metric(docs["after"], "accuracy")["realized"]["value"],
                                                            abs=5e-4)
    assert "Performance over time" in text and 'class="badge degraded"' in text


def labels_send(sp, path: Path, model: str, *extra: str) -> str:
    done = subprocess.run([sys.executable, "-m", "otel_ml.cli", "labels", "send", "--input", str(path), "--model",
                           model, "--id-column", "id", "--label-column", "y", "--endpoint", sp.grpc_endpoint, "--api",
                           f"http://127.0.0.1:{sp.ui_port}", *extra], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_labels_that_do_not_join_are_named_with_examples_and_a_diagnosis(serve_factory, tmp_path: Path) -> None:
    """Issue 43 part 5: zero-padded text ids for integer prediction ids, and labels stamped and sent before their
    predictions, were counted in ml_ground_truth_unmatched_total and said nowhere else. Now `labels send` prints what
    the processor did with them, and the model's page and API name the cause with an example."""
    sp = serve_factory("--window", "86400", "--horizon", "604800", "--evaluation-interval", "0.5")
    day0 = pd.Timestamp.now(tz="UTC").normalize().tz_localize(None) - pd.Timedelta(days=5)
    n = 300
    rng = np.random.default_rng(3)
    predictions = pd.DataFrame({"time": day0 + pd.to_timedelta(np.arange(n) * 60, "s"), "id": np.arange(1, n + 1),
                                "x": rng.normal(size=n), "pred": rng.integers(0, 2, n)})
    predictions.to_parquet(tmp_path / "padded.parquet")
    replay(sp, tmp_path / "padded.parquet", "padded")
    labels = pd.DataFrame({"id": [f"{i:06d}" for i in range(1, n + 1)], "y": rng.integers(0, 2, n)})
    labels.to_parquet(tmp_path / "padded-labels.parquet")  # text ids, zero-padded: "000123"
    out = labels_send(sp, tmp_path / "padded-labels.parquet", "padded")
    assert f"sent {n} label(s)" in out and f"the processor joined 0 of them; {n} wait for their predictions" in out, out
    assert "leading zeros removed: label id '0000" in out, out

    # Labels at their own (historical) times, sent before their predictions: they wait an hour of the model's event
    # time for them, leave as unknown, and the predictions that come later say why.
    early = pd.DataFrame({"id": [f"e{i}" for i in range(n)], "y": rng.integers(0, 2, n),
                          "known": day0 + pd.Timedelta(days=1) + pd.to_timedelta(np.arange(n) * 600, "s")})
    early.to_parquet(tmp_path / "early-labels.parquet")
    out = labels_send(sp, tmp_path / "early-labels.parquet", "early", "--time-column", "known")
    unknown = int((early.known < early.known.max() - pd.Timedelta(hours=1)).sum())
    assert f"{unknown} did not join: unknown {unknown}" in out, out
    late = pd.DataFrame({"time": day0 + pd.to_timedelta(np.arange(n) * 60, "s"), "id": early.id,
                         "x": rng.normal(size=n), "pred": rng.integers(0, 2, n)})
    late.to_parquet(tmp_path / "late.parquet")
    replay(sp, tmp_path / "late.parquet", "early")

    def diagnosed(model: str, kind: str) -> dict | None:
        doc = api_doc(sp, model)
        found = [d for d in ((doc or {}).get("labels") or {}).get("diagnoses", []) if d["kind"] == kind]
        return doc if found else None

    padded = wait_for(lambda: diagnosed("padded", "normalised"), what="the zero-padding diagnosed")
    assert padded["labels"]["diagnoses"][0]["prediction_id"] == padded["labels"]["diagnoses"][0]["label_id"].lstrip("0")
    wait_for(lambda: diagnosed("early", "before_predictions"), what="labels before predictions diagnosed")
    early_doc = api_doc(sp, "early")["labels"]
    assert early_doc["unmatched"]["unknown"] == unknown and len(early_doc["examples"]["unknown"]) == 5
    assert set(early_doc["examples"]["unknown"]) <= set(early.id)
    for model, words in (("padded", "leading zeros removed"), ("early", "sent or stamped before their predictions")):
        page = urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/models/{model}/versions/_",
                                      timeout=30).read().decode()
        assert "Labels that did not join" in page and words in page, page[-4000:]
    log = "".join(sp.log)
    assert "model 'early':" in log and "labels did not join their predictions" in log, log[-3000:]


def api_doc(sp, model: str) -> dict | None:
    try:
        return json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{sp.ui_port}/api/v1/models/{model}/versions/_/performance", timeout=30).read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
