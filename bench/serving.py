"""The serving path's real cost: recording *and* the OTel SDK exporting, in the app's process; and what a busy
model loses with the SDK's defaults.

    .venv/bin/python -m bench.serving [--predictions 20000] [--rate 20000]

Part 1: CPU time of the whole app process (every thread: the recording thread, the SDK's BatchSpanProcessor
thread encoding spans, gRPC's own threads) per prediction of 20 features, from the first record to the end of
``force_flush``, exporting over OTLP/gRPC to a real ``otel-ml serve``. The queue is made large enough that
nothing is dropped (dropping is cheaper than exporting and would flatter a figure). Each otel-ml form sits beside
a bare SDK span (or batch span) with the same attributes, exported the same way, measured in the same run.

Part 2: predictions offered at ``--rate`` per second (paced) for 2 s with the SDK's default BatchSpanProcessor
(queue 2,048, batches of 512, every 5 s), in three configurations; what the processor counted and the loss it
measured from ``ml.sequence``. Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import random
import time
import urllib.request
from collections.abc import Callable

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client.parser import text_string_to_metric_families

from bench.scrape import Processor
from otel_ml.instrument import ModelMonitor

FEATURES = [f"f{i}" for i in range(18)]


def rows(n: int = 1000) -> list[dict[str, float | str]]:
    rng = random.Random(1)
    return [{**{f: rng.gauss(0, 1) for f in FEATURES}, "plan": rng.choice("abc"), "region": rng.choice("nesw")}
            for _ in range(n)]


def provider_for(p: Processor, queue: int | None) -> TracerProvider:
    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{p.grpc}", insecure=True)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=queue) if queue
                                else BatchSpanProcessor(exporter))
    return provider


def cpu_per_prediction(p: Processor, n: int, form: str) -> float:
    """Process CPU µs per prediction, recording + export, for one form."""
    provider = provider_for(p, queue=n + 1024)
    data = rows()
    tracer = provider.get_tracer("bench")
    monitor = ModelMonitor(f"serving-{form}", tracer_provider=provider, batch_rows=512 if form == "batch_rows" else 0)
    record: Callable[[int], int]  # records from row i on; returns how many predictions it recorded
    if form == "bare span":
        def record(i: int) -> int:
            tracer.start_span("ml.predict", attributes={
                "ml.model.name": "serving-bare", **{f"ml.feature.{k}": v for k, v in data[i % 1000].items()},
                "ml.prediction": i % 2}).end()
            return 1
    elif form in ("record", "batch_rows"):
        def record(i: int) -> int:
            monitor.record(data[i % 1000], prediction=i % 2)
            return 1
    else:  # 100-row batch spans: a bare SDK batch span with array attributes, or record_batch
        chunks = [data[k:k + 100] for k in range(0, 1000, 100)]
        columns = [{name: [r[name] for r in chunk] for name in chunk[0]} for chunk in chunks]

        def record(i: int) -> int:
            cols = columns[(i // 100) % 10]
            if form == "bare batch span":
                tracer.start_span("ml.predict", attributes={
                    "ml.model.name": "serving-bare-batch", "ml.batch.size": 100,
                    **{f"ml.feature.{k}": v for k, v in cols.items()},
                    "ml.prediction": [j % 2 for j in range(100)]}).end()
            else:
                monitor.record_batch(cols, predictions=[j % 2 for j in range(100)])
            return 100
    t0 = time.process_time()
    i = 0
    while i < n:
        i += record(i)
    monitor.flush()
    provider.force_flush(120_000)
    cpu = time.process_time() - t0
    provider.shutdown()
    return cpu / n * 1e6


def scrape(p: Processor, model: str) -> tuple[float, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{p.prom}/metrics", timeout=30).read().decode()
    wanted = ("ml_predictions_total", "ml_predictions_lost_ratio")
    got = {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples
           if s.labels.get("ml_model_name") == model and s.name in wanted}
    return got.get("ml_predictions_total", 0.0), got.get("ml_predictions_lost_ratio", float("nan"))


def offered(p: Processor, rate: float, seconds: float, name: str, **monitor_args: float) -> tuple[float, float, float]:
    """(predictions offered, counted by the processor, loss it measured) at a paced rate, SDK defaults."""
    provider = provider_for(p, queue=None)
    monitor = ModelMonitor(name, tracer_provider=provider, **monitor_args)  # type: ignore[arg-type]
    data = rows()
    n = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(n):
        if i % 100 == 0:
            ahead = t0 + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        monitor.record(data[i % 1000], prediction=i % 2)
    monitor.flush()
    provider.shutdown()
    last = (-1.0, -1.0)
    for _ in range(60):  # until the processor's numbers settle (an evaluation every 0.5 s)
        time.sleep(1.0)
        now = scrape(p, name)
        if now == last and now[0] > 0:
            break
        last = now
    return n, now[0], now[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=20_000.0)
    args = parser.parse_args()
    p = Processor(evaluation_interval=0.5, window="60", horizon="900")
    try:
        n = args.predictions
        costs = {form: cpu_per_prediction(p, n if "batch" not in form or form == "batch_rows" else 5 * n, form)
                 for form in ("bare span", "record", "batch_rows", "bare batch span", "record_batch")}
        print("| form | CPU µs per prediction (record + SDK export) | vs a bare SDK span of the same form | "
              "predictions/s one process can export |")
        print("|---|---|---|---|")
        for form, bare, note in (
                ("bare span", "bare span", "SDK span, 20 features + prediction, one per prediction"),
                ("record", "bare span", "`ModelMonitor.record`, one span per prediction"),
                ("batch_rows", "bare span", "`ModelMonitor(batch_rows=512).record`: collected into batch spans"),
                ("bare batch span", "bare batch span", "SDK batch span, 100 rows as array attributes"),
                ("record_batch", "bare batch span", "`ModelMonitor.record_batch`, 100 rows")):
            print(f"| {note} | {costs[form]:.1f} | {costs[form] / costs[bare]:.2f}× | {1e6 / costs[form]:,.0f} |",
                  flush=True)
        print()
        print(f"| {args.rate:,.0f} predictions/s offered for 2 s, SDK defaults | offered | counted by otel-ml | "
              "loss measured by otel-ml (`ml_predictions_lost_ratio`) |")
        print("|---|---|---|---|")
        for label, name, kwargs in (("`record`, one span each", "offered-each", {}),
                                    ("`record`, `batch_rows=512`", "offered-batched", {"batch_rows": 512}),
                                    ("`record`, one span each, `sampling_ratio=0.1`", "offered-sampled",
                                     {"sampling_ratio": 0.1})):
            offered_n, counted, lost = offered(p, args.rate, 2.0, name, **kwargs)
            print(f"| {label} | {offered_n:,} | {counted:,.0f} ({counted / offered_n:.1%}) | {lost:.3f} |", flush=True)
    finally:
        p.stop()


if __name__ == "__main__":
    main()
