"""Performance alert episodes on a stationary model: how often ``ml_performance_degraded`` and
``ml_performance_estimated_degraded`` would raise an alert (``for: 10m``) when nothing changed, at the level the
processor uses for performance and at the drift decisions' level it used before (issue 32 case 4).

    .venv/bin/python -m bench.performance_episodes [--days 30] [--models 8] [--rows-per-day 5000]

A calibrated binary classifier (scores Beta(2, 2), labels Bernoulli(score)) with a labelled baseline of 5,000
rows (its calibration map, for CBPE) is replayed through the processor's own label join and performance windows
(``labels.GroundTruth``, default performance config: 1-hour windows, a 1-day horizon): each step of event time
(``--step`` seconds) brings its predictions and the labels of the predictions made a label delay earlier, and the
horizon is assessed (``analyze.performance.assess``), realized and estimated, exactly as an evaluation does. The
data only changes once a step, so an evaluation every 10 s in between would repeat the same decision: an episode
is a run of degraded decisions (any metric) spanning at least ``alert_for_seconds`` (600 s).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from otel_ml.analyze.drift import DriftConfig
from otel_ml.analyze.performance import PerformanceConfig, assess, performance_alpha
from otel_ml.decode.batch import ColumnarBatch, LabelBatch
from otel_ml.decode.ids import id_hash
from otel_ml.labels.ground_truth import GroundTruth
from otel_ml.labels.pending import LabelsConfig
from otel_ml.profile.performance import reference_performance

NS = 1_000_000_000


def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    p = rng.beta(2.0, 2.0, n)
    return p, (rng.uniform(size=n) < p).astype(float)


def replay(days: float, rows_per_day: int, step_s: int, delay_s: int, seed: int,
           levels: dict[str, float]) -> dict[str, np.ndarray]:
    """Per level: a bool per step, whether any realized or estimated metric was called degraded."""
    rng = np.random.default_rng(seed)
    ref_p, ref_y = draw(rng, 5000)
    reference = reference_performance(ref_y, np.full(len(ref_y), ""), (ref_p >= 0.5).astype(float), None, ref_p)
    cfg = PerformanceConfig()
    with tempfile.TemporaryDirectory() as tmp:
        gt = GroundTruth(tmp, LabelsConfig(), cfg)
        steps = int(days * 86_400 / step_s)
        rows = max(1, round(rows_per_day * step_s / 86_400))
        sent: list[tuple[list[str], np.ndarray]] = []
        out = {name: np.zeros(steps, bool) for name in levels}
        for i in range(steps):
            t = (i + 1) * step_s * NS
            p, y = draw(rng, rows)
            ids = [f"{seed}-{i}-{k}" for k in range(rows)]
            gt.on_predictions(ColumnarBatch(
                "m", "", rows, np.full(rows, t, np.int64), np.ones(rows),
                numeric={"prediction": (p >= 0.5).astype(float), "prediction.probability": p},
                span_end_ns=np.full(rows, t, np.int64), span_duration_s=np.full(rows, np.nan),
                span_error=np.zeros(rows, bool), prediction_id=id_hash("m", np.array(ids))))
            sent.append((ids, y))
            back = i - delay_s // step_s  # the labels known by now
            if back >= 0:
                lab_ids, lab_y = sent[back]
                gt.on_labels(LabelBatch("m", "", id_hash("m", np.array(lab_ids)), lab_y,
                                        np.full(len(lab_ids), ""), np.full(len(lab_ids), t, np.int64)))
                sent[back] = ([], np.zeros(0))
            gt.advance()
            current = gt.current("m", "")
            if i * step_s < cfg.horizon_seconds:  # the first day fills the horizon
                continue
            for name, level in levels.items():
                report = assess("m", "", current, reference, level, cfg.threshold, None, cfg.min_labels,
                                cfg.tolerance)
                out[name][i] = any(report.degraded.values()) or any(report.estimated_degraded.values())
    return out


def episodes(fired: np.ndarray, for_steps: int) -> int:
    """Runs of consecutive firing steps spanning at least ``for_steps`` steps after the first."""
    count = run = 0
    for f in fired:
        run = run + 1 if f else 0
        if run == for_steps + 1:
            count += 1
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--models", type=int, default=8, help="independent stationary models (seeds)")
    ap.add_argument("--rows-per-day", type=int, default=5000)
    ap.add_argument("--step", type=int, default=300, help="seconds of event time per step (default %(default)s)")
    ap.add_argument("--label-delay", type=int, default=3600, help="seconds (default %(default)s)")
    ap.add_argument("--levels", type=float, nargs="*", default=[0.05], help="fixed levels to read too")
    args = ap.parse_args()
    drift, perf = DriftConfig(), PerformanceConfig()
    levels = {"drift level (before)": drift.evaluation_alpha, "performance level (now)": performance_alpha(drift, perf),
              **{f"fixed {level:g}": level for level in args.levels}}
    for_steps = max(1, -(-int(drift.alert_for_seconds) // args.step))
    started = time.process_time()
    totals = dict.fromkeys(levels, 0)
    fired = dict.fromkeys(levels, 0)
    steps = 0
    for seed in range(args.models):
        got = replay(args.days, args.rows_per_day, args.step, args.label_delay, seed, levels)
        for name, f in got.items():
            totals[name] += episodes(f, for_steps)
            fired[name] += int(f.sum())
        steps += len(next(iter(got.values())))
    model_days = args.models * (args.days - perf.horizon_seconds / 86_400)
    print(f"{args.models} stationary models × {args.days:g} days ({model_days:g} model-days evaluated), "
          f"{args.rows_per_day} labelled predictions a day, a step every {args.step} s, labels {args.label_delay} s "
          f"late; horizon {perf.horizon_seconds:g} s in windows of {perf.window_seconds:g} s; "
          f"{time.process_time() - started:.0f} CPU-s\n")
    print("| level | α (family-wise) | steps degraded | alert episodes | per model per 30 days |")
    print("|---|---|---|---|---|")
    for name, level in levels.items():
        print(f"| {name} | {level:.3g} | {fired[name]} of {steps} | {totals[name]} | "
              f"{totals[name] / model_days * 30:.2f} |")


if __name__ == "__main__":
    main()
