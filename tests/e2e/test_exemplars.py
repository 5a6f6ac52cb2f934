"""From a drift to the spans behind it (issue 46 part 1), with real parts: an app on the OTel SDK sends prediction
spans to a real Collector, which fans them out to otel-ml and to a tracing back end (the Collector's own file
exporter, the spans as OTLP JSON); a real Prometheus with exemplar storage scrapes otel-ml; otel-ml pushes its
metrics over OTLP to the same Collector. The exemplars Prometheus stores, the OTLP exemplars, the API's example
predictions and the feature page's links all name spans the app sent and the back end holds, from where the
distribution moved; a restart keeps them."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasketches import kll_doubles_sketch
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import NumericProfile
from tests.e2e.test_ui import api, browse
from tests.support import (
    free_port,
    require_collector,
    require_prometheus,
    sdk_provider,
    start_collector,
    start_prometheus,
    wait_for,
)

TRACE_URL = "http://tracing.test:16686/trace/{trace_id}?uiFind={span_id}"

COLLECTOR_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:COLLECTOR_GRPC}
exporters:
  otlp/otel-ml:
    endpoint: ${env:OTEL_ML_ENDPOINT}
    tls:
      insecure: true
  file/traces:
    path: ${env:TRACES_FILE}
    flush_interval: 100ms
  file/metrics:
    path: ${env:METRICS_FILE}
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: ${env:OTELCOL_SELF_METRICS_PORT}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp/otel-ml, file/traces]
    metrics:
      receivers: [otlp]
      exporters: [file/metrics]
"""


class _Target:
    def __init__(self, port: int) -> None:
        self.grpc_endpoint = f"127.0.0.1:{port}"


def json_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # the last line while the exporter writes it
            out.append(json.loads(line))
    return out


def back_end_spans(path: Path) -> dict[tuple[str, str], dict]:
    """(trace id, span id) → the span, as the tracing back end holds it."""
    return {(s["traceId"], s["spanId"]): s for doc in json_lines(path) for rs in doc.get("resourceSpans", [])
            for ss in rs.get("scopeSpans", []) for s in ss.get("spans", [])}


@dataclass
class Stack:
    """otel-ml, the Collector that fans the app's spans out to it and to the tracing back end (``traces``) and
    receives its OTLP metrics (``metrics``), and a Prometheus with exemplar storage scraping it."""

    sp: Any
    args: tuple[str, ...]
    collector_grpc: int
    collector: Any
    prometheus: Any
    traces: Path
    metrics: Path

    def stop(self) -> None:
        self.prometheus.process.stop()
        self.collector.stop()


def start_stack(tmp_path: Path, serve_factory: Any, *args: str) -> Stack:
    """``otel-ml serve *args`` with ``ui.trace_url`` and a 1 s OTLP push to the Collector, then the rest."""
    collector_grpc = free_port()
    config = tmp_path / "otel-ml.yaml"
    config.write_text(f'ui:\n  trace_url: "{TRACE_URL}"\nexport:\n  otlp:\n    interval_seconds: 1\n')
    args = ("--config", str(config), *args, "--window", "1", "--horizon", "60", "--evaluation-interval", "0.5",
            "--otlp-metrics-endpoint", f"http://127.0.0.1:{collector_grpc}")
    sp = serve_factory(*args)
    traces, metrics = tmp_path / "traces.json", tmp_path / "metrics.json"
    (tmp_path / "collector.yaml").write_text(COLLECTOR_CONFIG)
    collector, _ = start_collector(tmp_path / "collector.yaml", tmp_path, {
        "COLLECTOR_GRPC": f"127.0.0.1:{collector_grpc}", "OTEL_ML_ENDPOINT": sp.grpc_endpoint,
        "TRACES_FILE": str(traces), "METRICS_FILE": str(metrics)})
    prometheus = start_prometheus(tmp_path, [f"127.0.0.1:{sp.prom_port}"], flags=("--enable-feature=exemplar-storage",))
    return Stack(sp, args, collector_grpc, collector, prometheus, traces, metrics)


