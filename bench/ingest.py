"""Processor ingest over loopback gRPC: spans per second per core of *processor* CPU time, at 1 and 2 cores.

    .venv/bin/python -m bench.ingest [--seconds 10] [--threads 2] [--durable both|on|off] [--cores 1,2] [--dle]

The load comes from a separate process (bench/loadgen.py: pre-serialized requests of 512 spans of 20
features, 18 numeric and 2 categorical, the shape of issue "Performance"). The processor's CPU time (user +
system, from /proc) over the run divides the spans it acknowledged. ``--cores N`` pins the processor to
CPUs 0..N-1 with taskset; the load generator is pinned to the last CPU, so on a 2-core machine the "2 cores"
run shares one core with the load (its CPU share is reported). A bench, not a test: figures vary with the
machine; compare ratios measured in the same run.

``--multivariate``: the same with the baseline built with no multivariate state (``--correlation-features 0``) and
with all of it (``--multivariate``, and the correlation moments of 10 features, the default) (issue 34).
``--dle``: a regressor's load (a numeric ml.prediction per span) against a processor given the model's baseline,
alternately one built without a target (drift only) and one built with it, whose three expected-loss models the
processor then evaluates at ingest (issue 32: label-free estimates for regressors); ``--rounds`` pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.sketch_limit import rows_per_cpu_second

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of a process, and of its live child processes (receiver workers)."""
    main = children = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
        if stat.parent.name == str(pid):
            main += seconds
        elif fields[1] == str(pid):  # fields[1]: parent pid
            children += seconds
    return main, children


