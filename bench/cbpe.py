"""Label-free performance estimates (CBPE) against NannyML's own CBPE and the realized values, per chunk.

    python -m bench.cbpe [--chunk 5000]

Data: NannyML's synthetic car-loan dataset (reference, analysis and the analysis targets, from its wheel). NannyML
runs in its own virtualenv (``~/.cache/otel-ml/nannyml-venv``, created on first use: its pins are not ours).
otel-ml's side is what ``otel-ml serve`` computes: the baseline's ``reference_performance`` (as
``baseline build --target-column repaid --probability-column y_pred_proba`` stores it), each chunk's probabilities
binned into a ``PerformanceProfile``, ``assess``; the realized values come from scikit-learn on the chunk's targets.
Writes a Markdown table to stdout (docs/benchmarks-detection.md carries it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from otel_ml.analyze.performance import assess
from otel_ml.profile.performance import PerformanceProfile, is_positive, reference_performance

VENV = Path.home() / ".cache" / "otel-ml" / "nannyml-venv"
METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1")

NANNYML_SCRIPT = r"""
import json, sys
import nannyml as nml
chunk = int(sys.argv[1]); out = sys.argv[2]; metrics = json.loads(sys.argv[3])
ref, ana, targets = nml.load_synthetic_car_loan_dataset()
ref.to_parquet(out + "/reference.parquet"); ana.merge(targets, on="id").to_parquet(out + "/analysis.parquet")
est = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="repaid", metrics=metrics, chunk_size=chunk,
               problem_type="classification_binary")
est.fit(ref)
df = est.estimate(ana).filter(period="analysis").to_df()
res = {}
for m in metrics:
    res[m] = {"value": df[(m, "value")].tolist(), "sampling_error": df[(m, "sampling_error")].tolist()}
json.dump(res, open(out + "/nannyml.json", "w"))
"""


def nannyml_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        # nannyml 0.13.1 imports statsmodels without declaring it
        subprocess.run([str(python), "-m", "pip", "install", "-q", "nannyml==0.13.1", "statsmodels"], check=True)
    return python


def report(chunk: int = 5000, work_dir: str | None = None) -> list[str]:
    """The comparison as Markdown lines (a section of docs/benchmarks-detection.md)."""
    work = Path(work_dir or tempfile.mkdtemp(prefix="otel-ml-cbpe-"))
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(nannyml_python()), "-c", NANNYML_SCRIPT, str(chunk), str(work), json.dumps(METRICS)],
                   check=True, capture_output=True)
    theirs = json.loads((work / "nannyml.json").read_text())
    ref = pd.read_parquet(work / "reference.parquet")
    ana = pd.read_parquet(work / "analysis.parquet")
    reference = reference_performance(ref.repaid.to_numpy(float), np.full(len(ref), ""), ref.y_pred.to_numpy(float),
                                      None, ref.y_pred_proba.to_numpy(float))
    rows = []
    for k, start in enumerate(range(0, len(ana), chunk)):
        part = ana.iloc[start:start + chunk]
        prof = PerformanceProfile()
        # As otel-ml serve counts them: each prediction's probability, and whether it predicted the positive class.
        prof.add_predictions(len(part), part.y_pred_proba.to_numpy(float),
                             is_positive(part.y_pred.to_numpy(float), None, "1"))
        result = assess("car-loan", "", prof, reference, alpha=0.05)
        y, pred, p = part.repaid.to_numpy(), part.y_pred.to_numpy(), part.y_pred_proba.to_numpy()
        realized = {"roc_auc": skm.roc_auc_score(y, p), "accuracy": skm.accuracy_score(y, pred),
                    "precision": skm.precision_score(y, pred), "recall": skm.recall_score(y, pred),
                    "f1": skm.f1_score(y, pred)}
        for m in METRICS:
            ours = result.estimated[m]
            rows.append({"chunk": k, "metric": m, "otel_ml": ours.value, "otel_ml_se": ours.se,
                         "nannyml": theirs[m]["value"][k], "nannyml_se": theirs[m]["sampling_error"][k],
                         "realized": realized[m], "degraded": result.estimated_degraded.get(m, False)})
    df = pd.DataFrame(rows)
    out = ["## Label-free performance estimates against NannyML's CBPE (bench/cbpe.py)", "",
           "Command: `.venv/bin/python -m bench.cbpe`. NannyML's synthetic car loan: reference 50,000 rows (the "
           "calibration map and reference performance, as `otel-ml baseline build --target-column repaid "
           "--probability-column y_pred_proba --prediction-column y_pred` stores them), analysis 50,000 rows in "
           f"chunks of {chunk:,} with no labels given to either estimator; realized values from the analysis "
           "targets (scikit-learn). NannyML 0.13.1 CBPE (its own virtualenv) against otel-ml's estimate from the "
           "chunk's binned probabilities and predicted classes, as `otel-ml serve` keeps them; the standard errors "
           "are each tool's own (NannyML's sampling error; otel-ml's spread of the realized metric given the "
           "estimate). 'degraded' is `ml_performance_estimated_degraded` at α = 0.05 over the tested metrics. The "
           "dataset's documented drift starts at chunk 5.", "",
           "| metric | chunk | realized | otel-ml estimate (± se) | NannyML CBPE (± sampling error) "
           "| otel-ml − NannyML | otel-ml degraded |", "|---|---|---|---|---|---|---|"]
    for r in df.itertuples():
        out.append(f"| {r.metric} | {r.chunk} | {r.realized:.4f} | {r.otel_ml:.4f} ± {r.otel_ml_se:.4f} | "
                   f"{r.nannyml:.4f} ± {r.nannyml_se:.4f} | {r.otel_ml - r.nannyml:+.4f} | {int(r.degraded)} |")
    out.append("")
    for m in METRICS:
        d = df[df.metric == m]
        ours, theirs = np.abs(d.otel_ml - d.realized), np.abs(d.nannyml - d.realized)
        out.append(f"- {m}: max |otel-ml − NannyML| {np.max(np.abs(d.otel_ml - d.nannyml)):.5f}; mean |estimate − "
                   f"realized|: otel-ml {np.mean(ours):.4f}, NannyML {np.mean(theirs):.4f}")
    return [*out, ""]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunk", type=int, default=5000)
    args = ap.parse_args()
    print("\n".join(report(args.chunk)))


if __name__ == "__main__":
    main()
