"""Model churn: many more (model, version)s over time than ``models.max_models``, over simulated days of event
time. Every new version must be monitored; live models, memory and exported series must stay bounded; a
restart in the middle must not resurrect released versions or lose counts; ``otel-ml models list/retire``
work on the state directory."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_ml.config import load_config
from otel_ml.service import ProcessorService

NS = 10**9

MINUTE = 60 * NS

DAY = 86_400 * NS

MAX_MODELS = 4

STEPS, STEP = 30, 4 * MINUTE  # each version sends for two hours of its day

ROWS = 10  # predictions per span (batch form)


def request(model: str, version: str, end_ns: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add(start_time_unix_nano=end_ns - 10**6,
                                                                end_time_unix_nano=end_ns)
    for key, value in (("ml.model.name", model), ("ml.model.version", version)):
        span.attributes.add(key=key).value.string_value = value
    span.attributes.add(key="ml.batch.size").value.int_value = ROWS
    arr = span.attributes.add(key="ml.feature.x").value.array_value
    for x in rng.normal(size=ROWS):
        arr.values.add().double_value = float(x)
    return req.SerializeToString()


def start(tmp_path: Path, **models: object) -> ProcessorService:
    overrides = {"state.dir": str(tmp_path / "state"), "windows.window_seconds": 60, "windows.horizon_seconds": 600,
                 "windows.reference_min_rows": 50, "models.max_models": MAX_MODELS,
                 "models.idle_ttl_seconds": 86_400, "models.pinned_reference_ttl_seconds": 2 * 86_400,
                 "state.checkpoint_interval_seconds": 0.2, "evaluation.interval_seconds": 0.2,
                 "receiver.otlp_grpc.endpoint": "127.0.0.1:0", "receiver.otlp_grpc.worker_processes": 0,
                 "receiver.otlp_http.enabled": False,
                 "export.prometheus.endpoint": "127.0.0.1:0", "ui.endpoint": "127.0.0.1:0",
                 **{f"models.{k}": v for k, v in models.items()}}
    service = ProcessorService(load_config(overrides=overrides, environ={}))
    service.start()
    return service


def test_refuse_mode_and_the_guard_for_models_in_use(tmp_path: Path) -> None:
    """when_full=refuse rejects a newcomer; release_idlest never releases a model active within
    release_min_idle_seconds (a burst of new names must not evict the models in use)."""
    t0 = (time.time_ns() // DAY - 2) * DAY
    for mode in ("refuse", "release_idlest"):
        service = start(tmp_path / mode, when_full=mode)
        try:
            for i in range(MAX_MODELS):
                assert service.pipeline.consume(request("m", str(i), t0, seed=i)).spans_accepted == 1
            # all the others were active a minute ago
            result = service.pipeline.consume(request("m", "new", t0 + MINUTE, seed=9))
            assert result.spans_accepted == 0 and result.rejected["too_many_models"] == 1
            assert "not admitted" in result.examples["too_many_models"]
            # An hour later the others are idle enough: release_idlest admits, refuse still refuses.
            result = service.pipeline.consume(request("m", "new", t0 + 60 * MINUTE, seed=9))
            assert result.spans_accepted == (1 if mode == "release_idlest" else 0), mode
            assert service.live.count() == MAX_MODELS
        finally:
            service.shutdown()
