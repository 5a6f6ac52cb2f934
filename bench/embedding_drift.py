"""Embedding drift: otel-ml's projections beside Evidently's embedding drift methods, on the same vectors.

    .venv/bin/python -m bench.embedding_drift [--seeds 3] [--reference 5000] [--current 2000]

Sentence-like vectors (``sentence_vectors``): 384 dimensions, eight topics, each vector its topic's direction
plus noise, scaled to norm 1, so a change of the topic mix moves where the vectors point and never their length.
Per scenario (A/A: the reference's mix; mild and strong topic-mix shifts) and seed, one reference and one current
sample go through

- otel-ml: ``embedding_columns`` (what the decoder does with ``ml.embedding``) into a reference and a current
  profile, the reference's PCA of those columns (``baseline build --multivariate``) adding ``(multivariate)``, then
  ``compare`` at the service's default level: drift when any row's ``overall`` fires. No raw vector is kept.
- Evidently 0.7.23 (its own virtualenv, ``~/.cache/otel-ml/evidently-venv``, created on first use), its four
  embedding drift methods at their defaults: ``model`` (a domain classifier's ROC AUC), ``distance`` (Euclidean
  distance of the means), ``ratio`` (share of drifted components), ``mmd``; each keeps both samples in memory.

Time is wall-clock per decision on this machine, the same run; otel-ml's includes projecting every vector.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.cbpe import peer_python
from otel_ml.analyze.drift import compare
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.decode.embedding import embedding_columns
from otel_ml.profile.comoments import Comoments
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.reconstruction import Reconstruction
from otel_ml.semconv import MULTIVARIATE_FEATURE

VENV = Path.home() / ".cache" / "otel-ml" / "evidently-venv"
DIMENSION = 384
TOPICS = 8
UNIFORM = np.full(TOPICS, 1 / TOPICS)
SCENARIOS = {"A/A": UNIFORM,
             "mild shift": np.array([0.17, 0.17, 0.11, 0.11, 0.11, 0.11, 0.11, 0.11]),
             "strong shift": np.array([0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05])}

EVIDENTLY_SCRIPT = r"""
import json, sys, time
import numpy as np, pandas as pd
from evidently.legacy.report import Report
from evidently.legacy.metrics import EmbeddingsDriftMetric
from evidently.legacy.metrics.data_drift.embedding_drift_methods import model, distance, ratio, mmd
from evidently.legacy.pipeline.column_mapping import ColumnMapping
ref, cur = np.load(sys.argv[1]), np.load(sys.argv[2])
cols = [f"e{i}" for i in range(ref.shape[1])]
r, c = pd.DataFrame(ref, columns=cols), pd.DataFrame(cur, columns=cols)
out = {}
for name, method in [("model", model()), ("distance", distance()), ("ratio", ratio()), ("mmd", mmd())]:
    t = time.perf_counter()
    report = Report(metrics=[EmbeddingsDriftMetric("emb", drift_method=method)])
    report.run(reference_data=r, current_data=c, column_mapping=ColumnMapping(embeddings={"emb": cols}))
    res = report.as_dict()["metrics"][0]["result"]
    out[name] = {"detected": bool(res["drift_detected"]), "score": float(res["drift_score"]),
                 "seconds": time.perf_counter() - t}
