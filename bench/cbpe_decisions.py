"""Estimated-performance decisions against NannyML's CBPE alerts on its binary "work from home" dataset, chunk by
chunk, at the level the processor uses (issue 32 case 4: the estimated ROC AUC drop NannyML flags in every
drifted chunk never fired at the drift decisions' level).

    python -m bench.cbpe_decisions [--chunk 5000]

NannyML 0.13.1 runs in its own virtualenv (bench.cbpe's). otel-ml's side is what ``otel-ml serve`` computes
for a chunk's predictions with a labelled baseline: the chunk's probabilities and predicted classes binned into a
``PerformanceProfile``, ``assess`` at ``performance_alpha`` (Holm over the estimated metrics). Also shown: the
decision at the drift level with Bonferroni (the rule before). Writes a Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bench.cbpe import nannyml_python
from otel_ml.analyze.drift import DriftConfig
from otel_ml.analyze.performance import PerformanceConfig, assess, degradation_p, performance_alpha
from otel_ml.profile.performance import PerformanceProfile, is_positive, reference_performance

METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1")
NANNYML_SCRIPT = """
import json, sys
import nannyml as nml
chunk, out, metrics = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
ref, ana, tgt = nml.load_synthetic_binary_classification_dataset()
ref.to_parquet(out + "/reference.parquet")
ana.merge(tgt, on="id").to_parquet(out + "/analysis.parquet")
est = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="work_home_actual", metrics=metrics,
               chunk_size=chunk, problem_type="classification_binary")
est.fit(ref)
df = est.estimate(ana).filter(period="analysis").to_df()
json.dump({m: [bool(a) for a in df[(m, "alert")]] for m in metrics}, open(out + "/alerts.json", "w"))
"""


def report(chunk: int = 5000) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="otel-ml-cbpe-decisions-"))
    subprocess.run([str(nannyml_python()), "-c", NANNYML_SCRIPT, str(chunk), str(work), json.dumps(METRICS)],
                   check=True, capture_output=True)
    alerts = json.loads((work / "alerts.json").read_text())
    ref = pd.read_parquet(work / "reference.parquet")
    ana = pd.read_parquet(work / "analysis.parquet")
    reference = reference_performance(ref.work_home_actual.to_numpy(float), np.full(len(ref), ""),
                                      ref.y_pred.to_numpy(float), None, ref.y_pred_proba.to_numpy(float))
    drift = DriftConfig()
    level, before = performance_alpha(drift, PerformanceConfig()), drift.evaluation_alpha
    out = ["| chunk | estimated ROC AUC | its p | NannyML alert | otel-ml (now) | otel-ml (before) "
           "| accuracy, precision, recall, F1: NannyML / otel-ml |", "|---|---|---|---|---|---|---|"]
    for k, start in enumerate(range(0, len(ana), chunk)):
        part = ana.iloc[start:start + chunk]
        prof = PerformanceProfile()
        prof.add_predictions(len(part), part.y_pred_proba.to_numpy(float),
                             is_positive(part.y_pred.to_numpy(float), None, "1"))
        now = assess("wfh", "", prof, reference, level)
        p = {m: degradation_p(now.estimated[m], now.reference[m], m, 0.0, 100) for m in METRICS}
        bonferroni = bool(p["roc_auc"] is not None and p["roc_auc"] < before / len(METRICS))
        others = ("".join(str(int(alerts[m][k])) for m in METRICS[1:]) + " / "
                  + "".join(str(int(now.estimated_degraded.get(m, False))) for m in METRICS[1:]))
        out.append(f"| {k} | {now.estimated['roc_auc'].value:.4f} | {p['roc_auc']:.2g} | {int(alerts['roc_auc'][k])} "
                   f"| {int(now.estimated_degraded.get('roc_auc', False))} | {int(bonferroni)} | {others} |")
    z = stats.norm.isf(level / len(METRICS))
    return [f"Level now {level:.3g} (Holm over {len(METRICS)} estimated metrics; the first test at z > {z:.2f}), "
            f"before {before:.3g} (Bonferroni).", "", *out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunk", type=int, default=5000)
    print("\n".join(report(ap.parse_args().chunk)))


if __name__ == "__main__":
    main()
