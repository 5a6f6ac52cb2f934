"""Ground truth under hostile or careless input, through a running `otel-ml serve` (issue 29): a label stamped in
the future, privacy hashing of labels, unusable label values and ids, a request with values a sketch cannot take.
Each case failed before its fix."""

from __future__ import annotations

import math
import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support import (
    LOGS,
    TRACES,
    counter,
    export,
    labels_request,
    predictions_request,
    select,
    set_attribute,
    wait_for,
)


def test_a_label_stamped_in_the_future_never_breaks_the_join(serve_factory) -> None:
    """One log record for a never-seen model stamped in year 2100 used to move the join's one clock: every later
    label of every model was `expired`, also after a restart. Now it is refused like such a span, and each model
    has its own clock."""
    sp = serve_factory()
    answer = export(sp, LOGS, labels_request("never-seen", [("x", 1)], 4_102_444_800 * 10**9))
    assert answer.partial_success.rejected_log_records == 1
    assert "timestamp_in_future" in answer.partial_success.error_message
    # A label for another model 50 minutes ahead (inside the skew limit) moves only that model's clock.
    export(sp, LOGS, labels_request("other", [("y", 1)], time.time_ns() + 50 * 60 * 10**9))
    now = time.time_ns()
    rows = [{"ml.prediction.id": f"r{i}", "ml.prediction": i % 2, "ml.prediction.probability": 0.9 if i % 2 else 0.1}
            for i in range(1000)]
    export(sp, TRACES, predictions_request("m", rows, now))
    export(sp, LOGS, labels_request("m", [(f"r{i}", i % 2) for i in range(500)], now + 12 * 10**9))
    sp.proc.kill()
    sp.proc.wait()
    sp = serve_factory(state_dir=sp.state_dir)
    export(sp, LOGS, labels_request("m", [(f"r{i}", i % 2) for i in range(500, 1000)], now + 13 * 10**9))
    wait_for(lambda: counter(sp, "ml_ground_truth_total", ml_model_name="m") == 1000, what="1000 labels joined")
    assert counter(sp, "ml_ground_truth_unmatched_total", ml_model_name="m", reason="expired") == 0
    wait_for(lambda: [s for s in select(sp.scrape(), "ml_performance", ml_model_name="m",
                                        ml_performance_metric="accuracy") if s.value == 1.0],
             what="realized accuracy 1.0")


def test_with_privacy_hashing_labels_match_their_predictions_and_stay_off_disk(serve_factory, monkeypatch,
                                                                               tmp_path: Path) -> None:
    """Text predictions were hashed and text labels were not: a perfect classifier scored 0.0 and the raw label
    text reached the state directory."""
    monkeypatch.setenv("ML_TEST_HASH_KEY", "s3cret")
    config = tmp_path / "otel-ml.yaml"
    config.write_text("privacy:\n  hash_key_env: ML_TEST_HASH_KEY\n")
    sp = serve_factory("--config", str(config))
    now = time.time_ns()
    classes = ["approve-Zq7", "decline-Zq7"]
    export(sp, TRACES, predictions_request("loans", [{"ml.prediction.id": f"p{i}", "ml.prediction": classes[i % 2]}
                                                     for i in range(400)], now))
    export(sp, LOGS, labels_request("loans", [(f"p{i}", classes[i % 2]) for i in range(400)], now + 10**9))
    wait_for(lambda: counter(sp, "ml_ground_truth_total", ml_model_name="loans") == 400, what="400 labels")

    def metrics() -> dict[str, float]:
        got = {s.labels["ml_performance_metric"]: s.value for s in select(
            sp.scrape(), "ml_performance", ml_model_name="loans") if "ml_class" not in s.labels}
        return got if {"accuracy", "precision", "recall", "f1"} <= set(got) else {}

    got = wait_for(metrics, what="realized performance")
    assert got["accuracy"] == got["precision"] == got["recall"] == got["f1"] == 1.0
    sp.stop()  # a final checkpoint: everything the processor keeps is on disk now
    for path in sp.state_dir.rglob("*"):
        if path.is_file():
            assert b"Zq7" not in path.read_bytes(), path
    assert not any(c in "".join(sp.log) for c in classes)


def _label_span_request(model: str, pid: object, value: AnyValue, t_ns: int) -> bytes:
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add(end_time_unix_nano=t_ns)
    set_attribute(span.attributes, "ml.model.name", model)
    set_attribute(span.attributes, "ml.prediction.id", pid)
    span.attributes.add(key="ml.ground_truth").value.CopyFrom(value)
    return req.SerializeToString()


