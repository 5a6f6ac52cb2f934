"""Alert episodes on a stationary model: how often the shipped alert rule fires when nothing changed.

    .venv/bin/python -m bench.alert_episodes [--days 2] [--seeds 1] [--rows-per-minute 1000] [--multivariate]
        [--segments 50]

A stationary stream of ``--days`` of event time (six features of every kind, bench.false_alarms' draw, and the
test of the four numeric ones' correlations, ``(correlation)``, as a seventh member of the family) is
replayed through the processor's own window code at its defaults: one-minute windows, a 15-minute horizon, the
first horizon pinned as reference, and an evaluation every 10 s of event time on the sliding horizon (the newest
window still filling, as in the service). Each evaluation's per-feature p-values are kept, so one replay is
read at several levels: the calibrated default and fixed ones.

An alert episode is what ``MLFeatureDrift`` (examples/prometheus, ``for: 10m``) would raise: one feature's
``overall`` decision at 1 over consecutive evaluations spanning at least ``alert_for_seconds``; a model episode
is a span of time in which any of its features has one. The bound the default level is derived from
(``DriftConfig.evaluation_alpha``): E[episodes in T] ≤ α·T/F.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.false_alarms import KINDS, draw
from otel_ml.analyze.drift import DriftConfig, compare
from otel_ml.profile.reconstruction import Reconstruction
from otel_ml.profile.window import WindowConfig, WindowedProfile
from otel_ml.semconv import CORRELATION_FEATURE, MULTIVARIATE_FEATURE

NS = 1_000_000_000
STEP_S = 10  # the service's default evaluation interval


def replay(days: float, rows_per_minute: int, seed: int, multivariate: bool = False,
           segments: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per evaluation (rows) and feature (columns): the overall p-value times the number of features (the
    Bonferroni-adjusted p-value, so ``adjusted < α`` is the decision at family-wise level α); NaN: no decision.
    ``multivariate``: also each row's PCA reconstruction error, ``(multivariate)``, the PCA fitted on 20,000 rows
    of the same draw as ``baseline build --multivariate`` fits it. ``segments``: rows spread evenly over that many
    segments (a categorical ``segment``, ``segments.by``); the second array holds per evaluation and segment the
    smallest adjusted p-value of its features (already multiplied by the model's segment test count)."""
    rng = np.random.default_rng(seed)
    wp = WindowedProfile("m", "", WindowConfig(), segment_by={"m": ("segment",)} if segments else None,
                         max_segments=segments + 1)
    cfg = DriftConfig(alpha=0.5)  # any level: only the p-values are kept
    rows = rows_per_minute * STEP_S // 60
    steps = int(days * 86_400 / STEP_S)
    names = [*sorted(KINDS), CORRELATION_FEATURE]  # the test of the numeric features' correlations is one more
    reconstruction = None
    if multivariate:
        fit = draw(rng, 20_000)
        reconstruction = Reconstruction.fit(fit.numeric, fit.categorical)
        names.append(MULTIVARIATE_FEATURE)
    out = np.full((steps, len(names)), np.nan)
    seg_out = np.full((steps, segments), np.nan)
    labels = [f"segment=s{k}" for k in range(segments)]
    for i in range(steps):
        batch = draw(rng, rows)
        if segments:
            batch.categorical["segment"] = rng.choice(np.array([f"s{k}" for k in range(segments)]), rows)
        if reconstruction is not None:
            batch.numeric[MULTIVARIATE_FEATURE] = reconstruction.errors(batch.numeric, batch.categorical, rows)
        # Event times spread over the step, so windows fill the way live traffic fills them.
        t0 = i * STEP_S * NS
        batch.row_time_ns = t0 + np.sort(rng.integers(0, STEP_S * NS, rows))
        batch.span_end_ns = batch.row_time_ns  # one span per row, as the serving path sends them
        batch.span_duration_s = np.full(rows, np.nan)
        batch.span_error = np.zeros(rows, bool)
        wp.update(batch)
        if wp.reference is None:
            continue
        report = compare(wp.reference, wp.current(), cfg)
        for f in report.features:
            if not f.withheld_reason and f.overall.detected is not None and f.feature in names:
                out[i, names.index(f.feature)] = min(1.0, f.overall.score * len(report.features))
        for seg in report.segments:
            if seg.detected is not None and seg.p_values:
                seg_out[i, labels.index(seg.segment)] = min(seg.p_values.values())
    return out, seg_out


