"""Pages beside ingest (issue 30 case 1): OTLP/HTTP export and /metrics latency while many heavy pages are asked
for at once, against the same processor with no page load, in the same run.

    .venv/bin/python -m bench.page_isolation [--pages 64] [--seconds 20]

A real ``otel-ml serve`` (durable, checkpoint every second, so windows reach the archive) gets one model of 50
numeric features over 3 hours of event time (one window of 200 rows a minute, horizon 15 min): each feature page
draws three charts and a history over ~165 archived windows, the heaviest page there is. Then two phases of
``--seconds`` each: *quiet* (a 1-span OTLP/HTTP export every 20 ms over one keep-alive connection, a /metrics scrape
every 0.5 s) and *pages* (the same, plus ``--pages`` threads asking for feature pages back to back). Pages run in
their own threads (``http.page_threads``), beyond ``http.page_queue`` waiting they are answered 503 at once.
"""

from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pandas as pd

from bench.detection import EXPORT, batch_request
from bench.ingest import free_port
from bench.loadgen import make_request

FEATURES = 50


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def phase(http_port: int, prom_port: int, ui_port: int, seconds: float, pages: int) -> dict[str, object]:
    stop = threading.Event()
    exports: list[float] = []
    scrapes: list[float] = []
    page_times: list[float] = []
    page_status: Counter[int] = Counter()
    body = make_request(1, seed=7, model="isolation-probe")

    def export_loop() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
        while not stop.is_set():
            t = time.perf_counter()
            conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            exports.append(time.perf_counter() - t)
            time.sleep(max(0.0, 0.02 - (time.perf_counter() - t)))

    def scrape_loop() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/metrics", timeout=60).read()
            scrapes.append(time.perf_counter() - t)
            time.sleep(0.5)

    def page_loop(i: int) -> None:
        while not stop.is_set():
            t = time.perf_counter()
            url = f"http://127.0.0.1:{ui_port}/models/heavy/versions/_/features/f{(i * 7 + len(page_times)) % FEATURES}"
            try:
                with urllib.request.urlopen(url, timeout=120) as r:
                    r.read()
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
                e.read()
                if status == 503:
                    time.sleep(float(e.headers.get("Retry-After", "1")))
            page_status[status] += 1
            if status == 200:
                page_times.append(time.perf_counter() - t)

    threads = [threading.Thread(target=export_loop), threading.Thread(target=scrape_loop)]
    threads += [threading.Thread(target=page_loop, args=(i,)) for i in range(pages)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return {"exports": exports, "scrapes": scrapes, "pages": page_times, "status": page_status}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    state = Path(tempfile.mkdtemp(prefix="otel-ml-bench-pages-"))
    (state / "c.yaml").write_text("state:\n  checkpoint_interval_seconds: 1\n")
    ports = {name: free_port() for name in ("grpc", "http", "prom", "ui")}
    proc = subprocess.Popen([sys.executable, "-m", "otel_ml.cli", "serve", "--config", str(state / "c.yaml"),
                             "--state-dir", str(state / "s"), "--otlp-grpc-endpoint", f"127.0.0.1:{ports['grpc']}",
                             "--otlp-http-endpoint", f"127.0.0.1:{ports['http']}",
                             "--prometheus-endpoint", f"127.0.0.1:{ports['prom']}",
                             "--ui-endpoint", f"127.0.0.1:{ports['ui']}", "--window", "60", "--horizon", "900",
                             "--evaluation-interval", "1", "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("otel-ml serving")
        rng = np.random.default_rng(0)
        now = time.time_ns()
        with grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}") as channel:
            export = channel.unary_unary(EXPORT)
            for minute in range(180, -1, -1):
                shift = 0.0 if minute > 90 else 0.5
                df = pd.DataFrame({f"f{i}": rng.normal(shift, 1, 200) for i in range(FEATURES)})
                export(batch_request("heavy", df, now - minute * 60 * 10**9, None, rows_per_span=200), timeout=60)
        feature = f"http://127.0.0.1:{ports['ui']}/api/v1/models/heavy/versions/_/features/f0"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            import json

            doc = json.loads(urllib.request.urlopen(feature, timeout=60).read())
            history = doc.get("archive_history") or {}
            if len(history.get("time_unix", [])) >= 40:
                break
            time.sleep(1)
        else:
            raise TimeoutError("the archive did not fill within 300 s")
        urllib.request.urlopen(feature.replace("/api/v1", ""), timeout=60).read()  # matplotlib's first use
        quiet = phase(ports["http"], ports["prom"], ports["ui"], args.seconds, 0)
        loaded = phase(ports["http"], ports["prom"], ports["ui"], args.seconds, args.pages)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print(f"One processor on this machine; 50-feature pages over a 3-hour archive; {args.seconds:g} s per phase.\n")
    print("| phase | OTLP/HTTP exports | export p50 ms | export p99 ms | export max ms | /metrics p50 ms | "
          "/metrics p99 ms | pages 200 | pages 503 | page p50 s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in (("quiet", quiet), (f"{args.pages} concurrent pages", loaded)):
        e, s, p, st = r["exports"], r["scrapes"], r["pages"], r["status"]  # type: ignore[assignment]
        print(f"| {name} | {len(e)} | {percentile(e, 50) * 1e3:.1f} | {percentile(e, 99) * 1e3:.1f} | "
              f"{max(e) * 1e3:.1f} | {percentile(s, 50) * 1e3:.0f} | {percentile(s, 99) * 1e3:.0f} | "
              f"{st.get(200, 0)} | {st.get(503, 0)} | {percentile(p, 50):.2f} |")


if __name__ == "__main__":
    main()
