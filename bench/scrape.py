"""What one Prometheus scrape costs, per export.detail level and number of features, and what scrapes cost ingest.

    .venv/bin/python -m bench.scrape [--sizes 1x10,20x50,100x50] [--seconds 10]

For each size (MODELSxFEATURES: 4 in 5 features numeric, the rest categorical) a real ``otel-ml serve`` gets a
reference pinned from live traffic and a drifted current horizon (OTLP/gRPC batch spans), so every feature has a
decision, a p-value and scores. Then: series, bytes and seconds of a plain scrape (and bytes of a gzip one) at
``export.detail: default`` and ``all`` (the full set: what every feature cost before the default was trimmed).
Last, at the largest size and the default set, ingest throughput (bench/loadgen.py, 2 threads, gRPC) without
scrapes and while another thread scrapes every ``--scrape-every`` seconds, in the same processor.
Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from bench.ingest import free_port
from bench.loadgen import EXPORT


def batch_span_request(models: int, features: int, rows: int, shift: float, t_ns: int, seed: int) -> bytes:
    """One batch span of ``rows`` predictions per model, all at event time ``t_ns``."""
    rng = np.random.default_rng(seed)
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for m in range(models):
        span = ss.spans.add(name="predict_batch", trace_id=rng.bytes(16), span_id=rng.bytes(8),
                            start_time_unix_nano=t_ns, end_time_unix_nano=t_ns + 1_000_000)
        attrs = [KeyValue(key="ml.model.name", value=AnyValue(string_value=f"model-{m:03d}")),
                 KeyValue(key="ml.batch.size", value=AnyValue(int_value=rows))]
        for f in range(features):
            if f % 5 == 4:
                values = [AnyValue(string_value=f"c{int(v)}") for v in rng.zipf(1.5, rows) % 40 + shift * 3]
            else:
                values = [AnyValue(double_value=float(v)) for v in rng.normal(shift, 1, rows)]
            attrs.append(KeyValue(key=f"ml.feature.f{f:03d}", value=AnyValue(array_value=ArrayValue(values=values))))
        span.attributes.extend(attrs)
    return req.SerializeToString()


def scrape(port: int, gzip_ok: bool = False) -> tuple[float, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                 headers={"Accept-Encoding": "gzip"} if gzip_ok else {})
    t = time.perf_counter()
    body = urllib.request.urlopen(req, timeout=60).read()
    return time.perf_counter() - t, body


def series_in(text: bytes) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))


class Processor:
    """A real ``otel-ml serve`` on loopback ports (not durable: benches measure compute, not fsync)."""

    def __init__(self, detail: str = "default", evaluation_interval: float = 1.0, window: str = "1",
                 horizon: str = "2", ui: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.grpc, self.prom, self.ui = free_port(), free_port(), free_port()
        self.state = tempfile.mkdtemp(prefix="otel-ml-bench-")
        cfg = Path(self.state) / "c.yaml"
        cfg.write_text(f"export:\n  detail: {detail}\nwindows:\n  reference_min_rows: 200\n"
                       "state:\n  durable: false\n")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otel_ml.cli", "serve", "--config", str(cfg), "--state-dir", self.state,
             "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc}", "--prometheus-endpoint", f"127.0.0.1:{self.prom}",
             "--no-otlp-http", "--window", window, "--horizon", horizon, "--evaluation-interval",
             str(evaluation_interval), *(["--ui-endpoint", f"127.0.0.1:{self.ui}"] if ui else ["--no-ui"]), *extra,
             "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().startswith("otel-ml serving")

    def feed(self, models: int, features: int) -> None:
        """Reference (2 s of event time, unshifted), then a shifted current horizon, a minute in the past."""
        t0 = (time.time_ns() // 10**9 - 60) * 10**9
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc}",
                                   options=[("grpc.max_send_message_length", 256 << 20)]) as ch:
            export = ch.unary_unary(EXPORT)
            for second, shift in ((0, 0.0), (1, 0.0), (2, 0.0), (3, 0.3), (4, 0.3)):
                export(batch_span_request(models, features, 200, shift, t0 + second * 10**9, second), timeout=120)

    def wait_decisions(self, expected: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, body = scrape(self.prom)
            got = sum(1 for line in body.splitlines()
                      if line.startswith(b"ml_drift_detected{") and b'method="overall"' in line
                      and b'ml_model_name="model-' in line)
            p_values = sum(1 for line in body.splitlines() if line.startswith(b"ml_drift_p_value{"))
            if got >= expected and p_values >= expected:
                return
            time.sleep(1)
        raise TimeoutError(f"fewer than {expected} decisions after {timeout}s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def measure(models: int, features: int, detail: str, repeat: int = 5) -> dict[str, float]:
    p = Processor(detail, evaluation_interval=max(1.0, models * features / 1000))
    try:
        p.feed(models, features)
        p.wait_decisions(models * features)
        times, gz_times = [], []
        for _ in range(repeat):
            t, body = scrape(p.prom)
            times.append(t)
            t, gz = scrape(p.prom, gzip_ok=True)
            gz_times.append(t)
        ours = b"\n".join(line for line in body.splitlines() if b'ml_model_name="model-' in line)
        return {"series": series_in(body), "feature_series": series_in(ours), "bytes": len(body),
                "gzip_bytes": len(gz), "seconds": statistics.median(times), "gzip_seconds": statistics.median(gz_times),
                "valid_gzip": gzip.decompress(gz).count(b"\n") > 0}
    finally:
        p.stop()


def ingest_with_scrapes(models: int, features: int, seconds: float, every: float, pairs: int = 4) -> dict[str, float]:
    """Median ingest rate of ``pairs`` alternating runs without and with scrapes. Evaluations (which build the
    snapshot a scrape copies) are 60 s apart so that none lands in one run and not the other: at 5,000 features
    one takes a core for a while, which is the evaluation's cost, not the scrape's."""
    p = Processor("default", evaluation_interval=60)
    try:
        p.feed(models, features)
        p.wait_decisions(models * features)

        def load() -> float:
            out = subprocess.run([sys.executable, "-m", "bench.loadgen", "--endpoint", f"127.0.0.1:{p.grpc}",
                                  "--seconds", str(seconds), "--threads", "2"],
                                 capture_output=True, text=True, check=True, timeout=seconds + 120)
            r = json.loads(out.stdout)
            return r["spans"] / r["wall_s"]

        quiet: list[float] = []
        busy: list[float] = []
        scrapes, worst = [0], [0.0]
        for _ in range(pairs):
            quiet.append(load())
            stop = threading.Event()

            def scraper(stop: threading.Event = stop) -> None:
                while not stop.wait(every):
                    t, _ = scrape(p.prom)
                    scrapes[0] += 1
                    worst[0] = max(worst[0], t)

            thread = threading.Thread(target=scraper)
            thread.start()
            try:
                busy.append(load())
            finally:
                stop.set()
                thread.join()
        return {"quiet": statistics.median(quiet), "busy": statistics.median(busy), "scrapes": scrapes[0],
                "worst_scrape_s": worst[0], "quiet_all": quiet, "busy_all": busy}
    finally:
        p.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1x10,20x50,100x50", help="MODELSxFEATURES, comma separated")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="seconds of each ingest run (4 without scrapes, 4 with)")
    parser.add_argument("--scrape-every", type=float, default=1.0,
                        help="seconds between scrapes during ingest (Prometheus' default is 60, commonly 15)")
    args = parser.parse_args()
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    print("| features (models × features) | export.detail | series per feature | series in the scrape | "
          "bytes | gzip bytes | seconds per scrape (median of 5) |")
    print("|---|---|---|---|---|---|---|")
    for models, features in sizes:
        for detail in ("default", "all"):
            r = measure(models, features, detail)
            print(f"| {models * features:,} ({models} × {features}) | {detail} | "
                  f"{r['feature_series'] / (models * features):.2f} | {r['series']:,.0f} | {r['bytes']:,.0f} | "
                  f"{r['gzip_bytes']:,.0f} | {r['seconds']:.3f} |", flush=True)
    models, features = sizes[-1]
    r = ingest_with_scrapes(models, features, args.seconds, args.scrape_every)
    print()
    print(f"Ingest with {models * features:,} features exported (default set), bench.loadgen 2 threads over gRPC, "
          f"4 × {args.seconds:g} s each way, alternating: median **{r['quiet']:,.0f} spans/s "
          f"without scrapes, {r['busy']:,.0f} spans/s while scraping every {args.scrape_every:g} s** "
          f"({r['scrapes']} scrapes, slowest {r['worst_scrape_s']:.3f} s under load): ratio "
          f"{r['busy'] / r['quiet']:.2f} (runs without: {', '.join(f'{v:,.0f}' for v in r['quiet_all'])}; with: "
          f"{', '.join(f'{v:,.0f}' for v in r['busy_all'])}).")


if __name__ == "__main__":
    main()