_PORTS_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now and not handed out before in this process (the kernel may return the port it just
    freed to the next bind(0), so two calls in a row could otherwise be equal)."""
    import socket

    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS_HANDED_OUT:
            _PORTS_HANDED_OUT.add(port)
            return port


def taskset(cpus: list[int]) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, cpus))]


def dle_baselines(work: Path, multivariate: bool = False) -> tuple[Path, Path]:
    """Two baseline dirs for bench-model from 20,000 rows shaped like the load: drift only, and with the target
    (so with the expected-loss models) or, with ``multivariate``, with the PCA of the features."""
    import random

    from bench.loadgen import regression_prediction
    from otel_ml.profile.baseline import build_baseline

    rng = random.Random(7)
    lines = ["," .join([*(f"n{f}" for f in range(18)), "c0", "c1", "prediction", "truth"])]
    for _ in range(20_000):
        n = [rng.gauss(0, 1) for _ in range(18)]
        c = [rng.choice("abcdefgh") for _ in range(2)]
        lines.append(",".join([*map(repr, n), *c, repr(regression_prediction(n, c[0], rng.gauss(0, 1))),
                               repr(10 + n[0] + 2 * n[1] - n[2])]))
    (work / "reference.csv").write_text("\n".join(lines) + "\n")
    out = []
    for name, target in (("drift-only", None), ("with-loss-models", "truth")):
        d = work / name
        d.mkdir()
        if multivariate:
            profile = build_baseline(work / "reference.csv", "bench-model", exclude=["truth", "prediction"],
                                     multivariate=target is not None, correlation_features=10 if target else 0)
        else:
            profile = build_baseline(work / "reference.csv", "bench-model", prediction_column="prediction",
                                     target_column=target, exclude=[] if target else ["truth"])
        (d / "bench-model.json").write_text(profile.to_json())
        out.append(d)
    return out[0], out[1]


def run(durable: bool, seconds: float, threads: int = 2, cores: int | None = None,
        protocol: str = "grpc", ids: bool = False, labels: bool = False, baseline_dir: Path | None = None,
        regressor: bool = False, compression: str = "none", extra_config: str = "",
        genai: bool = False) -> dict[str, float]:
    """One processor run (``compression``: the load generator's, none or gzip). ``cores`` pins the processor to
    CPUs 0..cores-1 (None: unpinned, load unpinned too). ``protocol`` http: the load goes to the OTLP/HTTP receiver
    (which runs in the main process)."""
    port, prom, http_port = free_port(), free_port(), free_port()
    state = tempfile.mkdtemp(prefix="otel-ml-bench-")
    cfg = Path(state) / "c.yaml"
    cfg.write_text(f"state:\n  durable: {'true' if durable else 'false'}\n{extra_config}")
    ncpu = os.cpu_count() or 1
    proc = subprocess.Popen([*(taskset(list(range(cores))) if cores else []), sys.executable, "-m", "otel_ml.cli",
                             "serve", "--config", str(cfg), "--state-dir", state,
                             "--otlp-grpc-endpoint", f"127.0.0.1:{port}", "--prometheus-endpoint", f"127.0.0.1:{prom}",
                             *(["--otlp-http-endpoint", f"127.0.0.1:{http_port}"] if protocol == "http"
                               else ["--no-otlp-http"]),
                             *(["--baseline-dir", str(baseline_dir)] if baseline_dir else []),
                             "--no-ui", "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("otel-ml serving")
        if labels:  # first the predictions, then (measured) their ground truth
            subprocess.run([sys.executable, "-m", "bench.loadgen", "--endpoint", f"127.0.0.1:{port}", "--seconds",
                            str(seconds), "--threads", str(threads), "--ids"], capture_output=True, check=True,
                           timeout=seconds + 120)
        cpu0 = cpu_seconds(proc.pid)
        load = subprocess.run([*(taskset([ncpu - 1]) if cores else []), sys.executable, "-m", "bench.loadgen",
                               "--endpoint", f"127.0.0.1:{http_port if protocol == 'http' else port}", "--seconds",
                               str(seconds), "--threads", str(threads), "--protocol", protocol,
                               *(["--ids"] if ids else []), *(["--labels"] if labels else []),
                               *(["--regressor"] if regressor else []), *(["--genai"] if genai else []),
                               "--compression", compression],
                              capture_output=True, text=True, check=True, timeout=seconds + 120)
        cpu1 = cpu_seconds(proc.pid)
        main_cpu, worker_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    r = json.loads(load.stdout)
    spans, wall = r["spans"], r["wall_s"]
    cpu = main_cpu + worker_cpu
    return {"spans": spans, "wall_s": wall, "cpu_s": cpu, "main_cpu_s": main_cpu, "worker_cpu_s": worker_cpu,
            "load_cpu_s": r["cpu_s"], "refused": r["refused"], "spans_per_cpu_s": spans / cpu,
            "spans_per_s": spans / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2, help="load generator threads")
    parser.add_argument("--durable", choices=["both", "on", "off"], default="both")
    parser.add_argument("--cores", default="1,2", help="processor core counts to measure, e.g. 1,2")
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc", help="OTLP/gRPC or OTLP/HTTP load")
    parser.add_argument("--ids", choices=["both", "on", "off"], default="off",
                        help="spans with prediction ids and probabilities (kept pending for their labels)")
    parser.add_argument("--labels", action="store_true",
                        help="also measure ground truth: predictions with ids first, then their labels (OTLP logs, "
                             "512 per record), the labels' cost per processor CPU-second")
    parser.add_argument("--dle", action="store_true",
                        help="a regressor's load with its baseline, without and with expected-loss models")
    parser.add_argument("--multivariate", action="store_true",
                        help="the load with its baseline, built with no multivariate state and with --multivariate "
                             "and correlations (issue 34)")
    parser.add_argument("--segments", action="store_true",
                        help="the load without and with 10 segments per model (segments by c0 and c1, at most 10: "
                             "9 combinations and (other)) (issue 33)")
    parser.add_argument("--genai", action="store_true",
                        help="alternately the classic load and LLM calls as GenAI spans (issue 45), requests of 512 "
                             "spans, content not captured (the instrumentations' default)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="--dle, --multivariate, --segments: alternating pairs of runs")
    args = parser.parse_args()
    # The limit (issue 48): the same columns through DataSketches alone, in this invocation, on one core.
    limit = statistics.median(rows_per_cpu_second() for _ in range(3))
    print(f"DataSketches alone (bench/sketch_limit.py, median of 3): {limit:,.0f} rows per CPU-second; "
          "\"vs limit\" is spans per processor CPU-second over it\n")
    if args.segments:
        cores = int(args.cores.split(",")[0])
        segmented = "segments:\n  by:\n    bench-model: [c0, c1]\n  max_per_model: 10\n"
        print("| round | segments | spans | processor CPU s | spans per processor CPU-second | vs limit |")
        print("|---|---|---|---|---|---|")
        rates: dict[str, list[float]] = {"none": [], "10 per model": []}
        for k in range(args.rounds):
            for name, extra in (("none", ""), ("10 per model", segmented)):
                r = run(args.durable != "off", args.seconds, args.threads, cores, extra_config=extra)
                rates[name].append(r["spans_per_cpu_s"])
                print(f"| {k} | {name} | {r['spans']:,.0f} | {r['cpu_s']:.1f} | {r['spans_per_cpu_s']:,.0f} | "
                      f"{r['spans_per_cpu_s'] / limit:.3f}× |", flush=True)
        mean = {k: sum(v) / len(v) for k, v in rates.items()}
        print(f"\nWith 10 segments / without: {mean['10 per model'] / mean['none']:.2f}× ({mean['10 per model']:,.0f} "
              f"vs {mean['none']:,.0f} spans per processor CPU-second, mean of {args.rounds})")
        return
    if args.genai:
        cores = int(args.cores.split(",")[0])
        print("| round | load | spans | processor CPU s | spans per processor CPU-second | vs limit |")
        print("|---|---|---|---|---|---|")
        rates = {"classic (20 ml.feature.*)": [], "GenAI (openai-v2 chat calls)": []}
        for k in range(args.rounds):
            for name, genai in zip(rates, (False, True)):
                r = run(args.durable != "off", args.seconds, args.threads, cores, genai=genai)
                rates[name].append(r["spans_per_cpu_s"])
                print(f"| {k} | {name} | {r['spans']:,.0f} | {r['cpu_s']:.1f} | {r['spans_per_cpu_s']:,.0f} | "
                      f"{r['spans_per_cpu_s'] / limit:.3f}× |", flush=True)
        mean = {k: sum(v) / len(v) for k, v in rates.items()}
        classic, genai_name = list(rates)
        print(f"\nGenAI / classic: {mean[genai_name] / mean[classic]:.2f}× ({mean[genai_name]:,.0f} vs "
              f"{mean[classic]:,.0f} spans per processor CPU-second, mean of {args.rounds})")
        return
    if args.dle or args.multivariate:
        plain, dle = dle_baselines(Path(tempfile.mkdtemp(prefix="otel-ml-bench-dle-")), args.multivariate)
        cores = int(args.cores.split(",")[0])
        print("| round | baseline | spans | processor CPU s | spans per processor CPU-second | vs limit |")
        print("|---|---|---|---|---|---|")
        with_name = "with multivariate" if args.multivariate else "with loss models"
        base = "no multivariate state" if args.multivariate else "drift only"
        rates: dict[str, list[float]] = {base: [], with_name: []}
        for k in range(args.rounds):
            for name, d in ((base, plain), (with_name, dle)):
                r = run(args.durable != "off", args.seconds, args.threads, cores, baseline_dir=d,
                        regressor=args.dle)
                rates[name].append(r["spans_per_cpu_s"])
                print(f"| {k} | {name} | {r['spans']:,.0f} | {r['cpu_s']:.1f} | {r['spans_per_cpu_s']:,.0f} | "
                      f"{r['spans_per_cpu_s'] / limit:.3f}× |", flush=True)
        mean = {k: sum(v) / len(v) for k, v in rates.items()}
        print(f"\n{with_name.capitalize()} / {base}: {mean[with_name] / mean[base]:.2f}× "
              f"({mean[with_name]:,.0f} vs {mean[base]:,.0f} spans per processor CPU-second, "
              f"mean of {args.rounds})")
        return
    modes = {"both": [True, False], "on": [True], "off": [False]}[args.durable]
    print("| mode | processor cores | spans | wall s | processor CPU s (main + workers) | load generator CPU s | "
          "spans per processor CPU-second | vs limit | spans/s wall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for durable in modes:
        for cores in [int(c) for c in args.cores.split(",")]:
            for ids in {"both": [False, True], "on": [True], "off": [False]}[args.ids]:
                r = run(durable, args.seconds, args.threads, cores, args.protocol, ids)
                mode = ("durable (default)" if durable else "not durable") + (", ids + probability" if ids else "")
                print(f"| {mode} | {cores} | {r['spans']:,.0f} | "
                      f"{r['wall_s']:.1f} | {r['cpu_s']:.1f} ({r['main_cpu_s']:.1f} + {r['worker_cpu_s']:.1f}) | "
                      f"{r['load_cpu_s']:.1f} | {r['spans_per_cpu_s']:,.0f} | {r['spans_per_cpu_s'] / limit:.3f}× | "
                      f"{r['spans_per_s']:,.0f} |", flush=True)
            if args.labels:
                r = run(durable, args.seconds, args.threads, cores, "grpc", ids=True, labels=True)
                print(f"| {'durable (default)' if durable else 'not durable'}, ground-truth labels | {cores} | "
                      f"{r['spans']:,.0f} labels | {r['wall_s']:.1f} | {r['cpu_s']:.1f} ({r['main_cpu_s']:.1f} + "
                      f"{r['worker_cpu_s']:.1f}) | {r['load_cpu_s']:.1f} | {r['spans_per_cpu_s']:,.0f} | "
                      f"{r['spans_per_cpu_s'] / limit:.3f}× | {r['spans_per_s']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
