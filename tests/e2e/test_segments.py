"""Issue 33 (first part): drift per segment and which segment a change comes from, through a running `otel-ml serve`
fed by the plain OTel SDK (ModelMonitor batches at their own event times)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.support import sdk_provider, select, wait_for

NS = 1_000_000_000
REGIONS = [f"r{k}" for k in range(8)]
ROWS = 8000


def send(monitor, rng: np.random.Generator, start_s: float, shares: list[float], mean_of,
         as_segment: bool = False) -> None:
    """``ROWS`` predictions over 540 s from ``start_s`` (Unix seconds), regions drawn with ``shares``, x normal
    around ``mean_of(region)``, a category c the same everywhere. The region is a feature, or with ``as_segment``
    the span attribute ``ml.segment.region``."""
    regions = rng.choice(np.array(REGIONS), ROWS, p=shares)
    x = rng.normal(0, 1, ROWS) + np.array([mean_of(r) for r in regions])
    c = rng.choice(np.array(["a", "b", "c"]), ROWS, p=[0.5, 0.3, 0.2])
    times = start_s + np.sort(rng.uniform(0, 540, ROWS))
    for k in range(0, ROWS, 500):
        region = {"region": regions[k:k + 500].tolist()}
        monitor.record_batch({"x": x[k:k + 500].tolist(), "c": c[k:k + 500].tolist(),
                              **({} if as_segment else region)}, timestamps=times[k:k + 500].tolist(),
                             segments=region if as_segment else None)


def drift_document(sp, model: str) -> dict:
    base = f"http://127.0.0.1:{sp.ui_port}"
    with urllib.request.urlopen(f"{base}/api/v1/models", timeout=10) as r:
        href = next(m["href"] for m in json.load(r)["models"] if m["model"] == model)
    with urllib.request.urlopen(base + href, timeout=10) as r:  # the model's drift document
        return json.load(r)


def test_one_region_drifting_is_flagged_and_ranked_first_and_a_mix_shift_is_attributed_to_mix(
        tmp_path: Path, serve_factory) -> None:
    """Two models segmented by region (8 regions), each reference pinned from its first 540 s of traffic.
    (a) ``within``: region r3's x moves by 3 σ, every region's share unchanged: r3 is the only segment flagged, x
    is the feature it names, and r3 is first in x's attribution, as a change within the segment.
    (c) ``mix``: regions keep their own x distributions (means 0 to 3.5) but r7's share goes from 1/8 to 1/2: no
    segment is flagged, and x's change is attributed to mix. Then a kill -9: the segments come back with their
    windows. A third model sends (a)'s data with the region as the span attribute ``ml.segment.region``, and no
    configuration: segmented alike, r3 flagged, and the region is not a feature."""
    from otel_ml.instrument import ModelMonitor

    config = tmp_path / "otel-ml.yaml"
    config.write_text("segments:\n  by:\n    within: [region]\n    mix: [region]\n"
                      "export:\n  detail_for:\n    within/x: methods\n")
    sp = serve_factory("--config", str(config), "--window", "60", "--horizon", "600", "--evaluation-interval", "0.5")
    provider = sdk_provider(sp)
    rng = np.random.default_rng(11)
    start = time.time() - 1300
    even = [1 / 8] * 8
    skewed = [1 / 14] * 7 + [1 / 2]
    for model, shares_after, mean_before, mean_after in (
            ("within", even, lambda r: 0.0, lambda r: 3.0 if r == "r3" else 0.0),
            ("mix", skewed, lambda r: int(r[1]) / 2, lambda r: int(r[1]) / 2)):
        monitor = ModelMonitor(model, tracer_provider=provider)
        send(monitor, rng, start, even, mean_before)
        send(monitor, rng, start + 660, shares_after, mean_after)
    attributes = ModelMonitor("attributes", tracer_provider=provider)
    send(attributes, rng, start, even, lambda r: 0.0, as_segment=True)
    send(attributes, rng, start + 660, even, lambda r: 3.0 if r == "r3" else 0.0, as_segment=True)
    provider.force_flush()

    def evaluated(model: str) -> dict | None:
        shares = select(sp.scrape(), "ml_segment_share", ml_model_name=model, ml_sample="current")
        if len(shares) != 8:
            return None
        doc = drift_document(sp, model)
        counted = sum(s["current_predictions"] for s in doc["segments"])
        return doc if counted == ROWS else None

    within = wait_for(lambda: evaluated("within"), timeout=90, what="the within model's segments over every row")
    flagged = [s["segment"] for s in within["segments"] if s["detected"]]
    assert flagged == ["region=r3"], within["segments"]
    assert within["segments"][0]["drifted_features"] == ["x"]
    x_parts = [c for c in within["segment_contributions"] if c["feature"] == "x"]
    assert x_parts[0]["segment"] == "region=r3" and x_parts[0]["within"] > 0.3 > abs(x_parts[0]["mix"]), x_parts[:2]
    with urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models", timeout=10) as r:
        href = next(m["href"] for m in json.load(r)["models"] if m["model"] == "within")
    with urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}{href.removeprefix('/api/v1').removesuffix('/drift')}",
                                timeout=10) as r:
        page = r.read().decode()
    table = page[page.index("<h2>Segments</h2>"):]  # the model page's segment table, the drifted one first
    assert table.index("region=r3") < min(table.index(f"region={r}") for r in REGIONS if r != "r3")
    assert "Which segments moved each feature" in table
    # The segment's own page, linked from the table, and its API document: x drifted in it, c not.
    link = table[:table.index(">region=r3<")].rsplit('href="', 1)[1].split('"')[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}{link}", timeout=10) as r:
        segment_page = r.read().decode()
    assert "segment of within" in segment_page and segment_page.index(">x<") < segment_page.index(">c<")
    with urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1{link}", timeout=10) as r:
        segment = json.load(r)
    assert segment["segment"] == "region=r3" and segment["detected"] is True
    assert [(f["feature"], f["drifted"]) for f in segment["features"]] == [("x", True), ("c", False)]
    assert segment["features"][0]["within"] > 0.3
    detected = {s.labels["ml_segment"]: s.value for s in select(sp.scrape(), "ml_segment_drift_detected",
                                                                ml_model_name="within")}
    assert detected == {f"region={r}": (1.0 if r == "r3" else 0.0) for r in REGIONS}
    volume = select(sp.scrape(), "ml_segment_predictions", ml_model_name="within")
    assert len(volume) == 8 and sum(s.value for s in volume) == ROWS
    # Per feature and segment only where export.detail_for asks for it (x of this model), as the API gives it.
    detail = {(s.labels["ml_feature_name"], s.labels["ml_segment"]): s.value
              for s in select(sp.scrape(), "ml_segment_feature_p_value", ml_model_name="within")}
    assert detail == pytest.approx({("x", s["segment"]): s["p_values"]["x"] for s in within["segments"]}), detail

    by_attribute = wait_for(lambda: evaluated("attributes"), timeout=90, what="segments from ml.segment.region")
    assert [s["segment"] for s in by_attribute["segments"] if s["detected"]] == ["region=r3"]
    assert sorted(f["name"] for f in by_attribute["features"]) == ["c", "x"], by_attribute["features"]

    mix = wait_for(lambda: evaluated("mix"), timeout=90, what="the mix model's segments over every row")
    assert not [s["segment"] for s in mix["segments"] if s["detected"]], mix["segments"]
    parts = [c for c in mix["segment_contributions"] if c["feature"] == "x"]
    assert abs(sum(c["mix"] for c in parts)) > 5 * abs(sum(c["within"] for c in parts)), parts
    assert parts[0]["segment"] == "region=r7"  # its share moved most, its mean furthest from the model's
    shares = {s.labels["ml_segment"]: s.value for s in select(sp.scrape(), "ml_segment_share",
                                                              ml_model_name="mix", ml_sample="current")}
    assert abs(shares["region=r7"] - 0.5) < 0.03, shares

    # Segments are windows too: after a kill -9 they come back with the windows they live in (checkpoint and
    # journal replay).
    sp.proc.kill()
    sp.proc.wait()
    again = serve_factory("--config", str(config), "--window", "60", "--horizon", "600", "--evaluation-interval",
                          "0.5", state_dir=sp.state_dir)
    sp = again
    within = wait_for(lambda: evaluated("within"), timeout=90, what="the within model's segments after a kill -9")
    assert [s["segment"] for s in within["segments"] if s["detected"]] == ["region=r3"]


TIERS = ["basic", "bronze", "gold", "silver"]


def test_accuracy_falling_in_one_tier_fires_its_segment_and_ranks_it_first_across_a_kill(
        tmp_path: Path, serve_factory) -> None:
    """(b) A binary classifier segmented by tier, its labelled baseline built with ``--segment-by tier``. Live, the
    model is as good as in training everywhere except bronze, whose labels now disagree with the prediction 45% of
    the time. The processor is killed (-9) while the 4,000 predictions wait for labels; after the restart every
    label is joined in its prediction's segment: bronze's realized accuracy equals scikit-learn's on bronze's rows,
    ``ml_performance_degraded{ml_segment="tier=bronze"}`` fires and no other tier's does, and bronze ranks first in
    accuracy's attribution, as a change within the segment."""
    import subprocess
    import sys

    from sklearn import metrics as skm

    from otel_ml.instrument import ModelMonitor

    rng = np.random.default_rng(21)

    def rows(n: int, broken: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        tier = rng.choice(np.array(TIERS), n)
        x = rng.normal(0, 1, n)
        p = np.round(1 / (1 + np.exp(-2.5 * x)), 3)
        y = (rng.random(n) < p).astype(int)
        pred = (p >= 0.5).astype(int)
        if broken is not None:  # the tier's outcomes stop following the model: 45% of its labels flipped
            flip = (tier == broken) & (rng.random(n) < 0.45)
            y = np.where(flip, 1 - pred, y)
        return tier, x, p, pred, y

    tier, x, p, pred, y = rows(8000, None)
    ref_csv = tmp_path / "reference.csv"
    ref_csv.write_text("tier,x,p,pred,y\n" + "".join(f"{t},{a},{b},{c},{d}\n" for t, a, b, c, d in
                                                     zip(tier, x, p, pred, y)))
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "scores", "--input",
                          str(ref_csv), "--exclude", "y", "--prediction-column", "pred", "--probability-column", "p",
                          "--target-column", "y", "--segment-by", "tier", "--output", str(baselines / "scores.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr

    args = ("--window", "60", "--horizon", "600", "--baseline-dir", str(baselines), "--evaluation-interval", "0.5")
    sp = serve_factory(*args)
    provider = sdk_provider(sp)
    monitor = ModelMonitor("scores", tracer_provider=provider)
    tier, x, p, pred, y = rows(4000, "bronze")
    ids = [f"s-{i}" for i in range(len(tier))]
    for k in range(0, len(tier), 500):
        monitor.record_batch({"tier": tier[k:k + 500].tolist(), "x": x[k:k + 500].tolist()},
                             predictions=pred[k:k + 500].tolist(), prediction_ids=ids[k:k + 500],
                             probabilities=p[k:k + 500].tolist())
    provider.force_flush()
    wait_for(lambda: sum(s.value for s in select(sp.scrape(), "ml_predictions_total", ml_model_name="scores"))
             >= len(tier), timeout=60, what="all 4,000 predictions counted")
    time.sleep(1.5)  # a checkpoint has run: waiting predictions (and their segments) are in files and the journal
    sp.proc.kill()
    sp.proc.wait()
    sp = serve_factory(*args, state_dir=sp.state_dir)
    provider2 = sdk_provider(sp)
    ModelMonitor("scores", tracer_provider=provider2).record_ground_truth_batch(ids, [int(v) for v in y])
    provider2.force_flush()

    def performance() -> dict | None:  # from an evaluation that joined all 4,000 labels, each in its segment
        try:
            doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models/scores/versions/_"
                                                    "/performance", timeout=10).read())["performance"]
        except urllib.error.HTTPError:  # not evaluated yet
            return None
        segments = doc.get("segments") or []
        return doc if doc["labeled"] == len(tier) and sum(s["labeled"] for s in segments) == len(tier) else None

    doc = wait_for(performance, timeout=90, what="all 4,000 labels joined in their segments")
    assert doc["segment_reference"] == "segment"
    by_segment = {s["segment"]: s for s in doc["segments"]}
    assert set(by_segment) == {f"tier={t}" for t in TIERS}
    for t in TIERS:
        rows_of = tier == t
        accuracy = next(m for m in by_segment[f"tier={t}"]["metrics"] if m["metric"] == "accuracy")
        assert accuracy["realized"]["value"] == pytest.approx(skm.accuracy_score(y[rows_of], pred[rows_of]),
                                                              abs=1e-9)
        assert accuracy["realized"]["n"] == rows_of.sum()
    assert doc["segments"][0]["segment"] == "tier=bronze" and "accuracy" in doc["segments"][0]["degraded"]
    assert not [s["segment"] for s in doc["segments"][1:] if s["degraded"]], doc["segments"]
    parts = [c for c in doc["segment_contributions"] if c["metric"] == "accuracy"]
    assert parts[0]["segment"] == "tier=bronze" and parts[0]["within"] < -0.05 and abs(parts[0]["mix"]) < 0.01
    # The parts add up to the model's change of accuracy (shift-share is exact for a mean over rows).
    overall = next(m for m in doc["metrics"] if m["metric"] == "accuracy")
    assert sum(c["total"] for c in parts) == pytest.approx(
        overall["realized"]["value"] - overall["reference"]["value"], abs=1e-9)

    def fired() -> dict[str, float]:
        return {s.labels["ml_segment"]: s.value for s in select(
            sp.scrape(), "ml_performance_degraded", ml_model_name="scores", ml_performance_metric="accuracy")
            if "ml_segment" in s.labels}

    assert wait_for(lambda: fired() if len(fired()) == 4 else None, timeout=30, what="per-segment decisions") == {
        f"tier={t}": (1.0 if t == "bronze" else 0.0) for t in TIERS}
    ranked = [s for s in select(sp.scrape(), "ml_segment_performance_contribution", ml_model_name="scores",
                                ml_performance_metric="accuracy", ml_attribution="within")]
    assert min(ranked, key=lambda s: s.value).labels["ml_segment"] == "tier=bronze"
    page = urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/models/scores/versions/_", timeout=10).read().decode()
    table = page[page.index("Performance per segment"):]
    assert table.index("tier=bronze") < min(table.index(f"tier={t}") for t in TIERS if t != "bronze")
    bronze = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models/scores/versions/_/"
                                               "segments/tier%3Dbronze", timeout=10).read())
    assert "accuracy" in bronze["performance"]["degraded"]
    assert bronze["performance"]["labeled"] == (tier == "bronze").sum()


