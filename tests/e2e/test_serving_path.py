"""The serving path end to end: what the OTel SDK drops is measured, and the recommended configuration drops nothing.

An app with the SDK's default BatchSpanProcessor (queue of 2,048) and OTLP/gRPC exporter records predictions faster
than its export thread can encode and send one span per prediction: the queue overflows and the SDK drops spans
with a log line only. The processor sees the gaps in ``ml.sequence`` and exports ``ml_predictions_lost_ratio``.
``ModelMonitor(batch_rows=...)`` sends the same predictions as batch spans and loses none."""

from __future__ import annotations

import json
import random
import time
import urllib.request

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


def test_a_wide_model_is_kept_or_named_never_silently_ignored(serve_factory, caplog) -> None:
    """Issue 31 case 1: with the SDK's default limit of 128 attributes per span, a 2,000-feature span lost its
    *oldest* attributes, ``ml.model.name`` first, and the processor counted it as ordinary traffic. Now a plain
    SDK span with ML columns but no model is rejected ``model_name_missing`` (counted, logged with an example),
    ``ModelMonitor`` keeps the model's identity and as many features as fit (the rest counted and named once),
    and with the limit raised every feature arrives; those beyond limits.max_profiled_features_per_model are
    named in the processor's log."""
    from opentelemetry.sdk.trace import SpanLimits

    sp = serve_factory("--evaluation-interval", "0.5")
    wide = {f"f{i}": float(i) for i in range(1500)}

    plain = app_provider(sp)  # the SDK's defaults: 128 attributes per span
    tracer = plain.get_tracer("app")
    for _ in range(3):
        with tracer.start_as_current_span("predict") as span:
            span.set_attribute("ml.model.name", "wide-plain")
            for k, v in wide.items():
                span.set_attribute(f"ml.feature.{k}", v)
    monitor = ModelMonitor("wide-monitor", "1", tracer_provider=plain)
    with caplog.at_level("WARNING", logger="otel_ml.instrument.monitor"):
        for _ in range(3):
            monitor.record(wide, prediction=1.0)
    plain.force_flush()
    assert monitor.dropped_by_reason["attribute_limit"] == 3 * (1500 - (128 - 2 - 6))
    limit_lines = [r.getMessage() for r in caplog.records if "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT" in r.getMessage()]
    assert len(limit_lines) == 1 and "keeps 128 attributes" in limit_lines[0], limit_lines

    raised = TracerProvider(span_limits=SpanLimits(max_span_attributes=1600))
    raised.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://{sp.grpc_endpoint}",
                                                                  insecure=True)))
    full = ModelMonitor("wide-raised", "1", tracer_provider=raised)
    for _ in range(3):
        full.record(wide, prediction=1.0)
    raised.force_flush()
    assert full.dropped_values == 0

    def exported() -> dict[str, float] | None:
        samples = sp.scrape()
        got = {
            "rejected": sum(s.value for s in select(samples, "otel_ml_spans_rejected_total",
                                                    reason="model_name_missing")),
            "monitor": sum(s.value for s in select(samples, "ml_predictions_total", ml_model_name="wide-monitor")),
            "raised": sum(s.value for s in select(samples, "ml_predictions_total", ml_model_name="wide-raised")),
        }
        return got if got == {"rejected": 3, "monitor": 3, "raised": 3} else None

    wait_for(exported, what="3 spans rejected model_name_missing, 3 predictions of each monitored model")
    assert any("model_name_missing" in line and "OTEL_ATTRIBUTE_COUNT_LIMIT" in line for line in sp.log), sp.log[-5:]
    def features() -> dict[str, int] | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models", timeout=30) as r:
            hrefs = {m["model"]: m["href"] for m in json.load(r)["models"]}
        if set(hrefs) != {"wide-monitor", "wide-raised"}:
            return None
        got = {}
        for model, href in hrefs.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}{href}", timeout=30) as r:
                got[model] = len(json.load(r)["features"])
        return got

    # the features that fit (120) and the prediction; all of the 1,000 profiled (limits.max_profiled_features...)
    assert wait_for(features, what="both models evaluated") == {"wide-monitor": 121, "wide-raised": 1000}
    assert any("beyond limits.max_profiled_features_per_model (1000)" in line for line in sp.log), sp.log[-5:]
    # ... and a gauge says how many (1,500 features and the prediction, 1,000 profiled)
    unprofiled = {s.labels["ml_model_name"]: s.value for s in select(sp.scrape(), "otel_ml_features_unprofiled")}
    assert unprofiled == {"wide-monitor": 0, "wide-raised": 501}, unprofiled
    plain.shutdown()
    raised.shutdown()
