"""The real OpenTelemetry Collector (built from collector-config/builder-config.yaml) and a real Prometheus."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from otel_ml.export.metrics import COUNTERS, FEATURE_GAUGES, LIVE_GAUGES, PERFORMANCE_GAUGES
from tests.support import (
    DRIFTED,
    OWN_TEST_PANELS,
    REPO,
    free_port,
    make_rows,
    require_collector,
    require_prometheus,
    scrape,
    sdk_provider,
    select,
    send_rows,
    start_collector,
    start_prometheus,
    wait_for,
)

CONFIGS = sorted(p for p in (REPO / "collector-config").glob("*.yaml") if p.name != "builder-config.yaml")


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_validates(config: Path, tmp_path: Path) -> None:
    binary = require_collector()
    out = subprocess.run([str(binary), "validate", "--config", str(config)], capture_output=True, text=True,
                         env={"OTELCOL_QUEUE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout + out.stderr


class _Target:
    """What sdk_provider() needs: where to send OTLP/gRPC."""

    def __init__(self, port: int) -> None:
        self.grpc_endpoint = f"127.0.0.1:{port}"


def labelled_rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """A binary classifier's rows: a feature, the positive class's probability, the prediction and the truth."""
    p = rng.uniform(size=n)
    return pd.DataFrame({"x": p * 10, "p": p, "y_pred": (p >= 0.5).astype(int),
                         "y": (rng.uniform(size=n) < p).astype(int)})


def send_predictions_and_log_labels(endpoint: str, model: str, rows: pd.DataFrame, t0: int,
                                    labels_as_spans: bool = False) -> None:
    """Predictions as spans (ids, probabilities) and their labels as OTLP log records (ml.ground_truth events),
    with the plain OTel SDK: its tracer and its logger, each with its OTLP/gRPC exporter (``labels_as_spans``:
    the labels as spans too)."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = sdk_provider(_Target(int(endpoint.rpartition(":")[2])))
    tracer = provider.get_tracer("serving")
    for i, r in enumerate(rows.itertuples()):
        span = tracer.start_span("predict", start_time=t0 + i * 1000, attributes={
            "ml.model.name": model, "ml.prediction.id": f"{model}-{i}", "ml.prediction": int(r.y_pred),
            "ml.prediction.probability": float(r.p), "ml.feature.x": float(r.x)})
        span.end(end_time=t0 + i * 1000 + 500)
    if labels_as_spans:
        for i, r in enumerate(rows.itertuples()):
            tracer.start_span("ground truth", attributes={
                "ml.model.name": model, "ml.prediction.id": f"{model}-{i}", "ml.ground_truth": int(r.y)}).end()
    provider.shutdown()
    if labels_as_spans:
        return
    logs = LoggerProvider()
    logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"http://{endpoint}",
                                                                          insecure=True)))
    logger = logs.get_logger("labels")
    for i, r in enumerate(rows.itertuples()):
        logger.emit(event_name="ml.ground_truth", attributes={
            "ml.model.name": model, "ml.prediction.id": f"{model}-{i}", "ml.ground_truth": int(r.y)})
    logger.emit(body="an ordinary log line: filtered out by the Collector")
    logs.shutdown()


GENAI_MODEL, GENAI_CALLS = "openai/gpt-4o-mini/chat", 400


