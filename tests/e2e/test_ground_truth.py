"""Ground truth through `otel-ml serve`, with the OTel SDK as the client and `otel-ml labels send` for the labels."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from opentelemetry.sdk.trace import TracerProvider
from sklearn import metrics as skm

from tests.support import sdk_provider, select, wait_for
from tests.unit.test_ground_truth import HOUR


def test_serve_joins_sdk_predictions_with_labels_sent_an_hour_later(tmp_path: Path, serve_factory) -> None:
    """Predictions through the OTel SDK with an event time an hour ago; labels now through `otel-ml labels
    send` (OTLP logs) and through ModelMonitor.record_ground_truth_batch (spans); a kill -9 in between."""
    from otel_ml.instrument import ModelMonitor

    rng = np.random.default_rng(11)
    n = 600
    p = rng.uniform(size=n)
    y = (rng.uniform(size=n) < p).astype(int)
    pred = (p >= 0.5).astype(int)
    sp = serve_factory("--window", "60", "--horizon", "600")
    provider: TracerProvider = sdk_provider(sp)
    tracer = provider.get_tracer("client")
    hour_ago = time.time_ns() - HOUR
    for i in range(n):
        span = tracer.start_span("predict", start_time=hour_ago + i, attributes={
            "ml.model.name": "loans", "ml.model.version": "3", "ml.prediction.id": f"loan-{i}",
            "ml.prediction": int(pred[i]), "ml.prediction.probability": float(p[i]), "ml.feature.x": float(p[i])})
        span.end(end_time=hour_ago + i + 1000)
    # A regressor beside it: numeric predictions, no probability, numeric truth.
    price = rng.lognormal(12, 0.4, 300)
    guess = price * rng.normal(1.02, 0.1, 300)
    guess[:3] = price[:3]  # exact ones, and a zero target (left out of MAPE)
    price[3] = 0.0
    for i in range(300):
        tracer.start_span("predict", start_time=hour_ago + i, attributes={
            "ml.model.name": "prices", "ml.prediction.id": f"house-{i}", "ml.prediction": float(guess[i]),
            "ml.feature.rooms": i % 7}).end(end_time=hour_ago + i + 1000)
    provider.force_flush()
    wait_for(lambda: select(sp.scrape(), "ml_predictions_total", ml_model_name="loans"), what="predictions")
    time.sleep(1.5)  # a checkpoint has run (journal replay covers the rest)
    sp.proc.kill()
    sp.proc.wait()
    sp = serve_factory("--window", "60", "--horizon", "600", state_dir=sp.state_dir)
    half, third = n // 2, n // 3
    for part, signal_kind in ((range(third), "logs"), (range(third, half), "spans")):  # otel-ml labels send
        csv = tmp_path / f"labels-{signal_kind}.csv"
        csv.write_text("loan_id,defaulted\n" + "".join(f"loan-{i},{y[i]}\n" for i in part))
        out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "labels", "send", "--input", str(csv), "--model",
                              "loans", "--id-column", "loan_id", "--label-column", "defaulted", "--endpoint",
                              sp.grpc_endpoint, "--batch", "100", "--as", signal_kind],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and f"sent {len(part)} label(s)" in out.stdout, out.stdout + out.stderr
    provider2 = sdk_provider(sp)
    monitor = ModelMonitor("loans", "3", tracer_provider=provider2)
    monitor.record_ground_truth_batch([f"loan-{i}" for i in range(half, n)], [int(v) for v in y[half:]])
    monitor.record_ground_truth("loan-0", int(y[0]))  # a duplicate
    ModelMonitor("prices", tracer_provider=provider2).record_ground_truth_batch(
        [f"house-{i}" for i in range(300)], [float(v) for v in price])
    provider2.force_flush()

    def realized() -> dict[str, float]:
        got = {s.labels["ml_performance_metric"]: s.value
               for s in select(sp.scrape(), "ml_performance", ml_model_name="loans", ml_model_version="3")}
        return got if len(got) >= 7 and select(sp.scrape(), "ml_ground_truth_coverage")[0].value == 1.0 else {}

    got = wait_for(realized, timeout=40, what="realized performance over every label")
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-5)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-5)
    assert abs(got["roc_auc"] - skm.roc_auc_score(y, p)) < 0.005  # the binning bound at 600 rows, and rounding
    samples = sp.scrape()
    assert select(samples, "ml_ground_truth_total", ml_model_name="loans")[0].value == n
    assert select(samples, "ml_ground_truth_unmatched_total", ml_model_name="loans", reason="duplicate")[0].value == 1
    delay = select(samples, "ml_ground_truth_delay_seconds", ml_model_name="loans", ml_quantile="0.5")[0].value
    assert 3500 < delay < 3800
    wait_for(lambda: [s for s in select(sp.scrape(), "ml_ground_truth_total", ml_model_name="prices")
                      if s.value == 300], what="the regressor's 300 labels")
    e = guess - price
    nz = price != 0

    def regression() -> dict[str, float] | None:  # an evaluation after all 300 labels (earlier ones saw fewer)
        got = {s.labels["ml_performance_metric"]: s.value for s in
               select(sp.scrape(), "ml_performance", ml_model_name="prices")}
        return got if got.get("mae") == pytest.approx(np.mean(np.abs(e)), rel=1e-5) else None

    reg = wait_for(regression, what="regression metrics over all 300 labels")
    assert reg["mae"] == pytest.approx(np.mean(np.abs(e)), rel=1e-5)
    assert reg["rmse"] == pytest.approx(np.sqrt(np.mean(e**2)), rel=1e-5)
    assert reg["bias"] == pytest.approx(np.mean(e), rel=1e-5)
    assert reg["mape"] == pytest.approx(np.mean(np.abs(e[nz] / price[nz])), rel=1e-5)
    assert reg["r2"] == pytest.approx(skm.r2_score(price, guess), rel=1e-5)
    # The same numbers in the JSON API and on the model page.
    ui = f"http://127.0.0.1:{sp.ui_port}"
    doc = json.loads(urllib.request.urlopen(f"{ui}/api/v1/models/loans/versions/3/performance", timeout=10).read())
    perf = doc["performance"]
    assert perf["labeled"] == n and perf["coverage"] == 1.0
    accuracy = next(m for m in perf["metrics"] if m["metric"] == "accuracy")
    assert accuracy["realized"]["value"] == pytest.approx(skm.accuracy_score(y, pred))
    page = urllib.request.urlopen(f"{ui}/models/loans/versions/3", timeout=10).read().decode()
    assert "<h2>Performance</h2>" in page and "roc_auc" in page
    # issue 31 case 9: the 0/1 prediction is compared as a number; one line says so and how to change it
    hint = next(x for x in sp.log if "holding only a few whole numbers" in x)
    assert "model 'loans' version '3'" in hint and "prediction (0, 1)" in hint and "--categorical" in hint, hint


def test_bad_ground_truth_is_refused_with_a_reason_over_grpc_and_http(serve_factory) -> None:
    import grpc
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
    )

    sp = serve_factory()
    with grpc.insecure_channel(sp.grpc_endpoint) as ch:
        export = ch.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                                response_deserializer=ExportLogsServiceResponse.FromString)
        with pytest.raises(grpc.RpcError) as err:
            export(b"\xff\xff not protobuf", timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        req = ExportLogsServiceRequest()
        records = req.resource_logs.add().scope_logs.add().log_records
        no_id = records.add()
        no_id.attributes.add(key="ml.model.name").value.string_value = "m"
        no_id.attributes.add(key="ml.ground_truth").value.int_value = 1
        ragged = records.add()
        for k, v in (("ml.model.name", "m"), ("event.name", "ml.ground_truth")):
            ragged.attributes.add(key=k).value.string_value = v
        ragged.attributes.add(key="ml.batch.size").value.int_value = 2
        ragged.attributes.add(key="ml.prediction.id").value.array_value.values.add().string_value = "a"
        ragged.attributes.add(key="ml.ground_truth").value.array_value.values.add().int_value = 1
        records.add().body.string_value = "an ordinary log line"  # ignored, not rejected
        answer = export(req.SerializeToString(), timeout=10)
    assert answer.partial_success.rejected_log_records == 2
    assert "ground_truth_without_id" in answer.partial_success.error_message
    assert "batch_length_mismatch" in answer.partial_success.error_message
    # OTLP/HTTP JSON, as a browser-side or curl sender would.
    body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": [
        {"key": "ml.model.name", "value": {"stringValue": "m"}},
        {"key": "ml.prediction.id", "value": {"stringValue": "nope"}},
        {"key": "ml.ground_truth", "value": {"boolValue": True}}]}]}]}]}).encode()
    reply = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{sp.http_port}/v1/logs", data=body, headers={"Content-Type": "application/json"}),
        timeout=10).read())
    assert reply == {}  # accepted: an early label, waiting for its prediction
    rejected = {s.labels["reason"]: s.value for s in select(sp.scrape(), "otel_ml_spans_rejected_total")}
    assert rejected["ground_truth_without_id"] == 1 and rejected["batch_length_mismatch"] == 1


def test_labelled_baseline_built_shown_and_refused_when_wrong(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(size=3000)
    y = (rng.uniform(size=3000) < p).astype(int)
    pred = (p >= 0.5).astype(int)
    csv = tmp_path / "ref.csv"
    csv.write_text("x,p,pred,y\n" + "".join(f"{a * 3:.4f},{a:.6f},{b},{c}\n" for a, b, c in zip(p, pred, y)))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "otel_ml.cli", *args], capture_output=True, text=True, timeout=60)

    out = cli("baseline", "build", "--model", "m", "--input", str(csv), "--prediction-column", "pred",
              "--probability-column", "p", "--target-column", "y", "--output", str(tmp_path / "m.json"))
    assert out.returncode == 0, out.stderr
    assert "reference performance: accuracy" in out.stdout
    shown = cli("baseline", "show", str(tmp_path / "m.json"))
    assert "performance on 3,000 labelled rows (classification, positive class '1'" in shown.stdout, shown.stdout
    doc = json.loads(cli("baseline", "show", "--json", str(tmp_path / "m.json")).stdout)
    assert "y" not in doc["features"] and "prediction.probability" in doc["features"]  # the target is no feature
    metrics = doc["performance"]["metrics"]
    assert metrics["accuracy"]["value"] == pytest.approx(skm.accuracy_score(y, pred))
    assert metrics["roc_auc"]["chunk_std"] > 0
    # Wrong input: one line, exit 2, nothing written.
    bad = cli("baseline", "build", "--model", "m", "--input", str(csv), "--target-column", "y", "--output",
              str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "needs --prediction-column or --probability-column" in bad.stderr
    wrong = cli("baseline", "build", "--model", "m", "--input", str(csv), "--probability-column", "x",
                "--target-column", "y", "--output", str(tmp_path / "bad.json"))
    assert wrong.returncode == 2 and "must hold numbers in [0, 1]" in wrong.stderr, wrong.stderr
    assert not (tmp_path / "bad.json").exists()


def test_offline_report_has_performance_and_the_processors_baseline(tmp_path: Path, serve_factory) -> None:
    """Issue 31 case 6: `otel-ml report` had no performance section and needed --baseline-dir again although the
    processor knew it. Now the state directory records the baseline directory the processor used, and the report
    shows realized performance over the range's labelled windows (equal to scikit-learn) beside the drift."""
    import pandas as pd

    from tests.support import LOGS, TRACES, export, labels_request, predictions_request

    rng = np.random.default_rng(5)
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    pd.DataFrame({"x": rng.uniform(size=2000)}).to_csv(tmp_path / "ref.csv", index=False)
    subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "loans", "--input",
                    str(tmp_path / "ref.csv"), "--output", str(baselines / "loans.json")], check=True,
                   capture_output=True)
    sp = serve_factory("--baseline-dir", str(baselines), "--window", "60", "--evaluation-interval", "0.5")
    n = 400
    p = rng.uniform(size=n)
    y = (rng.uniform(size=n) < p).astype(int)
    pred = (p >= 0.5).astype(int)
    now = time.time_ns()
    export(sp, TRACES, predictions_request("loans", [
        {"ml.prediction.id": f"l-{i}", "ml.prediction": int(pred[i]), "ml.prediction.probability": float(p[i]),
         "ml.feature.x": float(p[i])} for i in range(n)], now - 10**9))
    export(sp, LOGS, labels_request("loans", [(f"l-{i}", int(y[i])) for i in range(n)], now))

    def labelled() -> dict | None:
        try:
            doc = json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{sp.ui_port}/api/v1/models/loans/versions/_/performance", timeout=10).read())
        except urllib.error.HTTPError:  # 404 until the model's first evaluation
            return None
        perf = doc["performance"]
        return perf if perf and perf["labeled"] == n else None

    wait_for(labelled, what=f"all {n} labels joined")
    import otel_ml  # the notebook client reads the same (issue 31 case 9: it had no performance method)

    table = otel_ml.Client(f"http://127.0.0.1:{sp.ui_port}").performance("loans").set_index("metric")
    assert table.loc["accuracy", "realized.value"] == pytest.approx(skm.accuracy_score(y, pred))
    assert table.loc["accuracy", "realized.n"] == n
    assert otel_ml.Client(f"http://127.0.0.1:{sp.ui_port}").performance_summary("loans")["coverage"] == 1.0
    assert sp.stop() == 0  # the final checkpoint writes the windows the report reads
    out = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "otel_ml.cli", "report", "--state-dir", str(sp.state_dir),
                           "--model", "loans", "--output", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert "against the reference (baseline loans.json)" in html, html[:3000]
    assert "<h2>Performance</h2>" in html and f"{n:,} labelled of {n:,}" in html
    accuracy = re.search(r"<td class=name>accuracy</td><td class=num>([0-9.]+)", html)
    assert accuracy and float(accuracy.group(1)) == pytest.approx(skm.accuracy_score(y, pred), abs=5e-4), accuracy