def test_a_drift_points_at_spans_the_app_sent_and_the_tracing_back_end_holds(tmp_path: Path,
                                                                             serve_factory) -> None:
    require_collector()
    require_prometheus()
    rng = np.random.default_rng(46)
    reference = pd.DataFrame({"amount": rng.normal(100, 10, 5000),
                              "channel": rng.choice(["web", "app"], 5000, p=[0.7, 0.3])})
    reference.to_csv(tmp_path / "reference.csv", index=False)
    (tmp_path / "baselines").mkdir()
    subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "shop", "--input",
                    str(tmp_path / "reference.csv"), "--output", str(tmp_path / "baselines" / "shop.json")],
                   check=True, capture_output=True)
    stack = start_stack(tmp_path, serve_factory, "--baseline-dir", str(tmp_path / "baselines"))
    sp, args, collector_grpc, prometheus = stack.sp, stack.args, stack.collector_grpc, stack.prometheus
    traces, metrics = stack.traces, stack.metrics
    try:
        # The app: half its amounts as the reference's, half moved to N(160, 10); "app" gains on "web".
        n = 600
        amounts = np.concatenate([rng.normal(100, 10, n // 2), rng.normal(160, 10, n // 2)])
        order = rng.permutation(n)
        amounts, from_moved_half = amounts[order], order >= n // 2
        channels = rng.choice(["web", "app"], n, p=[0.3, 0.7])
        sent = InMemorySpanExporter()  # what the app sent, to check every id against
        provider = sdk_provider(_Target(collector_grpc))
        provider.add_span_processor(SimpleSpanProcessor(sent))
        tracer = provider.get_tracer("shop")
        for amount, channel in zip(amounts.tolist(), channels.tolist()):
            tracer.start_span("predict", attributes={"ml.model.name": "shop", "ml.feature.amount": amount,
                                                     "ml.feature.channel": channel, "ml.prediction": 1}).end()
        provider.shutdown()
        finished = sent.get_finished_spans()  # in the order sent
        spans = {(format(s.context.trace_id, "032x"), format(s.context.span_id, "016x")): s for s in finished}
        assert len(spans) == n
        moved = {key for key, m in zip(spans, from_moved_half) if m}

        def drifted() -> bool:
            if not any(m["model"] == "shop" for m in api(sp, "/api/v1/models")["models"]):
                return False
            doc = api(sp, "/api/v1/models/shop/versions/_/drift")
            rows = {f["name"]: f for f in doc["features"]}
            return doc["current_rows"] == n and all(rows.get(f, {}).get("drift_detected")
                                                    for f in ("amount", "channel"))

        wait_for(drifted, timeout=90, what=f"all {n} rows evaluated and both features drifted")

        # 1. Prometheus stored exemplars on ml_drift_detections_total: spans the app sent, from the half of amount
        # that moved, and "app" spans for channel.
        def stored(feature: str) -> list[dict] | None:
            data = prometheus.api("query_exemplars", query=f'ml_drift_detections_total{{ml_model_name="shop",'
                                  f'ml_feature_name="{feature}"}}', start=time.time() - 600, end=time.time() + 60)
            found = [e for series in data for e in series["exemplars"]]
            return found or None

        for feature in ("amount", "channel"):
            exemplars = wait_for(lambda f=feature: stored(f), timeout=60, what=f"Prometheus to store {feature}'s")
            for e in exemplars:
                key = (e["labels"]["trace_id"], e["labels"]["span_id"])
                value = spans[key].attributes[f"ml.feature.{feature}"]
                span = spans[key]
                if feature == "amount":
                    assert float(e["value"]) == value and key in moved
                else:
                    assert value == "app" and float(e["value"]) == 1.0
                assert abs(float(e["timestamp"]) - span.end_time / 1e9) < 1e-3

        # 2. The API's example predictions: the moved band first, each linked through ui.trace_url to a trace the
        # tracing back end holds.
        doc = api(sp, "/api/v1/models/shop/versions/_/features/amount")
        examples = doc["example_predictions"]
        assert examples and (examples[0]["trace_id"], examples[0]["span_id"]) in moved
        held = wait_for(lambda: (b := back_end_spans(traces)) and len(b) >= n and b, timeout=30,
                        what="the tracing back end to hold every span")
        for e in examples:
            span = spans[(e["trace_id"], e["span_id"])]
            assert span.attributes["ml.feature.amount"] == e["value"]
            assert (e["trace_id"], e["span_id"]) in held
            assert e["trace_url"] == TRACE_URL.format(trace_id=e["trace_id"], span_id=e["span_id"])
        # The first example's band, z = (x - center) / scale above sinh(2) on the baseline's grid: its shares
        # computed from the rows on both sides, within twice each sketch's rank error (a share is two ranks apart).
        [top] = examples[:1]
        baseline = ModelProfile.read(tmp_path / "baselines" / "shop.json").features["amount"]
        assert isinstance(baseline, NumericProfile) and baseline.grid is not None
        center, scale = baseline.grid
        edge = center + scale * np.sinh(2.0)
        assert top["value"] >= edge
        error = kll_doubles_sketch.get_normalized_rank_error(200, False)
        assert abs(top["current_share"] - np.mean(amounts >= edge)) <= 2 * error
        assert abs(top["reference_share"] - np.mean(reference["amount"] >= edge)) <= 2 * baseline.rank_error()
        channel = api(sp, "/api/v1/models/shop/versions/_/features/channel")["example_predictions"]
        gains = {c: np.mean(channels == c) - np.mean(reference["channel"] == c) for c in ("web", "app")}
        assert channel[0]["value"] == max(gains, key=gains.get) == "app"

        # 3. The page, in a real browser: each example links to its trace.
        dom, console = browse(f"http://127.0.0.1:{sp.ui_port}/models/shop/versions/_/features/amount",
                              tmp_path / "feature.png", tmp_path)
        assert not console, console
        links = set(re.findall(r'<a class="?trace"? href="([^"]+)"', dom))
        assert links == {e["trace_url"].replace("&", "&amp;") for e in examples}, (links, dom[-3000:])
        # the model page: the first example of each drifted feature
        dom, console = browse(f"http://127.0.0.1:{sp.ui_port}/models/shop/versions/_", tmp_path / "model.png",
                              tmp_path)
        assert not console, console
        links = set(re.findall(r'<a class="?trace"? href="([^"]+)"', dom))
        assert links == {e["trace_url"].replace("&", "&amp;") for e in (examples[0], channel[0])}, links

        # 4. OTLP: the pushed ml.drift.detected (overall) points carry the example too.
        def pushed() -> list[dict] | None:
            found = [x for doc in json_lines(metrics) for rm in doc.get("resourceMetrics", [])
                     for sm in rm.get("scopeMetrics", []) for m in sm.get("metrics", [])
                     if m["name"] == "ml.drift.detected" for p in m["gauge"]["dataPoints"]
                     for x in p.get("exemplars", [])]
            return found or None

        for x in wait_for(pushed, timeout=30, what="OTLP exemplars on ml.drift.detected"):
            assert (x["traceId"], x["spanId"]) in spans

        # 5. A restart keeps them (checkpointed with the windows).
        sp.stop()
        again = serve_factory(*args, grpc_port=sp.grpc_port, prom_port=sp.prom_port, ui_port=sp.ui_port)
        wait_for(lambda: any(m["model"] == "shop" for m in api(again, "/api/v1/models")["models"]) and
                 api(again, "/api/v1/models/shop/versions/_/features/amount")["example_predictions"] == examples,
                 timeout=60, what="the same example predictions after a restart")
    finally:
        stack.stop()


def wrong_links(dom: str) -> set[str]:
    """The trace links of the page's "Wrong predictions" table."""
    table = dom.partition('<table class="wrong">')[2].partition("</table>")[0]
    return set(re.findall(r'<a class="?trace"? href="([^"]+)"', table))


def test_wrong_predictions_point_at_spans_the_app_sent_and_the_tracing_back_end_holds(tmp_path: Path,
                                                                                     serve_factory) -> None:
    """Performance's side: an app on the OTel SDK (otel_ml.instrument) serves a classifier whose predictions are
    wrong for 40% of its rows, then records their labels. The API's wrong predictions, the model page's links,
    Prometheus's exemplars on ml_ground_truth_total and the OTLP push's on ml.performance all name spans of wrong
    predictions the app sent and the back end holds, the latest first; a restart keeps them."""
    require_collector()
    require_prometheus()
    from otel_ml.instrument import ModelMonitor

    rng = np.random.default_rng(146)
    stack = start_stack(tmp_path, serve_factory)
    sp, args, collector_grpc, prometheus = stack.sp, stack.args, stack.collector_grpc, stack.prometheus
    traces, metrics = stack.traces, stack.metrics
    try:
        sent = InMemorySpanExporter()
        provider = sdk_provider(_Target(collector_grpc))
        provider.add_span_processor(SimpleSpanProcessor(sent))
        monitor = ModelMonitor("churn", "3", tracer_provider=provider)
        truth: dict[str, str] = {}
        rounds, per_round = 6, 100
        for r in range(rounds):  # rounds over a second apart: the processor keeps span ids once a second
            for i in range(per_round):
                pid = f"c{r}-{i}"
                predicted = str(rng.choice(["stay", "leave"]))
                truth[pid] = predicted if rng.random() >= 0.4 else ("leave" if predicted == "stay" else "stay")
                monitor.record({"tenure": float(rng.integers(1, 60))}, prediction=predicted, prediction_id=pid)
            provider.force_flush()
            time.sleep(1.2)
        monitor.record_ground_truth_batch(list(truth), list(truth.values()))
        provider.shutdown()
        predictions = {(format(s.context.trace_id, "032x"), format(s.context.span_id, "016x")): s
                       for s in sent.get_finished_spans() if "ml.prediction" in (s.attributes or {})}
        assert len(predictions) == rounds * per_round

        def wrong_of(doc: dict) -> list[dict] | None:
            perf = doc.get("performance") or {}
            if perf.get("labeled") != len(truth) or not perf.get("wrong_predictions"):
                return None
            return perf["wrong_predictions"]

        def labelled() -> list[dict] | None:
            if not any(m["model"] == "churn" for m in api(sp, "/api/v1/models")["models"]):
                return None
            return wrong_of(api(sp, "/api/v1/models/churn/versions/3/performance"))

        wrong = wait_for(labelled, timeout=90, what=f"all {len(truth)} labels joined, with wrong predictions")
        held = wait_for(lambda: (b := back_end_spans(traces)) and len(b) >= len(predictions) and b, timeout=30,
                        what="the tracing back end to hold every span")
        for w in wrong:  # each a wrong prediction the app sent, as it sent it, in the back end, linked
            span = predictions[(w["trace_id"], w["span_id"])]
            pid = span.attributes["ml.prediction.id"]
            assert w["predicted"] == span.attributes["ml.prediction"] != truth[pid] == w["truth"]
            assert w["time_ns"] == span.end_time and w["error"] is None
            assert (w["trace_id"], w["span_id"]) in held
            assert w["trace_url"] == TRACE_URL.format(trace_id=w["trace_id"], span_id=w["span_id"])
        assert [w["time_ns"] for w in wrong] == sorted((w["time_ns"] for w in wrong), reverse=True)

        # The model page, in a real browser: its wrong predictions' links are the API's.
        dom, console = browse(f"http://127.0.0.1:{sp.ui_port}/models/churn/versions/3", tmp_path / "model.png",
                              tmp_path)
        assert not console, console
        assert wrong_links(dom) == {w["trace_url"].replace("&", "&amp;") for w in wrong}, dom[-3000:]

        # Prometheus stored the latest wrong prediction as the exemplar of ml_ground_truth_total.
        def stored() -> list[dict] | None:
            data = prometheus.api("query_exemplars", query='ml_ground_truth_total{ml_model_name="churn"}',
                                  start=time.time() - 600, end=time.time() + 60)
            return [e for series in data for e in series["exemplars"]] or None

        for e in wait_for(stored, timeout=60, what="Prometheus to store an exemplar on ml_ground_truth_total"):
            span = predictions[(e["labels"]["trace_id"], e["labels"]["span_id"])]
            assert span.attributes["ml.prediction"] != truth[span.attributes["ml.prediction.id"]]
            assert abs(float(e["timestamp"]) - span.end_time / 1e9) < 1e-3

        # The OTLP push: the model's ml.performance points carry it.
        def pushed() -> list[dict] | None:
            found = [x for doc in json_lines(metrics) for rm in doc.get("resourceMetrics", [])
                     for sm in rm.get("scopeMetrics", []) for m in sm.get("metrics", [])
                     if m["name"] == "ml.performance" for p in m["gauge"]["dataPoints"]
                     for x in p.get("exemplars", [])]
            return found or None

        for x in wait_for(pushed, timeout=30, what="OTLP exemplars on ml.performance"):
            span = predictions[(x["traceId"], x["spanId"])]
            assert span.attributes["ml.prediction"] != truth[span.attributes["ml.prediction.id"]]

        # A restart keeps them (the window's checkpoint carries them).
        sp.stop()
        again = serve_factory(*args, grpc_port=sp.grpc_port, prom_port=sp.prom_port, ui_port=sp.ui_port)
        wait_for(lambda: any(m["model"] == "churn" for m in api(again, "/api/v1/models")["models"]) and
                 wrong_of(api(again, "/api/v1/models/churn/versions/3/performance")) == wrong,
                 timeout=60, what="the same wrong predictions after a restart")
    finally:
        stack.stop()
