"""OTLP push: the processor's metrics reach a real OTLP/gRPC MetricsService."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

from otel_ml.export.metrics import FEATURE_GAUGES
from tests.support import free_port, make_rows, sdk_provider, send_rows, wait_for


class MetricsSink(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self) -> None:
        self.requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.lock = threading.Lock()

    def Export(self, request, context):
        with self.lock:
            self.requests.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def points(self, name: str, since: int = 0) -> list[tuple[dict[str, str], float, dict[str, str]]]:
        """Data points of ``name`` in the pushes received from index ``since`` on."""
        out = []
        with self.lock:
            for req in self.requests[since:]:
                for rm in req.resource_metrics:
                    resource = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
                    for sm in rm.scope_metrics:
                        for m in sm.metrics:
                            if m.name != name:
                                continue
                            data = m.gauge.data_points or m.sum.data_points
                            for dp in data:
                                attrs = {kv.key: kv.value.string_value for kv in dp.attributes}
                                out.append((attrs, dp.as_double or float(dp.as_int), resource))
        return out


def test_metrics_pushed_over_otlp(tmp_path: Path, serve_factory) -> None:
    sink = MetricsSink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(sink, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        config = tmp_path / "c.yaml"
        config.write_text("export:\n  otlp:\n    interval_seconds: 1\ninstance_id: replica-a\n")
        sp = serve_factory("--config", str(config), "--otlp-metrics-endpoint", f"http://127.0.0.1:{port}",
                           "--window", "1", "--horizon", "2", "--evaluation-interval", "0.5")
        rng = np.random.default_rng(5)
        reference = make_rows(rng, 1500, drifted=False)
        current = make_rows(rng, 1500, drifted=True)
        t0 = (time.time_ns() // 10**9 - 60) * 10**9
        times = np.concatenate([t0 + np.linspace(0, 1.9e9, 1500), t0 + 3e9 + np.linspace(0, 1.9e9, 1500)])
        provider = sdk_provider(sp)
        send_rows(provider, "pushed", "", pd.concat([reference, current], ignore_index=True),
                  event_times_ns=times.astype(np.int64))
        provider.shutdown()

        def all_counted() -> int | None:
            counts = [p for p in sink.points("ml.predictions") if p[0].get("ml.model.name") == "pushed"]
            return len(sink.requests) if counts and counts[-1][1] == 3000 else None

        # Decisions pushed before every row arrived describe a partial horizon: read those pushed after,
        # once an evaluation (every 0.5 s) has had time to see all rows.
        since = wait_for(all_counted, timeout=30, what="3000 predictions pushed over OTLP")
        time.sleep(1.5)
        since = len(sink.requests) if len(sink.requests) > since else since

        def overall_points():
            pts = [p for p in sink.points("ml.drift.detected", since)
                   if p[0].get("ml.drift.method") == "overall" and p[0].get("ml.model.name") == "pushed"]
            return pts if len({p[0]["ml.feature.name"] for p in pts}) >= 6 else None

        pts = wait_for(overall_points, timeout=30, what="ml.drift.detected pushed over OTLP")
        latest = {p[0]["ml.feature.name"]: p[1] for p in pts}
        assert latest["amount"] == 1 and latest["age"] == 0
        assert all(p[2]["service.instance.id"] == "replica-a" and p[2]["service.name"] == "otel-ml" for p in pts)

        # The push carries the series a scrape shows (export.detail applies to both), nothing more or less.
        def per_feature(pairs) -> set:
            return {(name, frozenset((k.replace(".", "_"), v) for k, v in attrs.items() if v))
                    for name, attrs in pairs if attrs.get("ml.model.name") == "pushed"}

        def push_and_scrape() -> tuple[set, set] | None:
            # Evaluations (0.5 s) and pushes (1 s) interleave: compare a scrape with the push right after it,
            # and retry when an evaluation fell between the two.
            scraped = per_feature((s.name, {k.replace("_", "."): v for k, v in s.labels.items()})
                                  for s in sp.scrape() if s.name in {d.prometheus_name for d in FEATURE_GAUGES})
            after = len(sink.requests)
            wait_for(lambda: len(sink.requests) > after, what="the next push")
            pushed = per_feature((d.prometheus_name, attrs) for d in FEATURE_GAUGES
                                 for attrs, _, _ in sink.points(d.name, after))
            return (pushed, scraped) if pushed == scraped else None

        pushed, _ = wait_for(push_and_scrape, timeout=20, interval=0.1, what="a push equal to a scrape")
        assert len(pushed) >= 3 * 6, pushed
    finally:
        server.stop(0)
