"""A month of past predictions and labels replayed through a running processor (issue 32: backfills carry their
own time): ``otel-ml replay`` sends a file; every row lands in the window of its own day, every label joins at its
own time, and ``otel-ml report`` over the month shows where it changed."""

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

from otel_ml.profile.model import ModelProfile
from otel_ml.read.archive import DAY_NS, live_window_ns, open_read_only, rows_in_range
from tests.support import select, wait_for

DAYS, PER_DAY, SHIFT_DAY = 30, 150, 20


def month(rng: np.random.Generator) -> pd.DataFrame:
    """30 days ending yesterday: x shifts by 1.5 and the labels stop following the model from day 20 on; each
    label is known a day after its prediction (the last day's are not known yet)."""
    today = pd.Timestamp.now(tz="UTC").normalize().tz_localize(None)
    day = np.repeat(np.arange(DAYS), PER_DAY)
    t = today - pd.Timedelta(days=DAYS) + pd.to_timedelta(day, "D") + pd.to_timedelta(
        rng.integers(0, 86_400, len(day)), "s")
    x = rng.normal(size=len(day)) + np.where(day >= SHIFT_DAY, 1.5, 0.0)
    p = 1 / (1 + np.exp(-2 * x))
    y = np.where(day >= SHIFT_DAY, rng.uniform(size=len(day)) < 0.5, rng.uniform(size=len(day)) < p).astype(int)
    frame = pd.DataFrame({"time": t, "id": [f"r{i}" for i in range(len(day))], "x": x,
                          "plan": rng.choice(["basic", "pro", "team"], len(day), p=[0.5, 0.3, 0.2]),
                          "p": p, "pred": (p >= 0.5).astype(int), "y": y.astype(float),
                          "known": (t + pd.Timedelta(days=1)).astype(object), "day": day})
    frame.loc[frame.day == DAYS - 1, ["y", "known"]] = None
    return frame.sample(frac=1.0, random_state=0)  # a warehouse export is in no particular order


def test_a_replayed_month_lands_in_its_own_windows_and_the_report_shows_the_change(serve_factory,
                                                                                  tmp_path: Path) -> None:
    import sklearn.metrics as skm

    frame = month(np.random.default_rng(11))
    path = tmp_path / "last-month.csv"
    frame.drop(columns="day").to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    config = tmp_path / "otel-ml.yaml"
    config.write_text("performance:\n  horizon_seconds: 604800\n  window_seconds: 86400\n")
    sp = serve_factory("--config", str(config), "--window", "86400", "--horizon", "604800",
                       "--evaluation-interval", "0.5")
    done = subprocess.run([sys.executable, "-m", "otel_ml.cli", "replay", "--input", str(path), "--model", "churn",
                           "--time-column", "time", "--id-column", "id", "--prediction-column", "pred",
                           "--probability-column", "p", "--target-column", "y", "--target-time-column", "known",
                           "--max-request-span", "3600", "--endpoint", sp.grpc_endpoint],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    labelled = frame[frame.y.notna()]
    n, n_labels = len(frame), len(labelled)
    assert f"{n} prediction(s)" in done.stdout and f"2 feature(s), {n_labels} label(s)" in done.stdout, done.stdout

    def counted() -> tuple[float, float] | None:
        samples = sp.scrape()
        got = (sum(s.value for s in select(samples, "ml_predictions_total", ml_model_name="churn")),
               sum(s.value for s in select(samples, "ml_ground_truth_total", ml_model_name="churn")))
        return got if got == (n, n_labels) else None

    wait_for(counted, timeout=120, what=f"{n} predictions and {n_labels} labels")
    samples = sp.scrape()
    assert sum(s.value for s in select(samples, "otel_ml_rows_late_total")) == 0
    assert sum(s.value for s in select(samples, "otel_ml_spans_rejected_total")) == 0
    assert sum(s.value for s in select(samples, "ml_ground_truth_unmatched_total")) == 0

    def performance() -> dict | None:  # an evaluation after every label: earlier ones saw fewer
        try:
            doc = json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{sp.ui_port}/api/v1/models/churn/versions/_/performance", timeout=10).read())
        except urllib.error.HTTPError:
            return None
        perf = doc["performance"]
        return perf if perf and perf["labeled"] in suffixes else None

    # The performance horizon (7 days) holds the labelled predictions of the last days: which days exactly
    # depends on where the horizon's windows start, so find the suffix of days whose labelled rows it counts.
    suffixes = {int((labelled.day >= d).sum()): d for d in range(DAYS - 8, DAYS - 4)}
    perf = wait_for(performance, timeout=60, what=f"realized performance over one of {sorted(suffixes)} labels")
    rows = labelled[labelled.day >= suffixes[perf["labeled"]]]
    accuracy = next(m["realized"]["value"] for m in perf["metrics"] if m["metric"] == "accuracy")
    assert accuracy == pytest.approx(skm.accuracy_score(rows.y.astype(int), rows.pred), abs=1e-12)
    # Every label was known a day after its prediction: the delay is the data's, not the replay's.
    assert perf["label_delay_seconds"]["p50"] == pytest.approx(86_400, abs=600)
    assert sp.stop() == 0  # the final checkpoint writes the live windows

    conn = open_read_only(sp.state_dir)
    window = live_window_ns(conn)
    first = int(pd.Timestamp(frame.time.min()).normalize().value)
    per_day: dict[int, int] = {}
    for start, _end, blob in rows_in_range(conn, "churn", "", first, first + (DAYS + 1) * DAY_NS, window):
        day = (start - first) // DAY_NS
        per_day[day] = per_day.get(day, 0) + ModelProfile.from_json(blob).rows
    conn.close()
    assert per_day == {d: PER_DAY for d in range(DAYS)}  # each row in the window of its own day

    def drifted(since: int, until: int) -> set[str]:
        out = tmp_path / f"report-{since}.html"
        start = pd.Timestamp(frame.time.min()).normalize() + pd.Timedelta(days=since)
        end = pd.Timestamp(frame.time.min()).normalize() + pd.Timedelta(days=until)
        report = subprocess.run([sys.executable, "-m", "otel_ml.cli", "report", "--state-dir", str(sp.state_dir),
                                 "--model", "churn", "--from", start.isoformat(), "--to", end.isoformat(),
                                 "--output", str(out)], capture_output=True, text=True, timeout=120)
        assert report.returncode == 0, report.stderr
        return set(re.findall(r'data-status="drift" data-feature="([^"]+)"', out.read_text()))

    # Against the reference the processor pinned (the first week): the last ten days moved, the days between
    # did not, and the plan mix never did.
    assert "x" in drifted(SHIFT_DAY, DAYS) and "plan" not in drifted(SHIFT_DAY, DAYS)
    assert drifted(7, SHIFT_DAY) == set()
