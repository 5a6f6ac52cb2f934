"""Performance over time: what the performance archive costs on disk and what reading it costs.

    .venv/bin/python -m bench.performance_history [--models 100] [--days 30] [--per-day 240] [--repeat 5]

A real, durable ``otel-ml serve`` (``--window 86400 --horizon 604800``, the README's backfill settings, default
``performance`` settings: hourly windows, a one-day horizon) gets ``--models`` binary classifiers, each with
``--days`` days of predictions (ids, probabilities) and their labels a day late, replayed in time order through
its OTLP receiver (``otel_ml.instrument.replay``, what ``otel-ml replay`` sends). Then, each ``--repeat`` times:
the performance document of one model over the whole period (``?from=&to=``, with its history), its model page
(which draws that history), and the overview of every model (a performance column each). Baselines in the same
run: the live performance document (no range) and one scrape of ``/metrics``. Bytes: the performance archive's
rows per resolution, and the live performance windows, per model-window.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from bench.scrape import free_port
from otel_ml.instrument.replay import ReplayColumns, build_replay, send_replay


def fetch(url: str) -> tuple[float, int]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as r:
        body = r.read()
    return time.perf_counter() - t, len(body)


def month(rng: np.random.Generator, days: int, per_day: int, start: pd.Timestamp) -> pd.DataFrame:
    n = days * per_day
    t = start + pd.to_timedelta(np.sort(rng.integers(0, days * 86_400, n)), "s")
    x = rng.normal(size=n)
    p = 1 / (1 + np.exp(-2 * x))
    return pd.DataFrame({"time": t, "id": [f"r{i}" for i in range(n)], "x": x, "p": p, "pred": (p >= 0.5).astype(int),
                         "y": (rng.uniform(size=n) < p).astype(int), "known": t + pd.Timedelta(days=1)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=240)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="otel-ml-bench-perf-"))
    grpc_port, prom, ui = free_port(), free_port(), free_port()
    (work / "c.yaml").write_text("state:\n  checkpoint_interval_seconds: 5\n")
    proc = subprocess.Popen([sys.executable, "-m", "otel_ml.cli", "serve", "--config", str(work / "c.yaml"),
                             "--state-dir", str(work / "state"), "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
                             "--prometheus-endpoint", f"127.0.0.1:{prom}", "--no-otlp-http", "--ui-endpoint",
                             f"127.0.0.1:{ui}", "--window", "86400", "--horizon", "604800", "--evaluation-interval",
                             "2", "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().startswith("otel-ml serving")
    rng = np.random.default_rng(0)
    start = pd.Timestamp.now(tz="UTC").normalize().tz_localize(None) - pd.Timedelta(days=args.days)
    columns = ReplayColumns(time="time", prediction="pred", probability="p", prediction_id="id", target="y",
                            target_time="known")
    labels = 0
    t0 = time.perf_counter()
    try:
        for k in range(args.models):
            frame = month(rng, args.days, args.per_day, start)
            frame.loc[frame.known > frame.time.max(), "y"] = np.nan  # not known yet
            path = work / f"m{k}.parquet"
            frame.to_parquet(path)
            replay = build_replay(str(path), f"model-{k:03d}", "", columns, max_request_span_s=3600)
            send_replay(f"127.0.0.1:{grpc_port}", replay)
            labels += replay.labels
        fed = time.perf_counter() - t0
        api = f"http://127.0.0.1:{ui}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # every model evaluated with its labels
            doc = json.loads(urllib.request.urlopen(f"{api}/api/v1/labels", timeout=60).read())
            if sum(r["joined"] for r in doc["labels"]) >= labels:
                break
            time.sleep(2)
        time.sleep(6)  # one checkpoint more: the archive holds what left memory
        rng_query = f"?from={int(start.timestamp())}&to={int(time.time())}"
        model = f"{api}/models/model-000/versions/_"
        timings: dict[str, list[float]] = {}
        sizes: dict[str, int] = {}
        for _ in range(args.repeat):
            for name, url in (("metrics scrape (baseline)", f"http://127.0.0.1:{prom}/metrics"),
                              ("performance, live horizon (baseline)",
                               f"{api}/api/v1/models/model-000/versions/_/performance"),
                              (f"performance, {args.days} days with history",
                               f"{api}/api/v1/models/model-000/versions/_/performance{rng_query}"),
                              (f"model page ({args.days}-day chart)", model + rng_query),
                              (f"overview of {args.models} models", f"{api}/")):
                seconds, size = fetch(url)
                timings.setdefault(name, []).append(seconds)
                sizes[name] = size
        history = json.loads(urllib.request.urlopen(
            f"{api}/api/v1/models/model-000/versions/_/performance{rng_query}", timeout=300).read())
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    conn = sqlite3.connect(work / "state" / "otel-ml.db")
    rows = conn.execute("SELECT resolution, COUNT(*), AVG(LENGTH(profile)), MAX(LENGTH(profile)) FROM "
                        "performance_archive GROUP BY resolution ORDER BY 2 DESC").fetchall()
    live = conn.execute("SELECT COUNT(*), AVG(LENGTH(profile)), MAX(LENGTH(profile)) FROM "
                        "performance_window").fetchone()
    total = conn.execute("SELECT SUM(LENGTH(profile)) FROM performance_archive").fetchone()[0] or 0
    conn.close()
    base = statistics.median(timings["performance, live horizon (baseline)"])
    print(f"### Performance over time (`python -m bench.performance_history --models {args.models} --days "
          f"{args.days} --per-day {args.per_day}`)\n")
    print(f"{args.models} models × {args.days} days × {args.per_day} predictions a day, labels a day late "
          f"({labels:,} labels), replayed in {fed:.0f} s. Median of {args.repeat} fetches each; ratio to the live "
          "performance document of the same model in the same run.\n")
    print("| read | median s | × live document | bytes |\n|---|---:|---:|---:|")
    for name, values in timings.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.3f} | {med / base:.1f}× | {sizes[name]:,} |")
    print(f"\nThe {args.days}-day history has {len(history['performance']['history'])} parts; "
          f"labelled {history['performance']['labeled']:,} of {history['performance']['predictions_with_id']:,}.\n")
    print("| performance rows | count | mean bytes | max bytes |\n|---|---:|---:|---:|")
    for resolution, count, mean, most in rows:
        print(f"| archive, {resolution} | {count:,} | {mean:,.0f} | {most:,} |")
    if live and live[0]:
        print(f"| live windows (last checkpoint) | {live[0]:,} | {live[1]:,.0f} | {live[2]:,} |")
    print(f"\nArchive of performance: {total / 1e6:.2f} MB for {args.models} models × {args.days} days "
          f"({total / args.models / args.days / 1e3:.1f} KB per model-day).")


if __name__ == "__main__":
    main()
