"""End to end: a separate `otel-ml serve` process, fed by the plain OTel SDK over OTLP/gRPC, scraped over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.support import DRIFTED, STABLE, ServeProcess, make_rows, sdk_provider, select, send_rows, wait_for


def overall(sp: ServeProcess, model: str) -> dict[str, float]:
    return {s.labels["ml_feature_name"]: s.value
            for s in select(sp.scrape(), "ml_drift_detected", ml_model_name=model, ml_drift_method="overall")}


def test_baseline_from_csv_then_drift_on_the_drifted_features_only(tmp_path: Path, serve_factory) -> None:
    rng = np.random.default_rng(42)
    reference = make_rows(rng, 5000, drifted=False)
    csv = tmp_path / "train.csv"
    reference.to_csv(csv, index=False)
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "loans",
                    "--model-version", "3", "--input", str(csv), "--prediction-column", "label",
                    "--output", str(baselines / "whatever-name.json")], check=True)
    # Series per feature (docs/metrics.md): amount at detail "all", channel at "methods", the rest at "default".
    config = tmp_path / "otel-ml.yaml"
    config.write_text('export:\n  detail_for:\n    "loans/amount": all\n    "loans/channel": methods\n')
    sp = serve_factory("--config", str(config), "--baseline-dir", str(baselines), "--window", "1", "--horizon", "30",
                       "--evaluation-interval", "0.5")
    provider = sdk_provider(sp)
    current = make_rows(rng, 3000, drifted=True)
    send_rows(provider, "loans", "3", current, batch_every=100)
    provider.shutdown()

    def all_counted() -> bool:
        counts = select(sp.scrape(), "ml_drift_sample_count", ml_model_name="loans", ml_feature_name="amount",
                        ml_sample="current")
        return bool(counts) and counts[0].value == 3000

    wait_for(all_counted, what="3000 rows in the current horizon")
    time.sleep(1.5)  # one more evaluation after the last row
    samples = sp.scrape()
    decisions = overall(sp, "loans")
    assert {f for f, v in decisions.items() if v == 1} == DRIFTED, decisions
    assert set(decisions) >= STABLE

    # Documented names and labels, each series labelled with model, version, feature and method.
    # Statistics and distances (high: drift) in ml_drift_score, tests' p-values (low: drift) in ml_drift_p_value.
    scores = select(samples, "ml_drift_score", ml_model_name="loans", ml_model_version="3", ml_feature_name="amount")
    assert {s.labels["ml_drift_method"] for s in scores} == {"ks", "psi", "js", "hellinger", "wasserstein"}
    cat_methods = select(samples, "ml_drift_score", ml_model_name="loans", ml_feature_name="channel")
    assert {s.labels["ml_drift_method"] for s in cat_methods} == {"psi", "js", "hellinger", "linf"}
    p_values = select(samples, "ml_drift_p_value", ml_model_name="loans", ml_model_version="3")
    assert {(s.labels["ml_feature_name"], s.labels["ml_drift_method"]) for s in p_values} >= {
        ("amount", "overall"), ("channel", "overall"), ("channel", "chi2")}
    assert all(0 <= s.value <= 1 for s in p_values)
    [pred] = select(samples, "ml_predictions_total", ml_model_name="loans", ml_model_version="3")
    assert pred.value == 3000
    [ref_count] = select(samples, "ml_drift_sample_count", ml_model_name="loans", ml_feature_name="amount",
                         ml_sample="reference")
    assert ref_count.value == 5000
    [ready] = select(samples, "ml_reference_ready", ml_model_name="loans")
    assert ready.value == 1 and ready.labels["ml_reference_source"] == "baseline"
    assert select(samples, "ml_prediction_latency_seconds", ml_model_name="loans", ml_quantile="0.99")
    [missing] = select(samples, "ml_feature_missing_ratio", ml_model_name="loans", ml_feature_name="amount")
    assert missing.value == 0.0  # "all" exports zeros too
    assert not select(samples, "ml_drift_threshold", ml_model_name="loans", ml_feature_name="channel")
    assert not select(samples, "ml_drift_sample_count", ml_model_name="loans", ml_feature_name="channel")

    # The default set: the decision, its p-value, one effect size, and nothing that is zero or "none".
    for feature, effect in (("age", "wasserstein"), ("tenure", "wasserstein"), ("plan", "js")):
        mine = [s for s in samples if s.labels.get("ml_feature_name") == feature]
        got = {(s.name, s.labels.get("ml_drift_method", "")) for s in mine if not s.name.endswith("_ratio")}
        assert got == {("ml_drift_detected", "overall"), ("ml_drift_p_value", "overall"),
                       ("ml_drift_score", effect)}, got
        assert all(s.value > 0 for s in mine if s.name.endswith("_ratio"))  # e.g. a few values out of range
    assert {s.labels["ml_feature_name"] for s in select(samples, "ml_drift_withheld", reason="none")} == {"amount"}
    [received] = select(samples, "otel_ml_spans_received_total")
    assert received.value == 1500 + 15  # 1500 single-row spans and 15 batch spans of 100


def test_first_horizon_pinned_without_baseline_and_kept_across_restart(tmp_path: Path, serve_factory) -> None:
    rng = np.random.default_rng(7)
    state = tmp_path / "state"
    args = ("--window", "1", "--horizon", "5", "--evaluation-interval", "0.5")
    sp = serve_factory(*args, state_dir=state)
    provider = sdk_provider(sp)
    # Replay 30 s of event time, 200 predictions per second, drift from second 15 on.
    per_second, seconds = 200, 30
    t0 = (time.time_ns() // 10**9 - 120) * 10**9
    frames = [make_rows(rng, per_second, drifted=s >= 15) for s in range(seconds)]
    times = np.concatenate([t0 + s * 10**9 + np.linspace(0, 0.99e9, per_second).astype(np.int64)
                            for s in range(seconds)])
    send_rows(provider, "replayed", "", pd.concat(frames, ignore_index=True), event_times_ns=times)
    provider.shutdown()
    decisions = wait_for(lambda: (d := overall(sp, "replayed")) and len(d) >= 6 and d,
                         what="drift decisions for the replayed model")
    time.sleep(1.5)
    decisions = overall(sp, "replayed")
    assert {f for f, v in decisions.items() if v == 1} == DRIFTED, decisions
    [ready] = select(sp.scrape(), "ml_reference_ready", ml_model_name="replayed")
    assert ready.labels["ml_reference_source"] == "pinned"
    assert any("pinned the first horizon" in line for line in sp.log)
    assert sp.stop() == 0
    assert list((state / "pinned").glob("*.json")), "pinned reference recorded on disk"

    # Restarted on the same state dir: the reference is there before any new horizon completes.
    sp2 = serve_factory(*args, state_dir=state)
    provider = sdk_provider(sp2)
    more = make_rows(rng, 300, drifted=True)
    send_rows(provider, "replayed", "", more,
              event_times_ns=np.full(300, t0 + 40 * 10**9, dtype=np.int64))
    provider.shutdown()
    wait_for(lambda: (d := overall(sp2, "replayed")) and len(d) >= 6 and d, what="decisions")
    time.sleep(1.5)  # an evaluation that started before the last row was applied is superseded
    decisions = overall(sp2, "replayed")
    [ready] = select(sp2.scrape(), "ml_reference_ready", ml_model_name="replayed")
    assert ready.labels["ml_reference_source"] == "pinned"
    assert decisions["amount"] == 1 and decisions["channel"] == 1


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


@pytest.mark.parametrize("receiver_processes", ["0", "2"])  # in the main process, and in receiver workers
def test_partial_success_for_unusable_spans_and_invalid_argument_for_garbage(serve_factory,
                                                                             receiver_processes: str) -> None:
    sp = serve_factory("--evaluation-interval", "0.5", "--receiver-processes", receiver_processes)
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    good = spans.add(end_time_unix_nano=time.time_ns())
    good.attributes.extend([_kv("ml.model.name", AnyValue(string_value="m")),
                            _kv("ml.feature.x", AnyValue(double_value=1.0))])
    bad = spans.add(end_time_unix_nano=time.time_ns())
    arr = AnyValue()
    arr.array_value.values.extend([AnyValue(double_value=1.0)])
    bad.attributes.extend([_kv("ml.model.name", AnyValue(string_value="m")),
                           _kv("ml.batch.size", AnyValue(int_value=2)), _kv("ml.feature.x", arr)])
    spans.add().attributes.extend([_kv("http.route", AnyValue(string_value="/health"))])
    with grpc.insecure_channel(sp.grpc_endpoint) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                     request_serializer=None,
                                     response_deserializer=ExportTraceServiceResponse.FromString)
        resp = export(req.SerializeToString(), timeout=10)
        assert resp.partial_success.rejected_spans == 1
        assert "batch_length_mismatch" in resp.partial_success.error_message
        with pytest.raises(grpc.RpcError) as err:
            export(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # Still serving after garbage.
        assert export(req.SerializeToString(), timeout=10).partial_success.rejected_spans == 1
    samples = sp.scrape()
    [rejected] = select(samples, "otel_ml_spans_rejected_total", reason="batch_length_mismatch")
    assert rejected.value == 2
    assert select(samples, "otel_ml_spans_ignored_total")[0].value == 2
    assert select(samples, "otel_ml_spans_accepted_total")[0].value == 2


def test_serve_help_and_bad_config() -> None:
    out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "serve", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--config", "--otlp-grpc-endpoint", "--prometheus-endpoint", "--baseline-dir", "--state-dir",
                 "--window", "--horizon"):
        assert flag in out.stdout
    bad = subprocess.run([sys.executable, "-m", "otel_ml.cli", "serve", "--window", "0"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "window_seconds" in bad.stderr
