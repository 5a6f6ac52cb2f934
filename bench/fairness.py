"""Fairness (issue 47) on a real dataset against fairlearn, and what counting it costs at ingest.

    python -m bench.fairness [--rows 512]

Data: NannyML's bundled US census employment data for Massachusetts (ACS PUMS, from its wheel: reference,
analysis and the analysis targets; ``load_us_census_ma_employment_data``), a model predicting ``employed`` with its
``prediction``, protected attributes ``SEX`` and age in bands (``AGEP``: <30, [30..50), >=50). NannyML runs in its own
virtualenv (bench/cbpe.py's). otel-ml's side is the processor's path: each analysis chunk's rows segmented at
ingest (``with_segments``), counted by ``GroundTruth`` with the fairness settings, labels joined, the performance
horizon merged, ``assess_all``; fairlearn's ``MetricFrame`` on the same rows. Prints the largest difference per
metric and each decision, then the ingest cost: ``GroundTruth.count_predictions`` of ``--rows``-row batches of a
segmented model with and without fairness settings (same run, alternated), as a ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from sklearn.metrics import precision_score

from bench.cbpe import nannyml_python
from otel_ml import semconv
from otel_ml.analyze.drift import DriftConfig
from otel_ml.analyze.performance import PerformanceConfig, assess_all
from otel_ml.core.live import with_segments
from otel_ml.decode.batch import ColumnarBatch, LabelBatch
from otel_ml.labels.ground_truth import GroundTruth
from otel_ml.labels.pending import LabelsConfig
from otel_ml.profile.segments import SegmentCounts

CENSUS_SCRIPT = r"""
import sys
import nannyml as nml
out = sys.argv[1]
ref, ana, targets = nml.load_us_census_ma_employment_data()
ref.to_parquet(out + "/reference.parquet"); ana.merge(targets, on="id").to_parquet(out + "/analysis.parquet")
"""
FAIRNESS = {"employment": {"attributes": ["SEX", "age"], "favorable": "1", "reference_group": {"SEX": "1"}}}
BINS = {"age": [30.0, 50.0]}
RATES = ("selection_rate", "true_positive_rate", "false_positive_rate", "precision")


def census() -> pd.DataFrame:
    work = Path(tempfile.mkdtemp(prefix="otel-ml-fairness-"))
    subprocess.run([str(nannyml_python()), "-c", CENSUS_SCRIPT, str(work)], check=True, capture_output=True)
    return pd.read_parquet(work / "analysis.parquet")


def processed(df: pd.DataFrame, fairness: dict | None = None) -> GroundTruth:
    """The rows through the processor's path, 5,000 a batch, each prediction's label joined."""
    gt = GroundTruth(tempfile.mkdtemp(), LabelsConfig(max_pending=len(df) + 1),
                     PerformanceConfig(fairness=FAIRNESS if fairness is None else fairness,
                                       horizon_seconds=10**9, window_seconds=10**8))
    segmented = SegmentCounts(("SEX", "age"), bins=BINS)
    n = len(df)
    ids = np.arange(1, n + 1, dtype=np.uint64)
    t = np.full(n, 10**18, np.int64)
    pred = np.where(df.prediction.to_numpy() == 1, "1", "0")
    for part in np.array_split(np.arange(n), max(1, n // 5000)):
        batch = ColumnarBatch("employment", "", len(part), t[part], np.ones(len(part)), prediction_id=ids[part],
                              numeric={"age": df.AGEP.to_numpy(float)[part]},
                              categorical={"SEX": df.SEX.astype(int).astype(str).to_numpy()[part],
                                           semconv.PREDICTION_FEATURE: pred[part]})
        gt.on_predictions(with_segments(batch, segmented))
    truth = np.where(df.employed.to_numpy() == 1, "1", "0")
    gt.on_labels(LabelBatch("employment", "", ids, np.full(n, np.nan), truth, t + 10**9))
    return gt


def compare(df: pd.DataFrame) -> list[str]:
    report = assess_all("employment", "", processed(df).current("employment", ""), None, DriftConfig(),
                        PerformanceConfig(fairness=FAIRNESS)).fairness
    assert report is not None
    y, pred = df.employed.to_numpy(int), df.prediction.to_numpy(int)
    band = np.where(df.AGEP < 30, "<30", np.where(df.AGEP < 50, "[30..50)", ">=50"))
    sex = df.SEX.astype(int).astype(str).to_numpy()
    worst: dict[str, float] = {}
    lines = []
    for attribute, groups in (("SEX", sex), ("age", band),
                              ("SEX,age", np.array([f"SEX={s},age={a}" for s, a in zip(sex, band)]))):
        frame = MetricFrame(metrics={"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
                                     "false_positive_rate": false_positive_rate,
                                     "precision": lambda a, b: precision_score(a, b, zero_division=np.nan)},
                            y_true=y, y_pred=pred, sensitive_features=groups).by_group
        values = {(v.metric, v.group): v for v in report.values if v.attribute == attribute}
        reference = report.reference_groups[attribute]
        for group in frame.index:
            for metric in RATES:
                worst[metric] = max(worst.get(metric, 0.0), abs(values[metric, group].value - frame.loc[group, metric]))
            if group == reference:
                continue
            mine, ref = frame.loc[group], frame.loc[reference]
            theirs = {"disparate_impact": mine.selection_rate / ref.selection_rate,
                      "demographic_parity_difference": mine.selection_rate - ref.selection_rate,
                      "equal_opportunity_difference": mine.true_positive_rate - ref.true_positive_rate,
                      "equalized_odds_difference": max(abs(mine.true_positive_rate - ref.true_positive_rate),
                                                       abs(mine.false_positive_rate - ref.false_positive_rate)),
                      "predictive_parity_difference": mine.precision - ref.precision}
            for metric, value in theirs.items():
                v = values[metric, group]
                worst[metric] = max(worst.get(metric, 0.0), abs(v.value - value))
                lines.append(f"| {attribute} | {group} (vs {reference}) | {metric} | {v.value:.4f} | {value:.4f} | "
                             f"[{v.low:.4f}, {v.high:.4f}] | {v.violation} |")
    head = ["| attribute | group | metric | otel-ml | fairlearn | 95% interval | violation |",
            "|---|---|---|---|---|---|---|"]
    summary = ["Largest |otel-ml − fairlearn| over every group: " +
               ", ".join(f"{m} {d:.1e}" for m, d in worst.items()), ""]
    return summary + head + lines


def cost(df: pd.DataFrame, rows: int, rounds: int = 7) -> str:
    """count_predictions per batch of ``rows``, with and without fairness, alternated; the median ratio."""
    part = df.iloc[:rows * 40]
    ratios, per_row = [], {}
    for _ in range(rounds):
        for name, fairness in (("plain", {}), ("fairness", FAIRNESS)):
            gt = processed(part.iloc[:rows], fairness)  # warm
            segmented = SegmentCounts(("SEX", "age"), bins=BINS)
            batches = []
            for k in range(40):
                chunk = part.iloc[k * rows:(k + 1) * rows]
                batches.append(with_segments(ColumnarBatch(
                    "employment", "", len(chunk), np.full(len(chunk), 10**18, np.int64), np.ones(len(chunk)),
                    numeric={"age": chunk.AGEP.to_numpy(float)},
                    categorical={"SEX": chunk.SEX.astype(int).astype(str).to_numpy(),
                                 semconv.PREDICTION_FEATURE: np.where(chunk.prediction.to_numpy() == 1, "1", "0")},
                    prediction_id=np.arange(k * rows + 1, (k + 1) * rows + 1, dtype=np.uint64)), segmented))
            start = time.process_time()
            for b in batches:
                gt.count_predictions(b)
            per_row[name] = (time.process_time() - start) / (40 * rows)
        ratios.append(per_row["fairness"] / per_row["plain"])
    return (f"count_predictions of {rows}-row batches of a model segmented by SEX and age band (with ids): "
            f"{per_row['plain'] * 1e6:.2f} µs per row without fairness, {per_row['fairness'] * 1e6:.2f} µs with it "
            f"(last round); median ratio over {rounds} alternated rounds {np.median(ratios):.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512)
    args = parser.parse_args()
    df = census()
    print(f"## Fairness against fairlearn (bench/fairness.py)\n\nCommand: `.venv/bin/python -m bench.fairness`. "
          f"NannyML's US census employment data (Massachusetts), analysis period: {len(df):,} rows.\n")
    print("\n".join(compare(df)))
    print("\n" + cost(df, args.rows))
    print(json.dumps({"rows": len(df)}))


if __name__ == "__main__":
    main()