def test_a_wrapped_model_names_its_predictions_and_labels_join_them(serve_factory) -> None:
    """Issue 31 case 9: `monitor.wrap()` could not attach prediction ids, so a wrapped model had no ground truth,
    and the error ratio counted spans (a failed 10-row call among 310 rows read 1/7).
    ``wrap(model, prediction_id="request_id")``: the column names each row (the model never sees it), and labels
    sent later join; the realized accuracy equals scikit-learn's."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from otel_ml.instrument import ModelMonitor

    rng = np.random.default_rng(8)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = (X["a"] + rng.normal(scale=0.8, size=300) > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    sp = serve_factory("--evaluation-interval", "0.5")
    provider = sdk_provider(sp)
    monitor = ModelMonitor("wrapped", "1", tracer_provider=provider)
    wrapped = monitor.wrap(model, prediction_id="request_id")
    predicted = []
    for start in range(0, 300, 50):
        batch = X.iloc[start:start + 50].assign(request_id=[f"r-{i}" for i in range(start, start + 50)])
        predicted += list(wrapped.predict(batch))
    monitor.record_ground_truth_batch([f"r-{i}" for i in range(300)], [int(v) for v in y])
    with pytest.raises(ValueError):  # one failed call of 10 rows: 10 failed predictions of 310, not 1 span of 7
        wrapped.predict(X.iloc[:10].assign(a=np.nan, request_id=[f"bad-{i}" for i in range(10)]))
    provider.force_flush()

    def accuracy() -> float | None:
        got = {s.labels["ml_performance_metric"]: s.value
               for s in select(sp.scrape(), "ml_performance", ml_model_name="wrapped", ml_model_version="1")}
        total = select(sp.scrape(), "ml_ground_truth_total", ml_model_name="wrapped")
        return got.get("accuracy") if total and total[0].value == 300 else None

    assert wait_for(accuracy, what="all 300 labels joined") == pytest.approx(skm.accuracy_score(y, predicted),
                                                                              abs=1e-6)
    assert monitor.dropped_values == 0
    errors = wait_for(lambda: [s for s in select(sp.scrape(), "ml_prediction_error_ratio", ml_model_name="wrapped")
                               if s.value > 0], what="the error ratio with the failed call")
    assert errors[0].value == pytest.approx(10 / 310, rel=1e-5)
    provider.shutdown()


def test_a_multiclass_model_gets_realized_auc_log_loss_and_label_free_estimates(tmp_path: Path,
                                                                              serve_factory) -> None:
    """Issue 32: per-class probabilities (ml.prediction.probability.<class>) from a wrapped scikit-learn model
    through the SDK; a labelled baseline built with --class-probability-column; a kill -9 while predictions wait
    for labels. Realized one-vs-rest ROC AUC and log loss equal scikit-learn's on the same rows (probabilities
    on a 0.01 grid: no two differ within one of the 1,024 bins, so the binned AUC is exact); before any label the
    multiclass estimates are exported, and they flag the accuracy drop a shift of the inputs causes."""
    from sklearn.linear_model import LogisticRegression

    from otel_ml.instrument import ModelMonitor

    rng = np.random.default_rng(5)
    classes = np.array(["bronze", "gold", "silver"])

    def data(n: int, near_boundaries: bool = False) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, 20 * n)
        x = np.column_stack([y + rng.normal(0, 0.8, 20 * n), rng.normal(0, 1, 20 * n)])
        # A covariate shift (P(class | x) unchanged): rows near the classes' boundaries, where the model is unsure
        keep = np.flatnonzero((np.abs(x[:, 0] - 0.5) < 0.25) | (np.abs(x[:, 0] - 1.5) < 0.25) if near_boundaries
                              else np.ones(len(y), bool))[:n]
        return x[keep], classes[y[keep]]

    x_ref, y_ref = data(4000)
    model = LogisticRegression().fit(x_ref, y_ref)

    def on_grid(x: np.ndarray) -> np.ndarray:  # probabilities on a 0.01 grid that still sum to 1
        first = np.floor(model.predict_proba(x)[:, :2] * 100) / 100
        return np.column_stack([first, np.round(1 - first.sum(axis=1), 2)])

    p_ref = on_grid(x_ref)
    ref_csv = tmp_path / "reference.csv"
    ref_csv.write_text("a,b,pred,y,p_bronze,p_gold,p_silver\n" + "".join(
        f"{a},{b},{model.classes_[np.argmax(p)]},{t},{p[0]},{p[1]},{p[2]}\n"
        for (a, b), p, t in zip(x_ref, p_ref, y_ref)))
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "tiers", "--input",
                          str(ref_csv), "--prediction-column", "pred", "--target-column", "y",
                          *[f"--class-probability-column={c}=p_{c}" for c in classes],
                          "--output", str(baselines / "tiers.json")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr

    class Rounded:  # the model's probabilities on a 0.01 grid (see the docstring)
        classes_ = model.classes_

        def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
            return on_grid(np.asarray(x, dtype=float))

    args = ("--window", "60", "--horizon", "600", "--baseline-dir", str(baselines))
    sp = serve_factory(*args)
    provider = sdk_provider(sp)
    monitor = ModelMonitor("tiers", tracer_provider=provider)
    x_cur, y_cur = data(1500, near_boundaries=True)
    ids = [f"c-{i}" for i in range(len(x_cur))]
    frame = pd.DataFrame({"a": x_cur[:, 0], "b": x_cur[:, 1], "id": ids})
    wrapped = monitor.wrap(Rounded(), prediction_id="id")  # the id column is taken out before the model sees it
    p_cur = np.concatenate([wrapped.predict_proba(frame.iloc[k:k + 500]) for k in range(0, len(frame), 500)])
    provider.force_flush()

    def estimated() -> dict[str, float]:  # from an evaluation that saw all 1,500 predictions (the API gives n)
        try:
            doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models/tiers/versions/_"
                                                    "/performance", timeout=10).read())
        except urllib.error.HTTPError:  # not evaluated yet
            return {}
        got = {m["metric"]: m["estimated"] for m in doc["performance"]["metrics"] if m["estimated"]}
        return {k: v["value"] for k, v in got.items()} if len(got) == 5 and all(
            v["n"] == 1500 for v in got.values()) else {}

    est = wait_for(estimated, timeout=40, what="the multiclass estimates over all 1,500 predictions")
    assert 0.3 < est["accuracy"] < 0.9 and 0.5 < est["roc_auc"] < 1.0
    degraded = wait_for(lambda: {s.labels["ml_performance_metric"] for s in select(
        sp.scrape(), "ml_performance_estimated_degraded", ml_model_name="tiers") if s.value == 1.0},
        timeout=40, what="an estimated degradation")
    assert "accuracy" in degraded
    time.sleep(1.5)  # a checkpoint has run: the waiting predictions are in segment files (journal covers the rest)
    sp.proc.kill()
    sp.proc.wait()
    sp = serve_factory(*args, state_dir=sp.state_dir)
    provider2 = sdk_provider(sp)
    ModelMonitor("tiers", tracer_provider=provider2).record_ground_truth_batch(ids, list(y_cur))
    provider2.force_flush()
    want_auc = skm.roc_auc_score(y_cur, p_cur, multi_class="ovr", labels=model.classes_)
    want_ll = skm.log_loss(y_cur, p_cur, labels=model.classes_)

    def realized() -> dict[str, float]:  # the model's series (per-class ones carry ml_class)
        got = {s.labels["ml_performance_metric"]: s.value
               for s in select(sp.scrape(), "ml_performance", ml_model_name="tiers") if "ml_class" not in s.labels}
        return got if got.get("roc_auc") == pytest.approx(want_auc, abs=1e-6) else {}

    got = wait_for(realized, timeout=40, what="realized AUC over all 1,500 labels")
    assert got["log_loss"] == pytest.approx(want_ll, rel=1e-5)
    pred = model.classes_[np.argmax(p_cur, axis=1)]
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y_cur, pred), abs=1e-6)
    doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models/tiers/versions/_"
                                            "/performance", timeout=10).read())
    auc = next(m for m in doc["performance"]["metrics"] if m["metric"] == "roc_auc")
    assert auc["realized"]["value"] == pytest.approx(want_auc, abs=1e-6) and auc["reference"]["value"] > 0.8
    for j, c in enumerate(model.classes_):  # one-vs-rest, per class
        assert doc["performance"]["per_class"][c]["roc_auc"] == pytest.approx(
            skm.roc_auc_score(y_cur == c, p_cur[:, j]), abs=1e-9)
    auc_series = select(sp.scrape(), "ml_performance", ml_model_name="tiers", ml_performance_metric="roc_auc")
    per_class = {s.labels["ml_class"]: s.value for s in auc_series if "ml_class" in s.labels}
    assert per_class == pytest.approx({c: skm.roc_auc_score(y_cur == c, p_cur[:, j])
                                       for j, c in enumerate(model.classes_)}, abs=1e-5)


def test_a_regressor_gets_label_free_estimates_from_its_baselines_loss_models(tmp_path: Path,
                                                                            serve_factory) -> None:
    """Issue 32 case 2: `baseline build --target-column` of a regressor fits expected-loss models (LightGBM, kept
    as plain numbers); `otel-ml serve` evaluates them on every prediction and exports estimated MAE, RMSE and MAPE
    before any label, equal to the models' mean over the predictions sent, and flags the error growth a shift to
    the inputs where the model is worse causes."""
    from otel_ml.instrument import ModelMonitor
    from otel_ml.profile.model import ModelProfile

    rng = np.random.default_rng(8)

    def data(n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = rng.normal(shift, 1, n)
        region = rng.choice(["north", "south"], n)
        truth = 100 + 10 * x
        pred = truth + rng.normal(0, 1, n) * (1 + 3 * np.abs(x)) * np.where(region == "north", 2.0, 1.0)
        return x, region, np.column_stack([truth, pred])

    x, region, yp = data(5000)
    csv = tmp_path / "reference.csv"
    csv.write_text("x,region,price,predicted\n" + "".join(
        f"{a},{r},{t},{p}\n" for a, r, (t, p) in zip(x, region, yp)))
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "prices", "--input",
                          str(csv), "--prediction-column", "predicted", "--target-column", "price", "--output",
                          str(baselines / "prices.json")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    models = ModelProfile.read(baselines / "prices.json").performance.loss_models
    assert set(models) == {"abs", "squared", "abs_pct"}
    sp = serve_factory("--window", "60", "--horizon", "600", "--baseline-dir", str(baselines))
    provider = sdk_provider(sp)
    monitor = ModelMonitor("prices", tracer_provider=provider)
    x_cur, region_cur, yp_cur = data(2000, shift=1.5)  # further from 0: larger errors
    for k in range(0, 2000, 500):
        monitor.record_batch({"x": x_cur[k:k + 500].tolist(), "region": region_cur[k:k + 500].tolist()},
                             predictions=yp_cur[k:k + 500, 1].tolist())
    provider.force_flush()
    inputs = models["abs"].matrix({"x": x_cur, "prediction": yp_cur[:, 1]}, {"region": region_cur})
    want = {"mae": np.maximum(models["abs"].predict(inputs), 0).mean(),
            "rmse": np.sqrt(np.maximum(models["squared"].predict(inputs), 0).mean()),
            "mape": np.maximum(models["abs_pct"].predict(inputs), 0).mean()}

    def estimated() -> dict[str, float]:
        got = {s.labels["ml_performance_metric"]: s.value
               for s in select(sp.scrape(), "ml_performance_estimated", ml_model_name="prices")}
        return got if got.get("mae") == pytest.approx(want["mae"], rel=1e-5) else {}

    got = wait_for(estimated, timeout=40, what="estimates over all 2,000 predictions")
    assert got["rmse"] == pytest.approx(want["rmse"], rel=1e-5)
    assert got["mape"] == pytest.approx(want["mape"], rel=1e-5)
    realized_mae = np.mean(np.abs(yp_cur[:, 1] - yp_cur[:, 0]))
    assert abs(got["mae"] / realized_mae - 1) < 0.1  # the models see what makes errors large
    degraded = wait_for(lambda: {s.labels["ml_performance_metric"] for s in select(
        sp.scrape(), "ml_performance_estimated_degraded", ml_model_name="prices") if s.value == 1.0},
        timeout=40, what="an estimated degradation")
    assert "mae" in degraded
    # Trees do not extrapolate: the share of rows outside the reference's support is exported beside the estimate
    # (here x moved by 1.5 σ: a few rows beyond the reference's range, under the 0.1 past which decisions stop).
    unsupported = select(sp.scrape(), "ml_performance_estimate_unsupported", ml_model_name="prices")
    assert unsupported and 0 <= unsupported[0].value < 0.1, unsupported


@pytest.mark.parametrize("classes", [64, 70, 200])
def test_multiclass_log_loss_is_right_or_withheld_past_the_class_limit(serve_factory, classes: int) -> None:
    """Issue 49 D: a perfect classifier (the true class always p = 0.9) had log loss 0.105 with 64 classes, 3.25
    with 70, 24.9 with 200, without a word. The label join keeps 64 classes' probabilities: up to that the log loss
    equals scikit-learn's; beyond, it is withheld with the reason, counted and logged, and accuracy stays exact."""
    from sklearn.metrics import log_loss

    from tests.support import LOGS, TRACES, export, labels_request, predictions_request

    sp = serve_factory("--evaluation-interval", "0.5")
    names = [f"c{k:03d}" for k in range(classes)]
    n = 300
    truth = [names[i % classes] for i in range(n)]
    rows = []
    for i in range(n):
        row: dict[str, object] = {"ml.prediction.id": f"p{i}", "ml.prediction": truth[i]}
        row.update({f"ml.prediction.probability.{c}": 0.9 if c == truth[i] else 0.1 / (classes - 1) for c in names})
        rows.append(row)
    now = time.time_ns()
    for lo in range(0, n, 50):
        answer = export(sp, TRACES, predictions_request("many", rows[lo:lo + 50], now))
        assert answer.partial_success.rejected_spans == 0
    export(sp, LOGS, labels_request("many", [(f"p{i}", truth[i]) for i in range(n)], now))

    def labelled() -> dict | None:
        try:
            doc = json.loads(urllib.request.urlopen(
                f"http://127.0.0.1:{sp.ui_port}/api/v1/models/many/versions/_/performance", timeout=10).read())
        except urllib.error.HTTPError:
            return None
        perf = doc["performance"]
        return perf if perf and perf["labeled"] == n else None

    perf = wait_for(labelled, what=f"all {n} labels joined")
    metrics = {m["metric"]: m["realized"] for m in perf["metrics"]}
    assert metrics["accuracy"]["value"] == 1.0
    if classes <= 64:
        p = np.full((n, classes), 0.1 / (classes - 1))
        p[np.arange(n), [names.index(t) for t in truth]] = 0.9
        # The join keeps probabilities as float32: each row's p and its total within 2^-24 relative, so its
        # -log(p / total) within 2 * 2^-24.
        assert metrics["log_loss"]["value"] == pytest.approx(log_loss(truth, p, labels=names), abs=2 * 2.0**-24)
        assert "withheld" not in perf
    else:
        assert "log_loss" not in metrics or metrics["log_loss"] is None, metrics.get("log_loss")
        assert "more classes than the label join keeps (64)" in perf["withheld"]["log_loss"]
        assert wait_for(lambda: sum(s.value for s in select(sp.scrape(), "otel_ml_log_loss_withheld_total",
                                                            ml_model_name="many")) == n, what="withheld counted")
        assert "its log loss is withheld" in "".join(sp.log)