def test_gateway_sdk_to_collector_to_otel_ml_to_prometheus(tmp_path: Path, serve_factory) -> None:
    require_collector()
    col_grpc, col_http, col_prom = free_port(), free_port(), free_port()
    config = tmp_path / "otel-ml.yaml"
    config.write_text("export:\n  distribution: true\n  otlp:\n    interval_seconds: 1\n")
    # A classifier with a labelled baseline: realized, estimated and reference performance through the Collector.
    rng_perf = np.random.default_rng(5)
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    labelled_rows(rng_perf, 5000).to_csv(tmp_path / "reference.csv", index=False)
    subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "gw-perf", "--input",
                    str(tmp_path / "reference.csv"), "--prediction-column", "y_pred", "--probability-column", "p",
                    "--target-column", "y", "--output", str(baselines / "gw-perf.json")], check=True,
                   capture_output=True)
    # LLM calls (GenAI spans): a reference of past calls, so the dashboard's GenAI row has decisions to show.
    rng_genai = np.random.default_rng(6)
    pd.DataFrame({"gen_ai.usage.input_tokens": rng_genai.integers(5, 40, 2000),
                  "gen_ai.usage.output_tokens": rng_genai.integers(3, 15, 2000),
                  "gen_ai.response.finish_reason": rng_genai.choice(["stop", "length"], 2000, p=[0.95, 0.05]),
                  # past evaluation results: the reference of the calls' evaluations
                  "gen_ai.evaluation.relevance.label": rng_genai.choice(["relevant", "irrelevant"], 2000, p=[0.9, 0.1]),
                  "gen_ai.evaluation.relevance.score": rng_genai.uniform(2, 5, 2000).round(1)}
                 ).to_csv(tmp_path / "genai.csv", index=False)
    subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", GENAI_MODEL, "--input",
                    str(tmp_path / "genai.csv"), "--output", str(baselines / "genai.json")], check=True,
                   capture_output=True)
    sp = serve_factory("--config", str(config), "--otlp-metrics-endpoint", f"http://127.0.0.1:{col_grpc}",
                       "--window", "1", "--horizon", "3", "--evaluation-interval", "0.5",
                       "--baseline-dir", str(baselines))
    collector, _ = start_collector(REPO / "collector-config" / "gateway.yaml", tmp_path, {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{col_grpc}", "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{col_http}",
        "OTEL_ML_ENDPOINT": sp.grpc_endpoint, "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{col_prom}"})
    prometheus = start_prometheus(tmp_path, [f"127.0.0.1:{col_prom}"])
    try:
        rng = np.random.default_rng(11)
        t0 = (time.time_ns() // 10**9 - 60) * 10**9
        rows = pd.concat([make_rows(rng, 1500, drifted=False), make_rows(rng, 1500, drifted=True)],
                         ignore_index=True)
        times = np.concatenate([t0 + np.linspace(0, 2.9e9, 1500), t0 + 4e9 + np.linspace(0, 2.9e9, 1500)])
        provider = sdk_provider(_Target(col_grpc))
        send_rows(provider, "gw-model", "1", rows, event_times_ns=times.astype(np.int64), batch_every=100)
        # Ordinary traffic through the same Collector: filtered out before otel-ml.
        tracer = provider.get_tracer("app")
        for _ in range(50):
            tracer.start_span("GET /health", attributes={"http.route": "/health"}).end()
        # LLM calls as GenAI instrumentations describe them (no ml.* attribute): through the filter, a model each.
        # Each is evaluated on its own span (gen_ai.evaluation.result, the span-event shape); a third fail.
        for k in range(GENAI_CALLS):
            call = tracer.start_span("chat gpt-4o-mini", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": int(rng.integers(5, 40)),
                "gen_ai.usage.output_tokens": int(rng.integers(3, 15)),
                "gen_ai.response.finish_reasons": ["length" if k % 4 == 0 else "stop"]})
            call.add_event("gen_ai.evaluation.result", {"gen_ai.evaluation.name": "relevance",
                                                        "gen_ai.evaluation.score.label": "irrelevant" if k % 3 == 0
                                                        else "relevant",
                                                        "gen_ai.evaluation.score.value": float(rng.uniform(1, 5))})
            call.end()
        # One unusable ML span: passes the Collector's filter, rejected by otel-ml with a reason.
        tracer.start_span("predict", attributes={"ml.model.name": "gw-model", "ml.batch.size": 2,
                                                 "ml.feature.amount": [1.0]}).end()
        provider.shutdown()
        perf = labelled_rows(rng_perf, 400)
        send_predictions_and_log_labels(f"127.0.0.1:{col_grpc}", "gw-perf", perf, t0)

        def flagged() -> dict[str, float] | None:
            result = prometheus.query('ml_drift_detected{ml_drift_method="overall", ml_model_name="gw-model"}')
            got = {r["metric"]["ml_feature_name"]: float(r["value"][1]) for r in result}
            return got if len(got) >= 6 else None

        def counted() -> bool:
            got = prometheus.query('ml_predictions_total{ml_model_name="gw-model"}')
            return bool(got) and float(got[0]["value"][1]) == 3000

        # Decisions in Prometheus before every row reached otel-ml describe a partial horizon.
        wait_for(counted, timeout=60, what="3000 predictions in Prometheus")
        # The decisions over the whole horizon: an evaluation after the last row, scraped by Prometheus (earlier ones
        # saw part of it); a wrong decision never settles into the expected set.
        wait_for(lambda: (d := flagged()) and {f for f, v in d.items() if v == 1} == DRIFTED and d,
                 timeout=60, what=f"drift decisions in Prometheus: exactly {sorted(DRIFTED)}")
        [series] = prometheus.query('ml_drift_detected{ml_drift_method="overall", ml_feature_name="amount"}')
        for label in ("ml_model_name", "ml_model_version", "ml_feature_name", "ml_drift_method"):
            assert label in series["metric"]
        [count] = prometheus.query('ml_predictions_total{ml_model_name="gw-model"}')
        assert float(count["value"][1]) == 3000
        # Only ML spans reached otel-ml: 1500 single-row spans + 15 batch spans, no /health spans.
        own: dict[str, float] = {}  # summed over labels (every rejection reason is a series, 0 until it happens)
        for s in scrape(sp.prom_port):
            if s.name.startswith("otel_ml_spans"):
                own[s.name] = own.get(s.name, 0) + s.value
        # ... the GenAI spans, and the 400 gw-perf prediction spans; 400 ground-truth log records, the ordinary log
        # line filtered out.
        assert own["otel_ml_spans_received_total"] == 1516 + GENAI_CALLS + 800
        assert own.get("otel_ml_spans_ignored_total", 0) == 0
        [calls] = select(scrape(sp.prom_port), "ml_predictions_total", ml_model_name=GENAI_MODEL)
        assert calls.value == GENAI_CALLS

        def realized() -> dict[str, float] | None:
            got = {r["metric"]["ml_performance_metric"]: float(r["value"][1])
                   for r in prometheus.query('ml_performance{ml_model_name="gw-perf", ml_class=""}')}
            coverage = prometheus.query('ml_ground_truth_coverage{ml_model_name="gw-perf"}')
            return got if coverage and float(coverage[0]["value"][1]) == 1.0 and len(got) == 7 else None

        got = wait_for(realized, timeout=60, what="gw-perf performance in Prometheus")
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(perf.y, perf.y_pred), abs=1e-5)
        assert got["f1"] == pytest.approx(skm.f1_score(perf.y, perf.y_pred), abs=1e-5)
        assert abs(got["roc_auc"] - skm.roc_auc_score(perf.y, perf.p)) < 0.005
        for metric in ("ml_performance_estimated", "ml_performance_reference", "ml_performance_degraded",
                       "ml_performance_estimated_degraded"):
            assert prometheus.query(f'{metric}{{ml_model_name="gw-perf", ml_performance_metric="accuracy"}}'), metric
        assert own["otel_ml_spans_rejected_total"] == 1

        # Names survive the trip: every ml_* metric name on otel-ml's own endpoint is also what the
        # Collector's Prometheus exporter calls it.
        # (The Collector keeps a series for export's metric_expiration after otel-ml stops exporting it, e.g. a
        # decision withheld while a horizon filled; so its set may be larger, but only by names otel-ml has.)
        ours = {s.name for s in scrape(sp.prom_port) if s.name.startswith("ml_")}
        theirs = {s.name for s in scrape(col_prom) if s.name.startswith("ml_")}
        defined = {d.prometheus_name + ("_total" if d.kind == "counter" else "")
                   for d in COUNTERS + FEATURE_GAUGES + LIVE_GAUGES + PERFORMANCE_GAUGES}
        assert ours <= theirs <= defined, (ours - theirs, theirs - defined)

        # Every panel of the shipped Grafana dashboard returns series from this Prometheus.
        wait_for(lambda: prometheus.query("otel_ml_spans_rejected_total"), what="self-telemetry in Prometheus")
        dashboard = json.loads((REPO / "examples" / "grafana" / "otel-ml-dashboard.json").read_text())
        for panel in dashboard["panels"]:
            if panel["title"].startswith(OWN_TEST_PANELS):  # fairness settings, attributions: their own tests
                continue
            for target in panel["targets"]:
                expr = (target["expr"].replace("$model", f"gw-model|gw-perf|{GENAI_MODEL}").replace("$version", ".*")
                        .replace("$feature", ".*"))
                # rate() over [1m] needs two samples of the series: wait for them (the Collector re-exports what it
                # scraped, at its own interval)
                wait_for(lambda e=expr: prometheus.query(e), timeout=60,
                         what=f"panel {panel['title']!r} to return series: {expr}")
        for variable in dashboard["templating"]["list"][1:]:
            m = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"]["query"])
            assert m, variable
            match = m.group(1).replace("$model", "gw-model")
            url = (f"http://127.0.0.1:{prometheus.port}/api/v1/label/{m.group(2)}/values?"
                   + urllib.parse.urlencode({"match[]": match}))
            assert json.loads(urllib.request.urlopen(url, timeout=10).read())["data"], variable["name"]
    finally:
        prometheus.process.stop()
        collector.stop()