def episodes(fired: np.ndarray, for_steps: int) -> list[tuple[int, int]]:
    """Runs of consecutive firing evaluations long enough for the alert rule: (first, last) step of each."""
    runs, start = [], None
    for i, f in enumerate(np.append(fired, False)):
        if f and start is None:
            start = i
        elif not f and start is not None:
            if i - start >= for_steps:
                runs.append((start, i - 1))
            start = None
    return runs


def model_episodes(adjusted: np.ndarray, alpha: float, for_steps: int) -> tuple[int, int, int]:
    """(feature episodes, model episodes, firing evaluations) at family-wise level ``alpha``."""
    fired = np.nan_to_num(adjusted, nan=1.0) < alpha
    covered = np.zeros(len(adjusted) + 1, bool)
    n_feature = 0
    for j in range(adjusted.shape[1]):
        for a, b in episodes(fired[:, j], for_steps):
            n_feature += 1
            covered[a:b + 1] = True
    n_model = int(np.sum(covered[1:] & ~covered[:-1]) + covered[0])
    return n_feature, n_model, int(fired.any(axis=1).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--rows-per-minute", type=int, default=1000)
    parser.add_argument("--multivariate", action="store_true",
                        help="also the PCA reconstruction error, (multivariate), as baseline build --multivariate")
    parser.add_argument("--segments", type=int, default=0,
                        help="rows spread over this many segments (segments.by): also the segments' alert episodes")
    args = parser.parse_args()
    default = DriftConfig()
    for_steps = int(default.alert_for_seconds // STEP_S)
    t = time.perf_counter()
    replays = [replay(args.days, args.rows_per_minute, seed, args.multivariate, args.segments)
               for seed in range(args.seeds)]
    runs = [r[0] for r in replays]
    elapsed = time.perf_counter() - t
    days = args.days * args.seeds
    evaluated = sum(int((~np.isnan(r).all(axis=1)).sum()) for r in runs)
    print(f"{args.seeds} stationary replay(s) of {args.days:g} days ({days:g} days of event time), "
          f"{args.rows_per_minute:,} rows per minute, {len(KINDS)} features and their correlations"
          f"{' and reconstruction error' if args.multivariate else ''}; windows 60 s, "
          f"horizon 900 s, "
          f"an evaluation every {STEP_S} s: {evaluated:,} evaluations ({elapsed:.0f} s to replay). "
          f"Alert rule: `for: {default.alert_for_seconds / 60:g}m`.\n")
    print("| level per evaluation (family-wise) | evaluations firing | feature alert episodes | model alert episodes "
          "| bound α·T/F | model episodes per 30 days |")
    print("|---|---|---|---|---|---|")
    levels = [("0.05", 0.05), ("0.01", 0.01), ("0.001", 0.001),
              (f"{default.evaluation_alpha:.2g} (default: 10 min / 30 days)", default.evaluation_alpha)]
    print_levels(runs, levels, for_steps, evaluated, days)
    if args.segments:
        print(f"Segments ({args.segments}, rows spread evenly; `MLSegmentDrift`: a segment's decision at 1 for "
              f"{default.alert_for_seconds / 60:g} min):\n")
        print("| level (family-wise over the model's segment tests) | evaluations with a segment firing | segment "
              "alert episodes | model segment-alert episodes | bound α·T/F | per 30 days |")
        print("|---|---|---|---|---|---|")
        print_levels([seg for _, seg in replays], levels, for_steps, evaluated, days)


def print_levels(runs: list[np.ndarray], levels: list[tuple[str, float]], for_steps: int, evaluated: int,
                 days: float) -> None:
    """One table row per level: firing evaluations, episodes of one member, of the model, and the bound."""
    for label, alpha in levels:
        feat = model = firing = 0
        for r in runs:
            f, m, fi = model_episodes(r, alpha, for_steps)
            feat, model, firing = feat + f, model + m, firing + fi
        bound = alpha * evaluated * STEP_S / DriftConfig().alert_for_seconds
        print(f"| {label} | {firing:,} ({firing / evaluated:.2%}) | {feat} | {model} | {bound:.2f} "
              f"| {model * 30 / days:.2f} |")
    print()


if __name__ == "__main__":
    main()