print(json.dumps(out))
"""


def sentence_vectors(rng: np.random.Generator, n: int, mix: np.ndarray, dimension: int = DIMENSION) -> np.ndarray:
    """``n`` unit vectors: topic t (drawn with probabilities ``mix``) has a fixed direction (the same for every
    call), each vector is that direction plus Gaussian noise of norm ~1.2, scaled back to norm 1."""
    centroids = np.random.default_rng(1234).normal(size=(len(mix), dimension))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    topic = rng.choice(len(mix), n, p=mix)
    v = centroids[topic] + rng.normal(0, 1.2 / np.sqrt(dimension), (n, dimension))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def evidently_python() -> Path:
    # evidently 0.7.23 imports a pandas internal that pandas 2.3 removed
    return peer_python(VENV, "evidently==0.7.23", "pandas==2.2.3")


def profile(vectors: np.ndarray, basis: Comoments | None, reconstruction: Reconstruction | None) -> ModelProfile:
    """What the processor keeps of these vectors (decoded ``ml.embedding``, the reference's PCA error added)."""
    columns = embedding_columns(vectors)
    if reconstruction is not None:
        columns[MULTIVARIATE_FEATURE] = reconstruction.errors(columns, {}, len(vectors))
    n = len(vectors)
    p = ModelProfile("bench", "")
    p.update(ColumnarBatch("bench", "", n, np.zeros(n, np.int64), np.ones(n), numeric=columns),
             dict.fromkeys(columns, "numeric"), basis)
    return p


def otel_ml_decision(ref: np.ndarray, cur: np.ndarray) -> tuple[list[str], float]:
    t = time.perf_counter()
    columns = embedding_columns(ref)
    reconstruction = Reconstruction.fit(columns, {})
    basis = Comoments.chosen(columns, 10)
    reference = profile(ref, basis, reconstruction)
    current = profile(cur, basis, reconstruction)
    report = compare(reference, current)
    fired = sorted(f.feature for f in report.features if f.overall.detected)
    return fired, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--reference", type=int, default=5000)
    parser.add_argument("--current", type=int, default=2000)
    args = parser.parse_args()
    python = evidently_python()
    work = Path(tempfile.mkdtemp(prefix="otel-ml-embedding-"))
    print(f"{DIMENSION}-d unit vectors of {TOPICS} topics; reference {args.reference:,}, current "
          f"{args.current:,} per run; otel-ml at its default level (2.3e-4 per model and evaluation, Bonferroni over "
          "its 19 rows); Evidently 0.7.23's defaults.\n")
    print("| scenario | seed | otel-ml | rows that fired | Evidently model | distance | ratio | mmd |")
    print("|---|---|---|---|---|---|---|---|")
    times: dict[str, list[float]] = {}
    decided: dict[tuple[str, str], int] = {}
    for scenario, mix in SCENARIOS.items():
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            ref = sentence_vectors(rng, args.reference, UNIFORM)
            cur = sentence_vectors(rng, args.current, mix)
            np.save(work / "ref.npy", ref)
            np.save(work / "cur.npy", cur)
            fired, seconds = otel_ml_decision(ref, cur)
            times.setdefault("otel-ml", []).append(seconds)
            out = subprocess.run([str(python), "-c", EVIDENTLY_SCRIPT, str(work / "ref.npy"), str(work / "cur.npy")],
                                 check=True, capture_output=True, text=True)
            theirs = json.loads(out.stdout.strip().splitlines()[-1])
            for name, r in theirs.items():
                times.setdefault(name, []).append(r["seconds"])
                decided[(scenario, name)] = decided.get((scenario, name), 0) + r["detected"]
            decided[(scenario, "otel-ml")] = decided.get((scenario, "otel-ml"), 0) + bool(fired)
            cells = " | ".join(f"{'drift' if r['detected'] else '–'} ({r['score']:.3g})" for r in theirs.values())
            shown = ", ".join(fired[:4]) + (f" +{len(fired) - 4}" if len(fired) > 4 else "")
            print(f"| {scenario} | {seed} | {'drift' if fired else '–'} | {shown or '–'} | {cells} |")
    print("\nDrift decisions per scenario (of the seeds):\n")
    methods = ["otel-ml", "model", "distance", "ratio", "mmd"]
    print("| scenario | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for scenario in SCENARIOS:
        print(f"| {scenario} | " + " | ".join(f"{decided.get((scenario, m), 0)}/{args.seeds}" for m in methods) + " |")
    print("\nSeconds per decision (median over the runs; otel-ml: projection, profiles, PCA fit and compare):\n")
    print("| " + " | ".join(methods) + " |")
    print("|" + "---|" * len(methods))
    print("| " + " | ".join(f"{np.median(times[m]):.2f}" for m in methods) + " |")


if __name__ == "__main__":
    main()
