"""What multivariate drift (PCA reconstruction error, otel_ml/profile/reconstruction.py) costs at ingest.

    .venv/bin/python -m bench.multivariate_cost

Per batch of 512 rows, in-process and measured in the same run: each row's reconstruction error at 20 and at 200
numeric features (standard normal inputs mixed through a random matrix, so a few components carry the variance),
beside the window update (sketches of every column) of the same batch, which is what ingest costs without it.
Prints a Markdown table: µs per row, and the window update with the error column added as a ratio of without.
"""

from __future__ import annotations

import time

import numpy as np

from otel_ml import semconv
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.reconstruction import Reconstruction
from otel_ml.profile.sketch import NUMERIC

ROWS = 512


def per_call(fn, repeat: int = 200) -> float:  # type: ignore[no-untyped-def]
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    print("## Multivariate drift at ingest (bench/multivariate_cost.py)\n")
    print("Command: `.venv/bin/python -m bench.multivariate_cost`.\n")
    print("| numeric features | components (65% of variance) | reconstruction error, µs per row | window update, "
          "µs per row | window update + error vs without |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for d in (20, 200):
        mix = rng.normal(0, 1, (d, d)) * np.where(rng.random((d, d)) < 0.1, 1.0, 0.05)
        reference = rng.normal(0, 1, (20_000, d)) @ mix
        names = [f"f{i}" for i in range(d)]
        model = Reconstruction.fit({n: reference[:, i] for i, n in enumerate(names)}, {})
        x = rng.normal(0, 1, (ROWS, d)) @ mix
        numeric = {n: x[:, i] for i, n in enumerate(names)}
        errors = per_call(lambda: model.errors(numeric, {}, ROWS))  # noqa: B023
        kinds = dict.fromkeys(names, NUMERIC)
        plain = ColumnarBatch("m", "", ROWS, np.zeros(ROWS, np.int64), np.ones(ROWS), numeric=dict(numeric))
        with_error = ColumnarBatch("m", "", ROWS, np.zeros(ROWS, np.int64), np.ones(ROWS),
                                   numeric={**numeric, semconv.MULTIVARIATE_FEATURE: model.errors(numeric, {}, ROWS)})
        profile, profile2 = ModelProfile("m", ""), ModelProfile("m", "")
        update = per_call(lambda: profile.update(plain, kinds))  # noqa: B023
        kinds2 = {**kinds, semconv.MULTIVARIATE_FEATURE: NUMERIC}
        update2 = per_call(lambda: profile2.update(with_error, kinds2))  # noqa: B023
        us = 1e6 / ROWS
        print(f"| {d} | {model.components.shape[0]} | {errors * us:.2f} | {update * us:.2f} | "
              f"{(update2 + errors) / update:.2f}× |")


if __name__ == "__main__":
    main()