def test_kill_9_under_traffic_keeps_every_acknowledged_prediction_in_its_segment(serve_factory) -> None:
    """A processor joining labels for a model segmented by ``ml.segment.tier`` is killed (-9) while requests of 100
    predictions (ids, probabilities) arrive, and started again at once on the same ports. Every acknowledged
    prediction is counted (a request whose answer the kill cut off may count too, never more than that one), and
    the labels of the acknowledged ones all join, each in its prediction's segment."""
    import threading

    import grpc

    from tests.support import LOGS, TRACES, export, labels_request, predictions_request

    sp = serve_factory("--evaluation-interval", "0.5")
    rng = np.random.default_rng(9)
    acked: list[tuple[str, str, int]] = []  # (id, tier, label) of every acknowledged prediction
    stop = threading.Event()
    t_ns = time.time_ns() - 60 * NS

    def send() -> None:
        k = 0
        while not stop.is_set():
            tiers = rng.choice(np.array(TIERS), 100)
            p = rng.uniform(size=100)
            rows = [{"ml.prediction.id": f"k-{k}-{i}", "ml.segment.tier": str(tiers[i]), "ml.feature.x": float(p[i]),
                     "ml.prediction": int(p[i] >= 0.5), "ml.prediction.probability": float(p[i])}
                    for i in range(100)]
            try:
                export(sp, TRACES, predictions_request("killed", rows, t_ns + k * 1_000_000))
            except grpc.RpcError:  # the processor is down: this request is not acknowledged
                time.sleep(0.05)
            else:
                acked.extend((r["ml.prediction.id"], r["ml.segment.tier"], int(rng.random() < p[i]))
                             for i, r in enumerate(rows))
            k += 1

    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_for(lambda: len(acked) >= 3000, timeout=60, what="3,000 predictions acknowledged")
        sp.proc.kill()
        sp.proc.wait()
        sp = serve_factory("--evaluation-interval", "0.5", state_dir=sp.state_dir, grpc_port=sp.grpc_port,
                           prom_port=sp.prom_port)
        wait_for(lambda: len(acked) >= 6000, timeout=60, what="3,000 more acknowledged after the restart")
    finally:
        stop.set()
        sender.join()
    counted = wait_for(lambda: (lambda n: n if n >= len(acked) else None)(
        sum(s.value for s in select(sp.scrape(), "ml_predictions_total", ml_model_name="killed"))),
        timeout=30, what="every acknowledged prediction counted")
    assert len(acked) <= counted <= len(acked) + 100, (counted, len(acked))
    for lo in range(0, len(acked), 500):
        answer = export(sp, LOGS, labels_request("killed", [(i, y) for i, _, y in acked[lo:lo + 500]], time.time_ns()))
        assert answer.partial_success.rejected_log_records == 0, answer.partial_success.error_message

    def joined() -> dict | None:  # from an evaluation that joined every acknowledged label
        try:
            doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models/killed/versions/_"
                                                    "/performance", timeout=10).read())["performance"]
        except urllib.error.HTTPError:
            return None
        return doc if doc and sum(s["labeled"] for s in doc.get("segments", [])) == len(acked) else None

    doc = wait_for(joined, timeout=90, what=f"all {len(acked)} acknowledged labels joined in their segments")
    want = {f"tier={t}": sum(1 for _, tier, _ in acked if tier == t) for t in TIERS}
    assert {s["segment"]: s["labeled"] for s in doc["segments"]} == want
    assert doc["labeled"] == len(acked)
