"""Label-free performance estimates (CBPE) against NannyML's own CBPE and the realized values, per chunk.

    python -m bench.cbpe [--chunk 5000] [--multiclass-chunk 3000]

Binary: NannyML's synthetic car-loan dataset (reference, analysis and the analysis targets, from its wheel). NannyML
runs in its own virtualenv (``~/.cache/otel-ml/nannyml-venv``, created on first use: its pins are not ours).
otel-ml's side is what ``otel-ml serve`` computes: the baseline's ``reference_performance`` (as
``baseline build --target-column repaid --probability-column y_pred_proba`` stores it), each chunk's probabilities
binned into a ``PerformanceProfile``, ``assess``; the realized values come from scikit-learn on the chunk's targets.
Multiclass: NannyML's synthetic credit-card dataset (three classes), as ``baseline build
--class-probability-column`` stores it (an isotonic map per class) and ``otel-ml serve`` counts each chunk (class
probabilities calibrated and normalised at ingest, ``ClassProbabilities``), against NannyML's multiclass CBPE; the
realized one-vs-rest ROC AUC and log loss from the chunk's labels against scikit-learn's.
Writes Markdown tables to stdout (docs/benchmarks-detection.md carries them).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from otel_ml.analyze.drift import DriftConfig
from otel_ml.analyze.performance import PerformanceConfig, assess, performance_alpha
from otel_ml.profile.class_probabilities import calibrate
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


NANNYML_RESULTS = r"""est.fit(ref)
df = est.estimate(ana).filter(period="analysis").to_df()
res = {{m: {{"value": df[(m, "value")].tolist(), "sampling_error": df[(m, "sampling_error")].tolist(),
            "alert": [bool(a) for a in df[(m, "alert")].tolist()]}} for m in metrics}}
