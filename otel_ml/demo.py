"""``otel-ml demo``: the processor plus a generated credit-risk model whose inputs drift partway through.

Everything runs in this process: the OTel SDK exports prediction spans over real OTLP/gRPC to the
processor, which serves the real Prometheus endpoint. Small windows (2 s) and horizon (20 s) make the
story fit in two minutes.
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile
import time

from otel_ml.config import load_config
from otel_ml.core.snapshot import Snapshot
from otel_ml.instrument import ModelMonitor
from otel_ml.semconv import PREDICTION_FEATURE

MODEL = "credit-risk"
VERSION = "1"
DRIFTED = ("income", "region", PREDICTION_FEATURE, "prediction.score")
STABLE = ("age", "credit_score", "channel")


def _rows(rng: random.Random, n: int, drifted: bool) -> dict[str, list]:
    regions = ["north", "south", "east", "west"]
    weights = [0.1, 0.2, 0.3, 0.4] if drifted else [0.4, 0.3, 0.2, 0.1]
    # Income rises by two thirds: enough that the model's confidence (prediction.score), which folds the shift
    # around 0.5, also moves clearly within the demo's 20-s horizon at the default calibrated level.
    income = [rng.lognormvariate(11.1 if drifted else 10.6, 0.4) for _ in range(n)]
    age = [int(min(90, max(18, rng.gauss(41, 11)))) for _ in range(n)]
    credit = [rng.gauss(680, 55) for _ in range(n)]
    return {
        "income": income,
        "age": age,
        "credit_score": credit,
        "region": rng.choices(regions, weights, k=n),
        "channel": rng.choices(["web", "app", "branch"], [0.5, 0.35, 0.15], k=n),
    }


def _predict(cols: dict[str, list]) -> tuple[list[str], list[float], list[float]]:
    labels, scores, p_approve = [], [], []
    for inc, cs in zip(cols["income"], cols["credit_score"]):
        z = 0.00003 * (inc - 45_000) + 0.02 * (cs - 680)
        p = 1 / (1 + math.exp(-z))
        labels.append("approve" if p >= 0.5 else "deny")
        scores.append(max(p, 1 - p))
        p_approve.append(p)
    return labels, scores, p_approve


def _outcomes(rng: random.Random, cols: dict[str, list], drifted: bool) -> list[str]:
    """What really happened: approving was right with the model's probability, until the drift, after which high
    incomes repay *less* (concept drift: the model's inputs move, and its errors with them)."""
    out = []
    for inc, cs in zip(cols["income"], cols["credit_score"]):
        z = (-0.00002 if drifted else 0.00003) * (inc - 45_000) + 0.02 * (cs - 680)
        out.append("approve" if rng.random() < 1 / (1 + math.exp(-z)) else "deny")
    return out


def run_demo(duration: float, drift_after: float, grpc_endpoint: str, prometheus_endpoint: str,
             rate: float, ui_endpoint: str = "127.0.0.1:9465") -> int:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from otel_ml.service import ProcessorService

    state = tempfile.mkdtemp(prefix="otel-ml-demo-")
    cfg = load_config(overrides={
        "receiver.otlp_grpc.endpoint": grpc_endpoint,
        "receiver.otlp_http.enabled": False,
        "export.prometheus.endpoint": prometheus_endpoint,
        "ui.endpoint": ui_endpoint,
        "state.dir": state,
        "windows.window_seconds": 2,
        "windows.horizon_seconds": 20,
        "evaluation.interval_seconds": 2,
        "performance.window_seconds": 2,
        "performance.horizon_seconds": 20,
        "performance.positive_class": "approve",
    })
    service = ProcessorService(cfg)
    service.start()
    port = service.exporter.prometheus_port
    host = grpc_endpoint.rpartition(":")[0]
    provider = TracerProvider(resource=Resource.create({"service.name": "credit-risk-api"}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://{host}:{service.receiver.port}", insecure=True),
        max_queue_size=20_000, schedule_delay_millis=200))
    monitor = ModelMonitor(MODEL, VERSION, tracer_provider=provider)
    rng = random.Random(7)
    print(f"""otel-ml demo: model {MODEL!r} serves ~{rate:.0f} predictions/s for {duration:.0f}s.
  Processor: OTLP/gRPC on {host}:{service.receiver.port}, Prometheus on http://127.0.0.1:{port}/metrics
  Windows 2s, horizon 20s: the first 20s become the reference (no baseline given).
  At {drift_after:.0f}s income rises and the region mix flips; age, credit_score and channel stay stable.
  Each prediction's outcome arrives 3s later (ground truth): the realized accuracy falls after the drift too.
  Look at:  http://{ui_endpoint.rpartition(":")[0]}:{service.ui.port if service.ui else "-"}/ in a browser, or
            curl -s http://127.0.0.1:{port}/metrics | grep 'ml_drift_detected{{.*overall'
""", flush=True)
    start = time.monotonic()
    next_report = start + 5
    tick = 0.1
    outcomes: list[tuple[float, list[str], list[str]]] = []  # (when known, prediction ids, what happened)
    tick_no = 0
    try:
        while (now := time.monotonic()) - start < duration:
            drifted = now - start >= drift_after
            n = max(1, int(rate * tick))
            cols = _rows(rng, n, drifted)
            labels, scores, p_approve = _predict(cols)
            ids = [f"{tick_no}-{i}" for i in range(n)]
            tick_no += 1
            # Most rows as one batch span, a few as single-prediction spans: both forms on the wire.
            single = min(5, n)
            monitor.record_batch({k: v[single:] for k, v in cols.items()}, labels[single:], scores[single:],
                                 prediction_ids=ids[single:], probabilities=p_approve[single:])
            for i in range(single):
                with monitor.predict({k: v[i] for k, v in cols.items()}, prediction_id=ids[i]) as p:
                    p.set_prediction(labels[i], score=scores[i], probability=p_approve[i])
            outcomes.append((now + 3.0, ids, _outcomes(rng, cols, drifted)))
            while outcomes and outcomes[0][0] <= now:
                _, known_ids, truth = outcomes.pop(0)
                monitor.record_ground_truth_batch(known_ids, truth)
            if now >= next_report:
                next_report += 10
                _print_status(now - start, drifted, service.evaluator.snapshot)
            time.sleep(max(0.0, tick - (time.monotonic() - now)))
        provider.force_flush()
        time.sleep(cfg.evaluation.interval_seconds * 1.5)
        _print_status(time.monotonic() - start, True, service.evaluator.evaluate())
    finally:
        provider.shutdown()
        service.shutdown()
        shutil.rmtree(state, ignore_errors=True)  # the demo's state is throwaway
    print("demo finished. In production: `otel-ml serve`, with baselines from `otel-ml baseline build`.")
    return 0


def _print_status(elapsed: float, drifted: bool, snapshot: Snapshot) -> None:
    """Each feature's overall decision and the realized accuracy, as the latest evaluation has them."""
    report = snapshot.report(MODEL, VERSION)
    if report is None or not report.reference_source:
        print(f"[{elapsed:5.0f}s] collecting the reference horizon ...", flush=True)
        return
    phase = "after drift " if drifted else "before drift"
    features = {f.feature: f for f in report.features}
    cells = []
    for feature in (*DRIFTED, *STABLE):
        f = features.get(feature)
        if f is None or f.overall.detected is None:
            continue
        cells.append(f"{feature}={'DRIFT' if f.overall.detected else 'ok'}(p={f.overall.score:.1e})")
    performance = snapshot.performance_of(MODEL, VERSION)
    accuracy = performance.realized.get("accuracy") if performance is not None else None
    if accuracy is not None and accuracy.value == accuracy.value:
        cells.append(f"| accuracy {accuracy.value:.2f}")
    print(f"[{elapsed:5.0f}s] {phase}: " + "  ".join(cells), flush=True)
