"""What the sketches alone cost: Apache DataSketches fed the ingest load's columns, no decoding, no I/O.

    .venv/bin/python -m bench.sketch_limit [--rows 200000]

The same 20 columns as bench/loadgen.py's spans (18 numeric from N(0, 1), 2 categorical of 8 letters), already in
NumPy, in blocks of 512 rows (one request): per block 18 ``kll_doubles_sketch.update`` of a contiguous array (k =
200, the processor's default) and, per categorical column, ``np.unique`` counts into a ``frequent_strings_sketch``
(one update per distinct value with its count: the cheapest way DataSketches' Python API takes a column). Rows per
CPU-second of this process (one thread, so one core) is the limit issue 48 measures ingest against: the processor
does this and more (decoding, exact grids, counts, journal, gRPC), so the ratio says how much of its time is the
sketches' own.
"""

from __future__ import annotations

import argparse
import time

import datasketches as ds
import numpy as np

BLOCK = 512


def columns(rows: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The load's columns as a decoder hands them over: one contiguous array per feature."""
    rng = np.random.default_rng(seed)
    numeric = [rng.normal(size=rows) for _ in range(18)]
    categorical = [rng.choice(np.array(list("abcdefgh")), size=rows) for _ in range(2)]
    return numeric, categorical


def rows_per_cpu_second(rows: int = 200_000, kll_k: int = 200, seed: int = 0) -> float:
    """Rows per CPU-second of the DataSketches-only loop over ``rows`` rows.

    >>> rows_per_cpu_second(2_048) > 0
    True
    """
    numeric, categorical = columns(rows, seed)
    kll = [ds.kll_doubles_sketch(kll_k) for _ in numeric]
    frequent = [ds.frequent_strings_sketch(10) for _ in categorical]
    started = time.process_time()
    for start in range(0, rows, BLOCK):
        for sketch, column in zip(kll, numeric):
            sketch.update(column[start:start + BLOCK])
        for sketch, column in zip(frequent, categorical):
            values, counts = np.unique(column[start:start + BLOCK], return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist()):
                sketch.update(value, count)
    return rows / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    print(f"DataSketches alone: {rows_per_cpu_second(args.rows):,.0f} rows per CPU-second")


if __name__ == "__main__":
    main()
