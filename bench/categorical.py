"""Categorical drift decisions at any cardinality: false alarms (A/A) and power, against the exact chi-square test.

    .venv/bin/python -m bench.categorical [--trials 100] [--rows 20000]

One categorical feature drawn from a Zipf(1.1) law over K categories (10 to 100,000), reference and current of
``--rows`` rows each, each a horizon of 5 windows profiled and merged as the processor does, then ``compare`` at
alpha = 0.05 (one feature: no correction). The exact test is Pearson's chi-square on the raw category counts
with the same pooling of rare categories (scipy). A/A: both samples from the same law. Power: the current sample
moves probability between categories, either at the top (share moved from the first category to the second) or
in the tail (categories ranked past 100: every odd one gains, every even one loses the same relative share).
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import scipy.stats as sps

from otel_ml.analyze import stats
from otel_ml.analyze.drift import DriftConfig, compare
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import CATEGORICAL

ALPHA = 0.05
"""Both tests at one classic level: what is compared here is power and validity, not the service's calibrated
level (bench.alert_episodes)."""
CONFIG = DriftConfig(alpha=ALPHA)


def zipf(k: int) -> np.ndarray:
    p = 1.0 / np.arange(1, k + 1) ** 1.1
    return p / p.sum()


def top_shift(p: np.ndarray, delta: float) -> np.ndarray:
    q = p.copy()
    q[0] -= delta
    q[1] += delta
    return q


def tail_shift(p: np.ndarray, eps: float) -> np.ndarray:
    q = p.copy()
    tail = np.arange(len(p)) >= 100
    sign = np.where(np.arange(len(p)) % 2 == 1, 1.0, -1.0)
    q[tail] *= 1 + eps * sign[tail]
    return q / q.sum()


def horizon(rng: np.random.Generator, names: np.ndarray, p: np.ndarray, n: int) -> tuple[ModelProfile, np.ndarray]:
    codes = rng.choice(len(p), n, p=p)
    out = ModelProfile("m", "")
    for part in np.array_split(codes, 5):
        w = ModelProfile("m", "")
        w.update(ColumnarBatch("m", "", len(part), np.zeros(len(part), np.int64), np.ones(len(part)),
                               categorical={"c": names[part]}), {"c": CATEGORICAL})
        out.merge(w)
    return out, np.bincount(codes, minlength=len(p)).astype(np.float64)


def exact_p(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    r, c = stats.pool_rare(ref_counts, cur_counts)
    keep = (r + c) > 0
    if keep.sum() < 2:
        return 1.0
    return float(sps.chi2_contingency(np.vstack([r[keep], c[keep]]), correction=False)[1])


def rates(rng: np.random.Generator, names: np.ndarray, p: np.ndarray, q: np.ndarray, n: int,
          trials: int) -> tuple[float, float]:
    """(otel-ml detection rate, exact test detection rate), each trial a fresh reference and current."""
    ours = exact = 0
    for _ in range(trials):
        ref, rc = horizon(rng, names, p, n)
        cur, cc = horizon(rng, names, q, n)
        [f] = compare(ref, cur, CONFIG).features
        ours += bool(f.overall.detected)
        exact += exact_p(rc, cc) < ALPHA
    return ours / trials, exact / trials


def smallest_detected(curve: list[tuple[float, float]]) -> float:
    """The effect at which the detection rate first reaches 50% (linear interpolation), NaN if never."""
    for (e0, r0), (e1, r1) in itertools.pairwise(curve):
        if r1 >= 0.5 > r0:
            return e0 + (0.5 - r0) * (e1 - e0) / (r1 - r0)
    return float("nan") if not curve or curve[0][1] < 0.5 else curve[0][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, trials = args.rows, args.trials
    print(f"A/A: {trials} reference/current pairs per row, {n:,} rows each, alpha = {ALPHA}.\n")
    print("| categories K | distinct seen (of K) | otel-ml false alarms | exact chi-square false alarms |")
    print("|---|---|---|---|")
    for k in (10, 1_000, 10_000, 100_000):
        names = np.array([f"cat-{i}" for i in range(k)])
        p = zipf(k)
        seen = int((np.bincount(rng.choice(k, n, p=p), minlength=k) > 0).sum())
        ours, exact = rates(rng, names, p, p, n, trials)
        print(f"| {k:,} | {seen:,} | {ours:.1%} | {exact:.1%} |", flush=True)
    print(f"\nPower: detection rate per effect ({trials // 2} pairs each), and the effect detected half the time.\n")
    print("| K | shift | effects → otel-ml / exact | smallest effect detected half the time: otel-ml / exact "
          "(ratio) |")
    print("|---|---|---|---|")
    for k in (1_000, 100_000):
        names = np.array([f"cat-{i}" for i in range(k)])
        p = zipf(k)
        for label, shifted, effects in (("top: share moved from 1st to 2nd category", top_shift,
                                         (0.004, 0.008, 0.012, 0.016, 0.024, 0.032)),
                                        ("tail: ±ε of each tail category's share", tail_shift,
                                         (0.05, 0.1, 0.2, 0.3, 0.4, 0.6))):
            curve_ours, curve_exact, cells = [], [], []
            for e in effects:
                ours, exact = rates(rng, names, p, shifted(p, e), n, max(10, trials // 2))
                curve_ours.append((e, ours))
                curve_exact.append((e, exact))
                cells.append(f"{e:g}: {ours:.0%} / {exact:.0%}")
            a, b = smallest_detected(curve_ours), smallest_detected(curve_exact)
            print(f"| {k:,} | {label} | {'; '.join(cells)} | {a:.3g} / {b:.3g} ({a / b:.2f}×) |", flush=True)


if __name__ == "__main__":
    main()