json.dump(res, open(out + "/{name}.json", "w"))
"""
"""The end of each NannyML script: fit on the reference, estimate the analysis chunks, write value, sampling error
and alert per metric (``{name}``: the JSON file's name)."""

MULTICLASS_CLASSES = ("highstreet_card", "prepaid_card", "upmarket_card")
NANNYML_MULTICLASS_SCRIPT = r"""
import json, sys
import nannyml as nml
chunk = int(sys.argv[1]); out = sys.argv[2]; metrics = json.loads(sys.argv[3]); classes = json.loads(sys.argv[4])
ref, ana, targets = nml.load_synthetic_multiclass_classification_dataset()
ref.to_parquet(out + "/mc_reference.parquet"); ana.merge(targets, on="id").to_parquet(out + "/mc_analysis.parquet")
est = nml.CBPE(y_pred_proba={c: "y_pred_proba_" + c for c in classes}, y_pred="y_pred", y_true="y_true",
               metrics=metrics, chunk_size=chunk, problem_type="classification_multiclass")
""" + NANNYML_RESULTS.format(name="nannyml_multiclass")


REGRESSION_METRICS = ("mae", "rmse", "mape")
NANNYML_REGRESSION_SCRIPT = r"""
import json, sys
import pandas as pd
pd.set_option("future.infer_string", False)  # NannyML's DLE reshapes string columns: not pyarrow-backed ones
import nannyml as nml
chunk = int(sys.argv[1]); out = sys.argv[2]; metrics = json.loads(sys.argv[3])
ref, ana, targets = nml.load_synthetic_car_price_dataset()
ref.to_parquet(out + "/reg_reference.parquet"); ana.merge(targets, on="id").to_parquet(out + "/reg_analysis.parquet")
features = [c for c in ref.columns if c not in ("id", "timestamp", "y_true", "y_pred")]
est = nml.DLE(feature_column_names=features, y_pred="y_pred", y_true="y_true", metrics=metrics, chunk_size=chunk,
              tune_hyperparameters=False)
""" + NANNYML_RESULTS.format(name="nannyml_regression")


def peer_python(venv: Path, *packages: str) -> Path:
    """The interpreter of a peer's own virtualenv (its pins are not ours), created with ``packages`` on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return python


def nannyml_python() -> Path:
    return peer_python(VENV, "nannyml==0.13.1", "statsmodels")  # nannyml imports statsmodels undeclared


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


def multiclass_report(chunk: int = 3000, work_dir: str | None = None) -> list[str]:
    """Multiclass CBPE against NannyML's, and the realized one-vs-rest AUC and log loss against scikit-learn's, per
    chunk (Markdown lines)."""
    work = Path(work_dir or tempfile.mkdtemp(prefix="otel-ml-cbpe-"))
    work.mkdir(parents=True, exist_ok=True)
    classes = list(MULTICLASS_CLASSES)
    subprocess.run([str(nannyml_python()), "-c", NANNYML_MULTICLASS_SCRIPT, str(chunk), str(work), json.dumps(METRICS),
                    json.dumps(classes)], check=True, capture_output=True)
    theirs = json.loads((work / "nannyml_multiclass.json").read_text())
    ref = pd.read_parquet(work / "mc_reference.parquet")
    ana = pd.read_parquet(work / "mc_analysis.parquet")
    columns = [f"y_pred_proba_{c}" for c in classes]
    # As `baseline build --target-column y_true --prediction-column y_pred --class-probability-column C=... ` does
    reference = reference_performance(np.full(len(ref), np.nan), ref.y_true.to_numpy(str), None,
                                      ref.y_pred.to_numpy(str), None,
                                      class_prob=(classes, ref[columns].to_numpy(float)))
    alpha = performance_alpha(DriftConfig(), PerformanceConfig())
    rows, realized_rows = [], []
    for k, start in enumerate(range(0, len(ana), chunk)):
        part = ana.iloc[start:start + chunk]
        p, y, pred = part[columns].to_numpy(float), part.y_true.to_numpy(str), part.y_pred.to_numpy(str)
        prof = PerformanceProfile()  # as `otel-ml serve` counts the chunk's predictions: calibrated at ingest
        prof.add_class_probabilities(classes, p, calibrate(p, classes, reference.class_calibration), pred)
        result = assess("credit-card", "", prof, reference, alpha=alpha)
        realized = {"roc_auc": skm.roc_auc_score(y, p, multi_class="ovr", labels=classes),
                    "accuracy": skm.accuracy_score(y, pred),
                    "precision": skm.precision_score(y, pred, average="macro"),
                    "recall": skm.recall_score(y, pred, average="macro"),
                    "f1": skm.f1_score(y, pred, average="macro")}
        for m in METRICS:
            ours = result.estimated[m]
            rows.append({"chunk": k, "metric": m, "otel_ml": ours.value, "otel_ml_se": ours.se,
                         "nannyml": theirs[m]["value"][k], "nannyml_se": theirs[m]["sampling_error"][k],
                         "nannyml_alert": theirs[m]["alert"][k], "realized": realized[m],
                         "degraded": result.estimated_degraded.get(m, False)})
        labelled = PerformanceProfile()  # the chunk's labels joined: realized one-vs-rest AUC and log loss
        labelled.add_class_outcomes(classes, p, y)
        got = labelled.multiclass.realized()  # type: ignore[union-attr]
        realized_rows.append((k, got["roc_auc"][0], realized["roc_auc"], got["log_loss"][0],
                              skm.log_loss(y, p, labels=classes)))
    df = pd.DataFrame(rows)
    out = ["## Multiclass label-free estimates against NannyML's multiclass CBPE (bench/cbpe.py)", "",
           "Command: `.venv/bin/python -m bench.cbpe`. NannyML's synthetic multiclass (credit card) dataset: reference "
           "60,000 rows (an isotonic map per class and the reference performance, as `otel-ml baseline build "
           "--target-column y_true --prediction-column y_pred --class-probability-column highstreet_card="
           "y_pred_proba_highstreet_card ...` stores them), analysis 60,000 rows in chunks of "
           f"{chunk:,}, no labels given to either estimator. otel-ml's side is what `otel-ml serve` keeps per window "
           "(each row's class probabilities calibrated and normalised at ingest, binned per class with their sums); "
           "NannyML 0.13.1's `CBPE(problem_type='classification_multiclass')` in its own virtualenv; realized values "
           "from scikit-learn (macro averages, one-vs-rest AUC). 'otel-ml degraded' is "
           f"`ml_performance_estimated_degraded` at the default performance level α = {alpha:.4f} (Holm over the five "
           "metrics); 'NannyML alert' is its threshold alert (reference chunks' ±3σ band).", "",
           "| metric | chunk | realized | otel-ml estimate (± se) | NannyML CBPE (± sampling error) "
           "| otel-ml − NannyML | otel-ml degraded | NannyML alert |", "|---|---|---|---|---|---|---|---|"]
    for r in df.itertuples():
        out.append(f"| {r.metric} | {r.chunk} | {r.realized:.4f} | {r.otel_ml:.4f} ± {r.otel_ml_se:.4f} | "
                   f"{r.nannyml:.4f} ± {r.nannyml_se:.4f} | {r.otel_ml - r.nannyml:+.4f} | {int(r.degraded)} | "
                   f"{int(r.nannyml_alert)} |")
    out.append("")
    for m in METRICS:
        d = df[df.metric == m]
        ours, theirs_err = np.abs(d.otel_ml - d.realized), np.abs(d.nannyml - d.realized)
        same = int((d.degraded == d.nannyml_alert).sum())
        out.append(f"- {m}: max |otel-ml − NannyML| {np.max(np.abs(d.otel_ml - d.nannyml)):.5f}; mean |estimate − "
                   f"realized|: otel-ml {np.mean(ours):.4f}, NannyML {np.mean(theirs_err):.4f}; same decision on "
                   f"{same} of {len(d)} chunks")
    out += ["", "Realized, from the chunk's labels (what the processor's join computes) against scikit-learn on the "
            "same rows:", "",
            "| chunk | otel-ml ROC AUC (ovr, macro) | scikit-learn | otel-ml log loss | scikit-learn |",
            "|---|---|---|---|---|"]
    out += [f"| {k} | {a:.10f} | {b:.10f} | {c:.10f} | {d:.10f} |" for k, a, b, c, d in realized_rows]
    worst_auc = max(abs(a - b) for _, a, b, _, _ in realized_rows)
    worst_ll = max(abs(c - d) for _, _, _, c, d in realized_rows)
    out += ["", f"Largest difference over the chunks: ROC AUC {worst_auc:.1e}, log loss {worst_ll:.1e} (the "
            "probabilities are on a 0.01 grid, so no two differ within one of the 1,024 bins: the binned AUC is "
            "exact).", ""]
    return out


def regression_report(chunk: int = 3000, work_dir: str | None = None) -> list[str]:
    """A regressor's label-free estimates (expected-loss models) against NannyML's DLE and the realized values."""
    from otel_ml.profile.baseline import build_baseline

    work = Path(work_dir or tempfile.mkdtemp(prefix="otel-ml-cbpe-"))
    work.mkdir(parents=True, exist_ok=True)
    metrics = list(REGRESSION_METRICS)
    subprocess.run([str(nannyml_python()), "-c", NANNYML_REGRESSION_SCRIPT, str(chunk), str(work), json.dumps(metrics)],
                   check=True, capture_output=True)
    theirs = json.loads((work / "nannyml_regression.json").read_text())
    ana = pd.read_parquet(work / "reg_analysis.parquet")
    t0 = time.perf_counter()
    baseline = build_baseline(work / "reg_reference.parquet", "car-price", prediction_column="y_pred",
                              target_column="y_true", exclude=["id", "timestamp"])
    build_s = time.perf_counter() - t0
    reference = baseline.performance
    assert reference is not None and reference.loss_models
    model = next(iter(reference.loss_models.values()))
    alpha = performance_alpha(DriftConfig(), PerformanceConfig())
    rows = []
    for k, start in enumerate(range(0, len(ana), chunk)):
        part = ana.iloc[start:start + chunk]
        numeric = {c: part[c].to_numpy(float) for c in part.columns if c in model.columns}
        numeric["prediction"] = part.y_pred.to_numpy(float)
        categorical = {c: part[c].astype(str).to_numpy() for c in model.categorical_inputs}
        x = model.matrix(numeric, categorical, len(part))  # as the processor does at ingest (GroundTruth)
        prof = PerformanceProfile()
        prof.add_expected_losses({target: m.predict(x) for target, m in reference.loss_models.items()})
        result = assess("car-price", "", prof, reference, alpha=alpha)
        either = assess("car-price", "", prof, reference, alpha=alpha, alternative="either")
        y, pred = part.y_true.to_numpy(float), part.y_pred.to_numpy(float)
        realized = {"mae": skm.mean_absolute_error(y, pred), "rmse": math.sqrt(skm.mean_squared_error(y, pred)),
                    "mape": skm.mean_absolute_percentage_error(y, pred)}
        for m in metrics:
            ours = result.estimated[m]
            rows.append({"chunk": k, "metric": m, "otel_ml": ours.value, "otel_ml_se": ours.se,
                         "nannyml": theirs[m]["value"][k], "nannyml_se": theirs[m]["sampling_error"][k],
                         "nannyml_alert": theirs[m]["alert"][k], "realized": realized[m],
                         "degraded": result.estimated_degraded.get(m, False),
                         "either": either.estimated_degraded.get(m, False)})
    df = pd.DataFrame(rows)
    out = ["## Regression label-free estimates against NannyML's DLE (bench/cbpe.py)", "",
           "Command: `.venv/bin/python -m bench.cbpe`. NannyML's synthetic car-price dataset: reference 60,000 rows "
           "(`otel-ml baseline build --prediction-column y_pred --target-column y_true --exclude id --exclude "
           f"timestamp` fits the loss models: {build_s:.1f} s for all three, "
           f"{model.feature.shape[0]} trees of ≤ 31 leaves each), analysis 60,000 rows in chunks of {chunk:,}, no "
           "labels given to either estimator. otel-ml's estimate is each row's expected |error|, error² and "
           "|error/truth| from the baseline's trees, summed per window as `otel-ml serve` keeps them; NannyML 0.13.1 "
           "`DLE` (LightGBM, default hyperparameters) in its own virtualenv; realized values from scikit-learn. "
           f"'otel-ml degraded' is `ml_performance_estimated_degraded` at α = {alpha:.4f} (Holm over the three "
           "metrics), with the default `performance.alternative: worse` and with `either`; 'NannyML alert' is its "
           "threshold alert (reference chunks' ±3σ band, either side).", "",
           "| metric | chunk | realized | otel-ml estimate (± se) | NannyML DLE (± sampling error) | otel-ml − NannyML "
           "| otel-ml degraded (worse / either) | NannyML alert |", "|---|---|---|---|---|---|---|---|"]
    for r in df.itertuples():
        out.append(f"| {r.metric} | {r.chunk} | {r.realized:.4f} | {r.otel_ml:.4f} ± {r.otel_ml_se:.4f} | "
                   f"{r.nannyml:.4f} ± {r.nannyml_se:.4f} | {r.otel_ml - r.nannyml:+.4f} | {int(r.degraded)} / "
                   f"{int(r.either)} | {int(r.nannyml_alert)} |")
    out.append("")
    for m in metrics:
        d = df[df.metric == m]
        ours, theirs_err = np.abs(d.otel_ml / d.realized - 1), np.abs(d.nannyml / d.realized - 1)
        worse, either_ = int((d.degraded == d.nannyml_alert).sum()), int((d.either == d.nannyml_alert).sum())
        out.append(f"- {m}: |estimate / realized − 1| otel-ml mean {np.mean(ours):.2%}, max {np.max(ours):.2%}; "
                   f"NannyML DLE mean {np.mean(theirs_err):.2%}, max {np.max(theirs_err):.2%}; max |otel-ml / "
                   f"NannyML − 1| {np.max(np.abs(d.otel_ml / d.nannyml - 1)):.1e}; decisions equal to NannyML's "
                   f"alerts on {worse} of {len(d)} chunks with `worse`, {either_} with `either`")
    return [*out, ""]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunk", type=int, default=5000)
    ap.add_argument("--multiclass-chunk", type=int, default=3000)
    args = ap.parse_args()
    print("\n".join(report(args.chunk)))
    print("\n".join(multiclass_report(args.multiclass_chunk)))
    print("\n".join(regression_report(args.multiclass_chunk)))


if __name__ == "__main__":
    main()
