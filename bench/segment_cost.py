"""What segments cost at evaluation: drift evaluation time and resident memory of many segmented models, against
the same models without segments, measured in the same run (issue 33).

    .venv/bin/python -m bench.segment_cost [--models 100] [--features 50] [--segments 10]

Each model gets the default horizon (15 one-minute windows) after 15 windows pinned as its reference, 1,000
predictions per window, ``--features`` numeric features and a categorical ``segment`` column with ``--segments``
values (``segments.by: [segment]``). The same rows go to a twin set of window sets that are not segmented: the
baseline. Evaluation is ``analyze.drift.compare`` of every model's reference against its current horizon (which
includes, for a segmented model, every (segment, feature) test and the attribution), first and next (the service
keeps its merges between evaluations). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np

from otel_ml.analyze.drift import compare
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile.window import WindowConfig, WindowedProfile

ROWS = 1000
WINDOWS = 31  # 15 pinned as reference, a horizon of 15, and the next one


def build(models: int, features: int, segments: int, segmented: bool, seed: int) -> list[WindowedProfile]:
    rng = np.random.default_rng(seed)
    names = [f"f{i}" for i in range(features)]
    labels = np.array([f"s{k}" for k in range(segments)])
    out = []
    for m in range(models):
        model = f"m{m}"
        wp = WindowedProfile(model, "", WindowConfig(), max_features=features + 1,
                             segment_by={model: ("segment",)} if segmented else None, max_segments=segments + 1)
        out.append(wp)
        for w in range(WINDOWS):
            t = np.full(ROWS, (1_700_000_000 + w * 60) * 10**9, dtype=np.int64)
            b = ColumnarBatch(model, "", ROWS, t, np.ones(ROWS), numeric={n: rng.normal(size=ROWS) for n in names},
                              categorical={"segment": rng.choice(labels, ROWS)}, span_end_ns=t[:1],
                              span_duration_s=np.array([0.01]), span_error=np.array([False]))
            wp.update(b)
    return out


def resident_mb() -> float:
    """Resident memory now (not the peak: the two sets are built one after the other, both kept)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def evaluate(models: list[WindowedProfile]) -> tuple[float, int, int]:
    """Seconds to compare every model, features tested, segment reports made."""
    start = time.perf_counter()
    features = segments = 0
    for wp in models:
        if wp.reference is not None:
            report = compare(wp.reference, wp.current())
            features += len(report.features)
            segments += len(report.segments)
    return time.perf_counter() - start, features, segments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--segments", type=int, default=10)
    args = parser.parse_args()
    rows = []
    kept = []
    for segmented in (False, True):
        gc.collect()
        before = resident_mb()
        models = build(args.models, args.features, args.segments, segmented, seed=1)
        gc.collect()
        grown = resident_mb() - before
        first, features, segments = evaluate(models)
        following, _, _ = evaluate(models)
        rows.append((segmented, grown, first, following, features, segments))
        kept.append(models)
    print(f"{args.models} models × {args.features} features, {args.segments} segments per model when segmented; "
          f"reference + 16 windows of {ROWS:,} rows each\n")
    print("| segments | resident growth MB | evaluation, first s | evaluation, next s | features tested | "
          "segment reports |")
    print("|---|---|---|---|---|---|")
    for segmented, grown, first, following, features, segments in rows:
        print(f"| {args.segments if segmented else 'none'} | {grown:,.0f} | {first:.2f} | {following:.2f} | "
              f"{features:,} | {segments:,} |")
    (_, g0, f0, n0, _, _), (_, g1, f1, n1, _, _) = rows
    print(f"\nSegmented / not: evaluation {f1 / f0:.2f}× (first), {n1 / n0:.2f}× (next); memory {g1 / max(g0, 1):.2f}×")


if __name__ == "__main__":
    main()
