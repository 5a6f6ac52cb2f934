"""Numeric drift decisions against the exact two-sample KS test: false alarms (A/A) and power, in one run.

    .venv/bin/python -m bench.numeric [--trials 40] [--sizes 20000,200000]

One numeric feature, reference and current of n rows each, each a horizon of 5 windows profiled and merged as the
processor does (the first window's first batch chooses the feature's grid), then ``compare`` at alpha = 0.05 (one
feature: no correction). The exact test is ``scipy.stats.ks_2samp`` on the raw values. Shifts are of the mean,
in units of the reference's standard deviation: normal N(0,1) → N(δ,1), lognormal exp(N(0,1) + δ), and Poisson(4)
integers → Poisson(4·(1+δ)). The effect detected half the time comes from linear interpolation of the curve.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import scipy.stats as sps

from otel_ml.analyze.drift import DriftConfig, compare
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import NUMERIC

ALPHA = 0.05
"""Both tests at one classic level: what is compared here is power and validity, not the service's calibrated
level (bench.alert_episodes)."""
CONFIG = DriftConfig(alpha=ALPHA)


def draw(rng: np.random.Generator, dist: str, n: int, delta: float) -> np.ndarray:
    if dist == "normal":
        return rng.normal(delta, 1.0, n)
    if dist == "lognormal":
        return np.exp(rng.normal(delta, 1.0, n))
    return rng.poisson(4.0 * (1 + delta), n).astype(np.float64)


def horizon(values: np.ndarray, grids: dict | None = None) -> ModelProfile:
    out = ModelProfile("m", "")
    grids = {} if grids is None else grids
    for part in np.array_split(values, 5):
        w = ModelProfile("m", "", grids=grids)  # windows share the model's grid, as in WindowedProfile
        w.update(ColumnarBatch("m", "", len(part), np.zeros(len(part), np.int64), np.ones(len(part)),
                               numeric={"x": part}), {"x": NUMERIC})
        out.merge(w)
    return out


def detection(rng: np.random.Generator, dist: str, n: int, delta: float, trials: int) -> tuple[float, float]:
    ours = exact = 0
    for _ in range(trials):
        raw_ref, raw_cur = draw(rng, dist, n, 0.0), draw(rng, dist, n, delta)
        ref = horizon(raw_ref)
        cur = horizon(raw_cur, ref.numeric_grids())  # on the reference's grid, as windows adopt a baseline's
        [f] = compare(ref, cur, CONFIG).features
        ours += bool(f.overall.detected)
        exact += sps.ks_2samp(raw_ref, raw_cur).pvalue < ALPHA
    return ours / trials, exact / trials


def half_point(curve: list[tuple[float, float]]) -> float:
    for (e0, r0), (e1, r1) in itertools.pairwise(curve):
        if r1 >= 0.5 > r0:
            return e0 + (0.5 - r0) * (e1 - e0) / (r1 - r0)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--sizes", default="20000,200000")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| distribution | n per side | A/A false alarms: otel-ml / exact | detection per shift δ: otel-ml / exact | "
          "δ detected half the time: otel-ml / exact (ratio) |")
    print("|---|---|---|---|---|")
    for n in (int(x) for x in args.sizes.split(",")):
        scale = (20_000 / n) ** 0.5  # the detectable shift shrinks with √n
        for dist in ("normal", "lognormal", "integer"):
            aa = detection(rng, dist, n, 0.0, args.trials)
            deltas = [round(d * scale, 5) for d in (0.01, 0.02, 0.03, 0.04, 0.05, 0.07)]
            curve_o, curve_e, cells = [], [], []
            for d in deltas:
                o, e = detection(rng, dist, n, d, max(10, args.trials // 2))
                curve_o.append((d, o))
                curve_e.append((d, e))
                cells.append(f"{d:g}: {o:.0%} / {e:.0%}")
            a, b = half_point(curve_o), half_point(curve_e)
            print(f"| {dist} | {n:,} | {aa[0]:.1%} / {aa[1]:.1%} | {'; '.join(cells)} | {a:.4g} / {b:.4g} "
                  f"({a / b:.2f}×) |", flush=True)


if __name__ == "__main__":
    main()
