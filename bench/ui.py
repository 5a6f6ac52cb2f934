"""What the UI costs to serve: pages and API documents of a model with many features, over HTTP.

    .venv/bin/python -m bench.ui [--features 1000] [--repeat 5]

A real ``otel-ml serve`` (UI on loopback) gets one model with ``--features`` numeric features (a baseline of
2,000 rows, then 2,000 shifted rows as batch spans); then each page and API document is fetched ``--repeat``
times. Baseline in the same run: one scrape of /metrics of the same processor (what Prometheus asks for every
15-30 s).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pandas as pd

from bench.detection import EXPORT, batch_request
from bench.scrape import Processor


def fetch(url: str) -> tuple[float, int]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
    return time.perf_counter() - t, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    names = [f"f{i:04d}" for i in range(args.features)]
    work = Path(tempfile.mkdtemp(prefix="otel-ml-bench-ui-"))
    ref = pd.DataFrame({n: rng.normal(0, 1, 2000) for n in names})
    ref.to_csv(work / "ref.csv", index=False)
    (work / "baselines").mkdir()
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "wide", "--input",
                    str(work / "ref.csv"), "--output", str(work / "baselines" / "wide.json")], check=True,
                   capture_output=True)
    p = Processor(window="60", horizon="60", evaluation_interval=1.0, ui=True,
                  extra=("--baseline-dir", str(work / "baselines")))
    try:
        cur = pd.DataFrame({n: rng.normal(0.3 if i % 10 == 0 else 0, 1, 2000) for i, n in enumerate(names)})
        with grpc.insecure_channel(f"127.0.0.1:{p.grpc}", options=[("grpc.max_send_message_length", 256 << 20)]) \
                as channel:
            channel.unary_unary(EXPORT)(batch_request("wide", cur, time.time_ns(), None, rows_per_span=200),
                                        timeout=120)
        ui = f"http://127.0.0.1:{p.ui}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(ui + "/api/v1/models/wide/versions/_/drift", timeout=60) as r:
                    if b'"current_rows": 2000' in r.read():
                        break
            except OSError:
                pass
            time.sleep(0.5)
        time.sleep(2)
        pages = [("/metrics (baseline)", f"http://127.0.0.1:{p.prom}/metrics"),
                 ("models page /", ui + "/"),
                 ("model page, every feature", ui + "/models/wide/versions/_"),
                 ("model page sorted by effect", ui + "/models/wide/versions/_?sort=effect"),
                 ("feature page (3 charts)", ui + "/models/wide/versions/_/features/f0000"),
                 ("GET /api/v1/models", ui + "/api/v1/models"),
                 ("GET /api/v1/.../drift", ui + "/api/v1/models/wide/versions/_/drift"),
                 ("GET /api/v1/.../features/f0000", ui + "/api/v1/models/wide/versions/_/features/f0000")]
        print(f"One model, {args.features:,} numeric features, horizon of 2,000 rows; median of {args.repeat} "
              "fetches over loopback HTTP (no compression asked).\n")
        print("| request | median s | bytes |")
        print("|---|---|---|")
        for label, url in pages:
            fetch(url)  # first use (matplotlib's import, caches)
            times, size = [], 0
            for _ in range(args.repeat):
                dt, size = fetch(url)
                times.append(dt)
            print(f"| {label} | {statistics.median(times):.3f} | {size:,} |")
        print()
    finally:
        p.stop()


if __name__ == "__main__":
    main()