def test_alert_rules_pass_promtool(tmp_path: Path) -> None:
    require_prometheus()
    rules = REPO / "examples" / "prometheus"
    for args in (["check", "rules", "otel-ml-alerts.yaml"], ["test", "rules", "otel-ml-alerts.test.yaml"]):
        out = subprocess.run(["promtool", *args], cwd=rules, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def test_sharded_replicas_each_model_on_one_replica_and_nothing_lost_across_a_kill(tmp_path: Path,
                                                                                   serve_factory) -> None:
    require_collector()
    config = tmp_path / "replica.yaml"
    config.write_text("windows:\n  reference_min_rows: 100\n")  # each model pins a reference within seconds
    args = ("--window", "1", "--horizon", "3", "--evaluation-interval", "0.5", "--no-otlp-http",
            "--config", str(config))
    replicas = [serve_factory(*args, state_dir=tmp_path / f"state{i}") for i in range(3)]
    col_grpc = free_port()
    (tmp_path / "queue").mkdir()
    collector, _ = start_collector(REPO / "collector-config" / "sharded.yaml", tmp_path, {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{col_grpc}", "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTELCOL_QUEUE_DIR": str(tmp_path / "queue"),
        **{f"OTEL_ML_REPLICA_{i + 1}": r.grpc_endpoint for i, r in enumerate(replicas)}})
    prometheus = start_prometheus(tmp_path, [f"127.0.0.1:{r.prom_port}" for r in replicas])
    models = [f"model-{i}" for i in range(8)]
    per_round, rounds = 40, 30
    rng = np.random.default_rng(3)
    sent_done = threading.Event()

    def send() -> None:
        provider = sdk_provider(_Target(col_grpc))
        tracer = provider.get_tracer("shard-test")
        for _ in range(rounds):
            for model in models:
                for x in rng.normal(size=per_round):
                    tracer.start_span("predict", attributes={"ml.model.name": model, "ml.feature.x": float(x),
                                                             "ml.segment.half": "low" if x < 0 else "high"}).end()
            time.sleep(0.2)
        provider.shutdown()
        sent_done.set()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        time.sleep(2.0)
        victim = replicas[1]
        victim.proc.send_signal(signal.SIGKILL)  # while traffic flows
        victim.proc.wait()
        time.sleep(1.5)
        replicas[1] = serve_factory(*args, state_dir=victim.state_dir, grpc_port=victim.grpc_port,
                                    prom_port=victim.prom_port)
        assert sent_done.wait(120)
        expected = per_round * rounds

        def per_replica() -> list[dict[str, float]]:
            return [{s.labels["ml_model_name"]: s.value for s in select(scrape(r.prom_port), "ml_predictions_total")}
                    for r in replicas]

        def all_counted() -> list[dict[str, float]] | None:
            got = per_replica()
            totals = {m: sum(r.get(m, 0.0) for r in got) for m in models}
            return got if all(v >= expected for v in totals.values()) else None

        got = wait_for(all_counted, timeout=90, what="every model's predictions on the replicas")
        time.sleep(2)  # a retried duplicate, if any, lands too
        got = per_replica()
        counts = {}
        for model in models:
            holders = [i for i, r in enumerate(got) if model in r]
            assert len(holders) == 1, f"{model} is on replicas {holders}"
            counts[model] = got[holders[0]][model]
        print(f"sharded, one kill -9: sent {expected} per model, counted {counts}")
        # Nothing acknowledged is lost. Delivery is at-least-once: a request made durable by the killed replica
        # whose answer the kill cut off is sent again by the Collector (one SDK batch at most, 512 spans).
        assert all(expected <= c <= expected + 512 for c in counts.values()), counts
        assert sum(1 for r in got if r) >= 2, "the hash spread 8 models over at least two replicas"

        def segments_where() -> dict[str, set[tuple[int, str]]] | None:  # segments live with their model
            out: dict[str, set[tuple[int, str]]] = {}
            for i, r in enumerate(replicas):
                for sample in select(scrape(r.prom_port), "ml_segment_share", ml_sample="current"):
                    out.setdefault(sample.labels["ml_model_name"], set()).add((i, sample.labels["ml_segment"]))
            return out if len(out) == len(models) and all(len(v) >= 2 for v in out.values()) else None

        segments = wait_for(segments_where, timeout=60, what="every model's segments (ml.segment.half) evaluated")
        for model in models:
            holder = next(i for i, r in enumerate(got) if model in r)
            assert segments[model] == {(holder, "half=low"), (holder, "half=high")}, (model, segments[model])

        def in_prometheus() -> dict[str, float] | None:
            result = prometheus.query("sum by (ml_model_name) (ml_predictions_total)")
            values = {r["metric"]["ml_model_name"]: float(r["value"][1]) for r in result}
            return values if values == counts else None

        wait_for(in_prometheus, timeout=30, what="all models in Prometheus with the sent counts")

        # Ground truth (as spans: see sharded.yaml) is routed like the predictions: each model's labels reach the
        # replica that holds its predictions, and all of them join.
        t_ids = time.time_ns() - 60 * 10**9
        for model in models:
            send_predictions_and_log_labels(f"127.0.0.1:{col_grpc}", model, labelled_rows(rng, 20), t_ids,
                                            labels_as_spans=True)

        seen: list = []

        def joined() -> dict[str, int] | None:
            where = {}
            seen[:] = []
            for i, r in enumerate(replicas):
                samples = scrape(r.prom_port)
                seen.append([(s.name, s.labels.get("ml_model_name"), s.labels.get("reason"), s.value) for s in samples
                             if s.name.startswith("ml_ground_truth") and s.value])
                for sample in select(samples, "ml_ground_truth_total"):
                    if sample.value:
                        where[sample.labels["ml_model_name"]] = (i, sample.value)
            return where if len(where) == len(models) and all(v == 20 for _, v in where.values()) else None

        try:
            where = wait_for(joined, timeout=60, what="every model's labels joined on its replica")
        except AssertionError as e:
            logs = ["".join(r.log[-15:]) for r in replicas]
            raise AssertionError(f"{e}; ground-truth series per replica: {seen}; logs: {logs}") from None
        for model in models:
            assert model in got[where[model][0]], f"labels of {model} went to replica {where[model][0]}"
    finally:
        prometheus.process.stop()
        collector.stop()