def test_unusable_label_values_and_ids_are_refused_with_reasons_on_both_signals(serve_factory) -> None:
    """A label span whose value was NaN, inf, bytes, a map or "" was counted as a prediction; as log records the
    same were acknowledged and dropped silently. Ids were cut at 256 characters, so "k"*256 and "k"*257 joined
    each other; a double id was refused in logs and accepted in spans."""
    sp = serve_factory()
    now = time.time_ns()
    export(sp, TRACES, predictions_request("m", [{"ml.prediction.id": "k" * 256, "ml.prediction": 1,
                                                  "ml.prediction.probability": 0.9}], now))
    wait_for(lambda: counter(sp, "ml_predictions_total", ml_model_name="m") == 1, what="the one prediction")
    kv = AnyValue()
    kv.kvlist_value.values.add(key="a").value.int_value = 1
    bad = [AnyValue(double_value=math.nan), AnyValue(double_value=math.inf), AnyValue(bytes_value=b"\x00"), kv,
           AnyValue(string_value="")]
    for value in bad:
        answer = export(sp, TRACES, _label_span_request("m", "k" * 256, value, now))
        assert answer.partial_success.rejected_spans == 1 and "invalid_ground_truth" in \
            answer.partial_success.error_message
        answer = export(sp, LOGS, labels_request("m", [("k" * 256, value)], now))
        assert answer.partial_success.rejected_log_records == 1
    for pid, reason in (("k" * 257, "prediction_id_too_long"), ("k" * 1_000_000, "prediction_id_too_long"),
                        (1.5, "invalid_prediction_id")):
        for body, method in ((_label_span_request("m", pid, AnyValue(int_value=1), now), TRACES),
                             (labels_request("m", [(pid, 1)], now), LOGS)):
            answer = export(sp, method, body)
            assert reason in answer.partial_success.error_message, (reason, method)
    export(sp, LOGS, labels_request("m", [("k" * 256, 1)], now))  # the whole id: joins
    wait_for(lambda: counter(sp, "ml_ground_truth_total", ml_model_name="m") == 1, what="the one label joined")
    rejected = {s.labels["reason"]: s.value for s in select(sp.scrape(), "otel_ml_spans_rejected_total")}
    assert rejected["invalid_ground_truth"] == 10
    assert rejected["prediction_id_too_long"] == 4 and rejected["invalid_prediction_id"] == 2
    assert counter(sp, "ml_predictions_total", ml_model_name="m") == 1  # no label ever counted as a prediction
    assert counter(sp, "ml_ground_truth_unmatched_total", ml_model_name="m") == 0


def test_a_request_with_values_a_sketch_cannot_take_is_applied_whole(serve_factory) -> None:
    """Issue 29 case 4: one request of 100 rows of a healthy model and 100 rows of a new model whose feature holds
    ±1.7e308 was journaled, then half applied: HTTP 400 (which OTel exporters drop for good), the healthy rows in
    the windows but not counted, the new model's horizon at 400 rows against 300 counted. Numbers beyond ±1e100 are
    now unusable values (counted as type mismatches) before anything is journaled: the request is applied whole,
    answered OK, and counts and horizons agree, also after a restart that replays the journal."""
    import urllib.request

    sp = serve_factory("--evaluation-interval", "0.5")
    now = time.time_ns()
    rows = ([{"ml.feature.x": float(i)} for i in range(100)]
            + [{"ml.model.name": "huge", "ml.feature.x": (-1) ** i * 1.7e308} for i in range(100)])
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    for row in rows:
        span = spans.add(start_time_unix_nano=now, end_time_unix_nano=now)
        set_attribute(span.attributes, "ml.model.name", row.pop("ml.model.name", "healthy"))
        for k, v in row.items():
            set_attribute(span.attributes, k, v)
    answer = export(sp, TRACES, req.SerializeToString())
    assert not answer.partial_success.rejected_spans, answer

    def counted() -> dict[str, float] | None:
        got = {m: sum(s.value for s in select(sp.scrape(), "ml_predictions_total", ml_model_name=m))
               for m in ("healthy", "huge")}
        return got if got == {"healthy": 100, "huge": 100} else None

    wait_for(counted, what="100 predictions of each model counted")
    import json

    def rows_in_horizon() -> dict[str, int] | None:
        doc = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models", timeout=10))
        got = {m["model"]: m["current_rows"] for m in doc["models"]}
        return got if got == {"healthy": 100, "huge": 100} else None

    wait_for(rows_in_horizon, what="100 rows of each in its horizon")
    huge = json.load(urllib.request.urlopen(
        f"http://127.0.0.1:{sp.ui_port}/api/v1/models/huge/versions/_/drift", timeout=10))["features"]
    x = next(f for f in huge if f["name"] == "x")
    assert x["type_mismatch_ratio"] == 1.0, x  # unusable values, said so
    assert counter(sp, "otel_ml_apply_errors_total") == 0
    sp.proc.kill()
    sp.proc.wait()
    sp = serve_factory("--evaluation-interval", "0.5", state_dir=sp.state_dir)  # the closures read the new one
    wait_for(counted, what="the same counts after replaying the journal")
    wait_for(rows_in_horizon, what="the same horizons after replaying the journal")
