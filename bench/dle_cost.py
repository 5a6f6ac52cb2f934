"""What a regressor's label-free estimates (expected-loss models, otel_ml/profile/loss_model.py) cost at ingest.

    .venv/bin/python -m bench.dle_cost [--window-rows 1000000]

The bench.loadgen request shape (512 single-prediction spans, 18 numeric and 2 categorical features) with a
numeric ``ml.prediction``: a regressor. Its baseline is built from 20,000 reference rows of the same shape
(``build_baseline``: three LightGBM loss models of 100 trees, as for NannyML's DLE). In-process, measured in the
same run: the compiled decode and the window update (sketches of every column) per request, and the performance
window's count of ``--window-rows`` predictions arriving in one window (``GroundTruth.count_predictions``) without
loss models, with them at the default ``performance.loss_rows_per_window`` (10,000: every prediction until then,
a weighted sample after), and with every prediction evaluated. Prints a Markdown table: µs per prediction, the
ingest path's cost as a ratio of the path without loss models, and how far the budget's estimate is from every
prediction's.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from bench.costs import kinds_of, per_call
from otel_ml.analyze.performance import PerformanceConfig
from otel_ml.decode import decode_request
from otel_ml.labels.ground_truth import GroundTruth
from otel_ml.labels.pending import LabelsConfig
from otel_ml.profile.baseline import build_baseline
from otel_ml.profile.loss_model import _trees
from otel_ml.profile.model import ModelProfile

SPANS = 512


def rows(n: int, seed: int) -> pd.DataFrame:
    """Features like bench.loadgen's, a target, and a prediction whose error grows with n0 and differs by c0."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f"n{f}": rng.normal(0, 1, n) for f in range(18)})
    for f in range(2):
        df[f"c{f}"] = rng.choice(list("abcdefgh"), n)
    truth = 10 + df.n0 + 2 * df.n1 - df.n2
    noise = rng.normal(0, 1, n) * (1 + np.abs(df.n0)) * np.where(df.c0 == "a", 2.0, 1.0)
    df["prediction"], df["truth"] = truth + noise, truth
    return df


def request(df: pd.DataFrame) -> bytes:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    now = time.time_ns()
    rng = random.Random(0)
    for i, row in enumerate(df.itertuples(index=False)):
        span = ss.spans.add(name="predict", trace_id=rng.randbytes(16), span_id=rng.randbytes(8),
                            start_time_unix_nano=now + i * 1000, end_time_unix_nano=now + i * 1000 + 500_000)
        span.attributes.append(KeyValue(key="ml.model.name", value=AnyValue(string_value="regressor")))
        for f in range(18):
            span.attributes.append(KeyValue(key=f"ml.feature.n{f}", value=AnyValue(double_value=getattr(row, f"n{f}"))))
        for f in range(2):
            span.attributes.append(KeyValue(key=f"ml.feature.c{f}", value=AnyValue(string_value=getattr(row, f"c{f}"))))
        span.attributes.append(KeyValue(key="ml.prediction", value=AnyValue(double_value=row.prediction)))
    return req.SerializeToString()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--window-rows", type=int, default=1_000_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="otel-ml-dle-"))
    rows(20_000, 1).to_parquet(work / "reference.parquet")
    t0 = time.perf_counter()
    baseline = build_baseline(work / "reference.parquet", "regressor", prediction_column="prediction",
                              target_column="truth")
    fit_s = time.perf_counter() - t0
    reference = baseline.performance
    assert reference is not None and reference.loss_models
    data = request(rows(SPANS, 2).drop(columns=["truth"]))
    batch = decode_request(data).batches[0]
    kinds = kinds_of(batch)
    profile = ModelProfile("regressor", "")
    decode = per_call(lambda: decode_request(data), 200)
    update = per_call(lambda: profile.update(batch, kinds), 200)
    requests = max(1, args.window_rows // SPANS)

    def window(ref: object, budget: int) -> tuple[float, dict[str, float]]:
        """Seconds per request over a window of ``requests`` requests, and the window's sums."""
        gt = GroundTruth(tempfile.mkdtemp(dir=work), LabelsConfig(), PerformanceConfig(loss_rows_per_window=budget),
                         lambda m, v: ref)  # type: ignore[arg-type,return-value]
        start = time.perf_counter()
        for _ in range(requests):
            gt.count_predictions(batch)
        elapsed = (time.perf_counter() - start) / requests
        current = gt.current("regressor", "")
        return elapsed, current.sums if current is not None else {}

    plain, _ = window(None, 10_000)
    budgeted, sums = window(reference, PerformanceConfig().loss_rows_per_window)
    every, all_sums = window(reference, 10**12)
    base = decode + update + plain
    us = 1e6 / SPANS
    print("## A regressor's expected-loss models at ingest (bench/dle_cost.py)\n")
    print(f"Command: `.venv/bin/python -m bench.dle_cost --window-rows {args.window_rows}`. Fitting the three loss "
          f"models on 20,000 rows × 21 inputs: {fit_s:.1f} s. Tree walk: "
          f"{'compiled (_trees.c)' if _trees is not None else 'numpy'}; "
          f"{reference.loss_models['abs'].feature.shape[0]} trees per model, paths ≤ "
          f"{max(m.depth for m in reference.loss_models.values())} nodes. {requests * SPANS:,} predictions into one "
          "window.\n")
    print("| stage | µs per prediction | ingest path (decode + window update + count) vs without loss models |")
    print("|---|---|---|")
    print(f"| decode (compiled) | {decode * us:.2f} | |")
    print(f"| window update (sketches) | {update * us:.2f} | |")
    print(f"| count, no loss models | {plain * us:.2f} | 1.00× |")
    print(f"| count, loss models, `loss_rows_per_window` 10,000 (default) | {budgeted * us:.2f} | "
          f"{(decode + update + budgeted) / base:.2f}× |")
    print(f"| count, loss models, every prediction | {every * us:.2f} | {(decode + update + every) / base:.2f}× |")
    print()
    for name, total in (("MAE", "dle_ae"), ("MSE", "dle_se"), ("MAPE", "dle_ape")):
        a, b = sums[total] / sums["dle_n"], all_sums[total] / all_sums["dle_n"]
        print(f"- expected {name} from the budget's sample / from every prediction − 1: {a / b - 1:+.2e}")
    print(f"- predictions the sample stands for / predictions: {sums['dle_n'] / all_sums['dle_n']:.4f}")


if __name__ == "__main__":
    main()
