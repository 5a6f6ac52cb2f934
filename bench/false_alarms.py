"""False alarms on stationary streams: how often ``overall`` fires when nothing changed.

    .venv/bin/python -m bench.false_alarms [--horizons 300]

One model, one reference, then ``--horizons`` independent current horizons drawn from the same distributions,
through the same code the processor runs (windows merged into a horizon, then ``compare``). Features of every
kind and several horizon sizes (small, where sampling noise dominates; large, where the sketches are in
estimation mode). Reports the false-alarm rate per feature-horizon and per model-horizon against the
configured alpha (family-wise per model and evaluation, Bonferroni across features).
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from otel_ml.analyze.drift import DriftConfig, compare
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import CATEGORICAL, NUMERIC

CATS_5 = np.array(["a", "b", "c", "d", "e"])
CATS_50 = np.array([f"c{i}" for i in range(50)])
P_50 = np.arange(1, 51) / np.arange(1, 51).sum()
ALPHA = 0.05
"""A level high enough that a few hundred horizons measure it (the service's calibrated default, ~2e-4, is
bench.alert_episodes' subject)."""
KINDS = {"normal": NUMERIC, "lognormal": NUMERIC, "integer": NUMERIC, "binary": NUMERIC,
         "cat5": CATEGORICAL, "cat50": CATEGORICAL}


def draw(rng: np.random.Generator, n: int) -> ColumnarBatch:
    numeric = {
        "normal": rng.normal(10, 2, n),
        "lognormal": rng.lognormal(0, 1, n),
        "integer": rng.poisson(4, n).astype(np.float64),
        "binary": (rng.random(n) < 0.3).astype(np.float64),
    }
    categorical = {"cat5": rng.choice(CATS_5, n, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
                   "cat50": rng.choice(CATS_50, n, p=P_50)}
    return ColumnarBatch("m", "", n, np.zeros(n, np.int64), np.ones(n), numeric=numeric, categorical=categorical)


def profile_of(rng: np.random.Generator, n: int, windows: int, grids: dict | None = None) -> ModelProfile:
    """A horizon as the processor builds it: ``windows`` windows sharing the model's numeric grids (the
    reference's, once there is one), each profiled, then merged."""
    out = ModelProfile("m", "")
    grids = {} if grids is None else grids
    for part in np.array_split(np.arange(n), windows):
        w = ModelProfile("m", "", grids=grids)
        w.update(draw(rng, len(part)), KINDS)
        out.merge(w)
    return out


def run(horizons: int, ref_n: int, cur_n: int, seed: int) -> tuple[Counter, int, int]:
    rng = np.random.default_rng(seed)
    reference = profile_of(rng, ref_n, 15)
    fired: Counter[str] = Counter()
    model_alarms = 0
    withheld = 0
    cfg = DriftConfig(alpha=ALPHA)
    for _ in range(horizons):
        report = compare(reference, profile_of(rng, cur_n, 15, dict(reference.numeric_grids())), cfg)
        any_fired = False
        for f in report.features:
            if f.overall.detected:
                fired[f.feature] += 1
                any_fired = True
            if f.withheld_reason:
                withheld += 1
        model_alarms += any_fired
    return fired, model_alarms, withheld


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--horizons", type=int, default=300)
    args = parser.parse_args()
    alpha = ALPHA
    print(f"alpha = {alpha} per model and evaluation; {len(KINDS)} features → {alpha / len(KINDS):.4f} per feature\n")
    print("| reference n | horizon n | horizons | feature-horizon false alarms | rate | model-horizons with an "
          "alarm | rate | decisions withheld |")
    print("|---|---|---|---|---|---|---|---|")
    for ref_n, cur_n in ((5_000, 150), (20_000, 2_000), (100_000, 30_000)):
        fired, model_alarms, withheld = run(args.horizons, ref_n, cur_n, seed=cur_n)
        total = sum(fired.values())
        fh = args.horizons * len(KINDS)
        print(f"| {ref_n:,} | {cur_n:,} | {args.horizons} | {total} of {fh} ({dict(fired) or 'none'}) | "
              f"{total / fh:.4f} | {model_alarms} | {model_alarms / args.horizons:.4f} | {withheld} |", flush=True)


if __name__ == "__main__":
    main()
