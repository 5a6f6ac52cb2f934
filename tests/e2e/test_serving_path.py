"""The serving path end to end: what the OTel SDK drops is measured, and the recommended configuration drops nothing.

An app with the SDK's default BatchSpanProcessor (queue of 2,048) and OTLP/gRPC exporter records predictions faster
than its export thread can encode and send one span per prediction: the queue overflows and the SDK drops spans
with a log line only. The processor sees the gaps in ``ml.sequence`` and exports ``ml_predictions_lost_ratio``.
``ModelMonitor(batch_rows=...)`` sends the same predictions as batch spans and loses none."""

from __future__ import annotations

import random
import time

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_ml.instrument import ModelMonitor
from tests.support import ServeProcess, select, wait_for

N = 30_000

FEATURES = [f"f{i}" for i in range(18)]


def app_provider(sp: ServeProcess) -> TracerProvider:
    """The SDK as an app configures it by default: BatchSpanProcessor with its default queue and batch sizes."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://{sp.grpc_endpoint}",
                                                                    insecure=True)))
    return provider


def serve_predictions(monitor: ModelMonitor, n: int) -> float:
    """Record ``n`` predictions of 20 features from one thread as fast as it goes; returns predictions per second."""
    rng = random.Random(1)
    rows = [{**{f: rng.gauss(0, 1) for f in FEATURES}, "plan": rng.choice("abc"), "region": rng.choice("nesw")}
            for _ in range(1000)]
    t0 = time.perf_counter()
    for i in range(n):
        monitor.record(rows[i % 1000], prediction=i % 2)
    return n / (time.perf_counter() - t0)


def settled(sp: ServeProcess, model: str) -> tuple[float, float]:
    """(ml_predictions_total, ml_predictions_lost_ratio) once both have stopped moving."""
    def read() -> tuple[float, float] | None:
        samples = sp.scrape()
        total = select(samples, "ml_predictions_total", ml_model_name=model)
        lost = select(samples, "ml_predictions_lost_ratio", ml_model_name=model)
        return (total[0].value, lost[0].value) if total and lost else None

    last = wait_for(read, what=f"{model}: predictions and loss exported")
    while True:  # an evaluation every 0.5 s: two equal readings 1.5 s apart
        time.sleep(1.5)
        now = read()
        if now == last:
            return now
        last = now


def test_spans_the_sdk_drops_show_as_lost_and_batch_rows_loses_none(serve_factory) -> None:
    sp = serve_factory("--evaluation-interval", "0.5")

    provider = app_provider(sp)
    rate = serve_predictions(ModelMonitor("one-span-each", tracer_provider=provider), N)
    provider.shutdown()
    received, lost = settled(sp, "one-span-each")
    print(f"one span each: {rate:,.0f}/s recorded, {received:,.0f} of {N:,} received, lost ratio {lost:.3f}")
    assert received < 0.9 * N, f"the default queue did not overflow at {rate:,.0f}/s: nothing to measure"
    # The processor knows the sequence up to the last span that arrived (the SDK may also drop the very last ones):
    # the ratio it reports is the true loss up to that point, between these bounds.
    true_loss = 1 - received / N
    queue = 2048
    # (The endpoint gives ratios to 6 significant digits.)
    assert (N - queue - received) / (N - queue) - 1e-6 <= lost <= true_loss + 1e-6, (lost, true_loss, rate)

    provider = app_provider(sp)
    monitor = ModelMonitor("batched", tracer_provider=provider, batch_rows=512)
    batched_rate = serve_predictions(monitor, N)
    monitor.flush()
    provider.shutdown()
    assert settled(sp, "batched") == (N, 0.0), batched_rate
    assert batched_rate > rate  # and cheaper per prediction (bench/serving.py has the figures)
