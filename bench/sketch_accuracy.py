"""KLL accuracy against memory: how far the sketch KS statistic is from the exact one, and bytes per feature.

    .venv/bin/python -m bench.sketch_accuracy [--trials 20]

For each k and sample size, two independent samples of one distribution (lognormal, the hard case for
value-based statistics) are sketched; the table gives the largest |D_sketch − D_exact| over the trials, the
documented bound ε_R + ε_C, and the serialized size of one sketch. The default k follows from it
(docs/benchmarks.md).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats as sps

from otel_ml.analyze import stats
from otel_ml.profile.sketch import NumericProfile, SketchConfig


def measure(k: int, n: int, trials: int, seed: int = 0) -> tuple[float, float, int]:
    rng = np.random.default_rng(seed)
    worst, bound, size = 0.0, 0.0, 0
    for _ in range(trials):
        a, b = rng.lognormal(0, 1, n), rng.lognormal(0, 1, n)
        pa, pb = NumericProfile(SketchConfig(kll_k=k)), NumericProfile(SketchConfig(kll_k=k))
        pa.update(a)
        pb.update(b)
        d_sketch = stats.ks_statistic(pa.weighted_items(), pb.weighted_items())
        d_exact = sps.ks_2samp(a, b).statistic
        worst = max(worst, abs(d_sketch - d_exact))
        bound = pa.rank_error() + pb.rank_error()
        size = max(size, len(pa.sketch.serialize()))
    return worst, bound, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    print("| k | n per sample | max \\|D_sketch − D_exact\\| | bound ε_R+ε_C | bytes per sketch |")
    print("|---|---|---|---|---|")
    for k in (100, 200, 400, 800):
        for n in (10_000, 100_000, 1_000_000):
            trials = args.trials if n < 1_000_000 else max(3, args.trials // 5)
            worst, bound, size = measure(k, n, trials)
            print(f"| {k} | {n:,} | {worst:.4f} | {bound:.4f} | {size:,} |", flush=True)


if __name__ == "__main__":
    main()
