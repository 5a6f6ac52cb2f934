"""Ground truth in process: the join (early, duplicate, unknown, expired, evicted labels; restarts; one clock per
model), realized metrics against scikit-learn and numpy on the same rows, label-free estimates."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from otel_ml.analyze.performance import PerformanceConfig, assess, estimate
from otel_ml.decode.batch import ColumnarBatch, DecodeResult, LabelBatch
from otel_ml.decode.ids import id_hash
from otel_ml.labels.ground_truth import GroundTruth
from otel_ml.labels.pending import LabelsConfig
from otel_ml.profile.performance import PerformanceProfile, isotonic_calibration, reference_performance

HOUR = 3600 * 10**9

T0 = 1_800_000_000 * 10**9


def predictions(model: str, ids: list[str], t: int, pred: np.ndarray, prob: np.ndarray | None = None) -> ColumnarBatch:
    n = len(ids)
    numeric = {"prediction": pred.astype(float)}
    if prob is not None:
        numeric["prediction.probability"] = prob
    return ColumnarBatch(model, "1", n, np.full(n, t, np.int64), np.ones(n), numeric=numeric,
                         span_end_ns=np.full(n, t, np.int64), span_duration_s=np.full(n, np.nan),
                         span_error=np.zeros(n, bool), prediction_id=id_hash(model, np.array(ids)))


def labels(model: str, ids: list[str], values: np.ndarray, t: int) -> LabelBatch:
    return LabelBatch(model, "", id_hash(model, np.array(ids)), values.astype(float), np.full(len(ids), ""),
                      np.full(len(ids), t, np.int64))


def tracker(tmp_path: Path, **labels_cfg: float) -> GroundTruth:
    return GroundTruth(str(tmp_path / "pending"), LabelsConfig(**labels_cfg), PerformanceConfig())


def test_join_counts_every_label_once_and_says_why_the_others_were_not(tmp_path: Path) -> None:
    gt = tracker(tmp_path, early_ttl_seconds=600)
    ids = [f"r{i}" for i in range(10)]
    y = np.array([1, 0] * 5)
    gt.on_labels(labels("m", ids[:3], y[:3], T0))  # early: before their predictions
    gt.on_predictions(predictions("m", ids, T0, y, prob=0.9 * y + 0.05))
    gt.on_labels(labels("m", ids[3:], y[3:], T0 + HOUR))
    gt.on_labels(labels("m", ids[3:5], y[3:5], T0 + HOUR))  # at-least-once delivery: again
    gt.on_labels(labels("m", ["nope"], np.array([1]), T0 + HOUR))
    gt.pending.observe("m", T0 + 2 * HOUR)  # the unknown label's early wait (10 min) is over
    gt.advance()
    applied, unmatched = gt.take_counts()
    assert applied == {("m", "1"): 10}
    assert unmatched == {("m", "", "duplicate"): 2, ("m", "", "unknown"): 1}
    cur = gt.current("m", "1")
    assert cur is not None and cur.labeled == 10 and cur.metrics("1")["accuracy"][0] == 1.0
    assert cur.delay_quantile(0.99) == pytest.approx(3600, abs=1)


def test_ttl_expiry_eviction_and_a_restart_between_prediction_and_label(tmp_path: Path) -> None:
    gt = tracker(tmp_path, ttl_seconds=2 * 3600, max_pending=1000)
    gt.on_predictions(predictions("m", [f"old{i}" for i in range(100)], T0, np.ones(100)))
    gt.pending.seal()
    gt.on_predictions(predictions("m", [f"new{i}" for i in range(50)], T0 + 3 * HOUR, np.ones(50)))
    state = gt.state()  # a checkpoint: seals, names the files
    gt.pending.committed(state["pending"])
    assert gt.pending.disk_bytes() <= 64 * 50 + 16 * 100  # rows waiting: 36 B; expired ids kept: 8 B
    restarted = tracker(tmp_path, ttl_seconds=2 * 3600, max_pending=1000)
    restarted.restore(state)
    restarted.on_labels(labels("m", ["old1", "old2", "new1"], np.ones(3), T0 + 3 * HOUR))
    applied, unmatched = restarted.take_counts()
    assert applied == {("m", "1"): 1} and unmatched == {("m", "", "expired"): 2}
    # Over max_pending: the oldest segments leave, their labels are "evicted".
    small = tracker(tmp_path / "small", max_pending=150)
    for k in range(4):
        small.on_predictions(predictions("m", [f"b{k}-{i}" for i in range(60)], T0 + k, np.ones(60)))
        small.pending.seal()
    assert small.pending.pending_rows() == 120  # two of the four batches evicted
    small.on_labels(labels("m", ["b0-1", "b3-1"], np.ones(2), T0 + 5))
    applied, unmatched = small.take_counts()
    assert applied == {("m", "1"): 1} and unmatched == {("m", "", "evicted"): 1}


def test_early_labels_wait_across_a_restart_then_expire_as_unknown(tmp_path: Path) -> None:
    gt = tracker(tmp_path, early_ttl_seconds=600)
    many = [f"e{i}" for i in range(40_000)]  # more than the early store's unsorted tail: a sorted base too
    gt.on_labels(labels("m", many, np.ones(len(many)), T0))
    state = gt.state()
    gt.pending.committed(state["pending"])
    restarted = tracker(tmp_path, early_ttl_seconds=600)
    restarted.restore(state)
    restarted.on_predictions(predictions("m", many[:100], T0 + 1, np.ones(100), prob=np.full(100, 0.9)))
    restarted.pending.observe("m", T0 + HOUR)
    restarted.advance()
    applied, unmatched = restarted.take_counts()
    assert applied == {("m", "1"): 100} and unmatched == {("m", "", "unknown"): len(many) - 100}


def test_journal_record_keeps_ids_and_labels() -> None:
    b = predictions("m", ["a", "b"], T0, np.array([1, 0]))
    lb = labels("m", ["a"], np.array([1]), T0)
    back = DecodeResult.from_bytes(DecodeResult([b], labels=[lb]).to_bytes())
    assert back.batches[0].prediction_id.tolist() == b.prediction_id.tolist()
    assert back.labels[0].prediction_id.tolist() == lb.prediction_id.tolist()


def test_realized_metrics_equal_sklearn_and_numpy() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    p = rng.beta(2, 2, n)
    y = (rng.uniform(size=n) < p).astype(int)
    pred = (p >= 0.5).astype(int)
    prof = PerformanceProfile()
    half = n // 2  # two windows merged, as a horizon is
    for part in (slice(0, half), slice(half, n)):
        w = PerformanceProfile()
        w.add_classified(y[part].astype(str), pred[part].astype(str), p[part], "1")
        prof.merge(PerformanceProfile.from_dict(w.to_dict()))
    m = prof.metrics("1")
    assert m["accuracy"][0] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert m["precision"][0] == pytest.approx(skm.precision_score(y, pred), abs=1e-12)
    assert m["recall"][0] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
    assert m["f1"][0] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert m["log_loss"][0] == pytest.approx(skm.log_loss(y, p), rel=1e-9)
    assert m["brier"][0] == pytest.approx(skm.brier_score_loss(y, p), rel=1e-9)
    auc, _se, bound = prof.roc_auc()
    assert abs(auc - skm.roc_auc_score(y, p)) <= bound and bound < 0.001
    # The delta-method standard error matches the spread of F1 over resampled labels.
    f1s = [skm.f1_score((rng.uniform(size=n) < p).astype(int), pred) for _ in range(200)]
    assert m["f1"][1] == pytest.approx(np.std(f1s), rel=0.25)

    classes = rng.integers(0, 4, n)
    guess = np.where(rng.uniform(size=n) < 0.6, classes, rng.integers(0, 4, n))
    multi = PerformanceProfile()
    multi.add_classified(classes.astype(str), guess.astype(str))
    mm = multi.metrics(None)
    assert mm["f1"][0] == pytest.approx(skm.f1_score(classes, guess, average="macro"), abs=1e-12)
    assert mm["precision"][0] == pytest.approx(skm.precision_score(classes, guess, average="macro"), abs=1e-12)
    per = multi.per_class()
    assert per["2"]["recall"] == pytest.approx(skm.recall_score(classes, guess, labels=[2], average=None)[0])

    truth = rng.normal(10, 3, n)
    truth[:5] = 0.0  # MAPE leaves zero targets out
    guess_r = truth + rng.normal(0.5, 1, n)
    reg = PerformanceProfile()
    reg.add_regressed(truth, guess_r)
    r = reg.metrics()
    e = guess_r - truth
    assert r["mae"][0] == pytest.approx(np.mean(np.abs(e)))
    assert r["rmse"][0] == pytest.approx(np.sqrt(np.mean(e**2)))
    assert r["bias"][0] == pytest.approx(np.mean(e))
    assert r["r2"][0] == pytest.approx(skm.r2_score(truth, guess_r))
    nz = truth != 0
    assert r["mape"][0] == pytest.approx(np.mean(np.abs(e[nz] / truth[nz])))
    assert reg.residual_quantile(0.5) == pytest.approx(np.quantile(e, 0.5), abs=3 * np.std(e) * 0.0133)


def test_degradation_is_decided_on_enough_labels_only_and_estimates_follow_calibration() -> None:
    rng = np.random.default_rng(3)
    ref_p = rng.beta(2, 2, 50_000)
    ref_y = (rng.uniform(size=len(ref_p)) < ref_p).astype(float)
    reference = reference_performance(ref_y, np.full(len(ref_y), ""), (ref_p >= 0.5).astype(float), None, ref_p)
    assert reference.positive_class == "1" and reference.calibration is not None
    assert set(reference.chunk_std) >= {"accuracy", "f1", "roc_auc"}

    def current(n: int, noise: float) -> PerformanceProfile:
        p = rng.beta(2, 2, n)
        y = (rng.uniform(size=n) < np.clip(p + rng.normal(0, noise, n), 0, 1)).astype(int)
        prof = PerformanceProfile()
        prof.add_predictions(n, p)
        prof.add_classified(y.astype(str), (p >= 0.5).astype(int).astype(str), p, "1")
        return prof

    same = assess("m", "1", current(5000, 0.0), reference, alpha=1e-3)
    assert not any(same.degraded.values()) and not any(same.estimated_degraded.values())
    worse = assess("m", "1", current(5000, 0.6), reference, alpha=1e-3)
    assert worse.degraded["accuracy"] and worse.degraded["roc_auc"]
    few = assess("m", "1", current(50, 0.6), reference, alpha=1e-3)
    assert "accuracy" not in few.degraded  # under performance.min_labels: no decision
    # Label-free: the same scores with calibrated outcomes estimate the realized accuracy within its band.
    est = same.estimated["accuracy"]
    assert abs(est.value - same.realized["accuracy"].value) < 4 * est.se
    cal = isotonic_calibration(ref_p, ref_y)
    assert estimate(current(1000, 0.0).prob_all, cal)["roc_auc"][0] == pytest.approx(
        same.reference["roc_auc"].value, abs=0.05)


def test_not_durable_mode_joins_in_memory_and_starts_clean(tmp_path: Path) -> None:
    """state.durable false: no journal, no checkpoint; waiting predictions still join, and a restart starts with
    none (files of an earlier run are not taken for valid)."""
    from otel_ml.config import load_config
    from otel_ml.service import ProcessorService

    cfg = load_config(overrides={"state.dir": str(tmp_path), "state.durable": False,
                                 "receiver.otlp_grpc.endpoint": "127.0.0.1:0", "receiver.otlp_http.enabled": False,
                                 "export.prometheus.endpoint": "127.0.0.1:0", "ui.enabled": False,
                                 "receiver.otlp_grpc.worker_processes": 0})
    (tmp_path / "pending").mkdir()
    (tmp_path / "pending" / "00000007.seg").write_bytes(b"left over")
    service = ProcessorService(cfg)
    service.start()
    try:
        assert not (tmp_path / "pending" / "00000007.seg").exists()
        ids = [f"r{i}" for i in range(200)]
        y = np.arange(200) % 2
        t = time.time_ns() - HOUR
        service.pipeline.submit(DecodeResult([predictions("m", ids, t, y, prob=np.where(y == 1, 0.8, 0.3))]), 0)
        service.pipeline.submit(DecodeResult([], labels=[labels("m", ids, y, t + HOUR)]), 0)
        [report] = service.evaluator.evaluate().performance
        assert report.labeled == 200 and report.realized["accuracy"].value == 1.0
    finally:
        service.shutdown()


def test_one_model_s_clock_never_expires_another_model_s_predictions(tmp_path: Path) -> None:
    """Issue 29: a label stamped far ahead for one model (within the skew limit, or restored from an older
    checkpoint) used to move the one join clock and expire every other model's labels."""
    gt = tracker(tmp_path, ttl_seconds=3600, early_ttl_seconds=600)
    gt.on_labels(labels("never-seen", ["x"], np.array([1]), T0 + 100 * 24 * HOUR))
    ids = [f"r{i}" for i in range(1000)]
    y = np.arange(1000) % 2
    gt.on_predictions(predictions("m", ids, T0, y, prob=0.9 * y + 0.05))
    gt.on_labels(labels("m", ids, y, T0 + 12 * 10**9))
    gt.advance()
    applied, unmatched = gt.take_counts()
    assert applied == {("m", "1"): 1000} and not any(r == "expired" for _, _, r in unmatched)
    cur = gt.current("m", "1")
    assert cur is not None and cur.metrics()["accuracy"][0] == 1.0
    # A checkpoint written before per-model clocks, its one clock poisoned: restored bounded by the skew limit.
    state = gt.state()
    state["pending"]["clock_ns"] = 4_102_444_800 * 10**9  # year 2100
    del state["pending"]["clocks"]
    restarted = tracker(tmp_path, ttl_seconds=3600)
    restarted.restore(state)
    assert restarted.pending.clock_ns <= time.time_ns() + 3601 * 10**9


def test_a_performance_horizon_of_one_window_reads_one_window(tmp_path: Path) -> None:
    """Issue 32 case 5: a horizon of exactly one window read two (the filling one and the one before); now the
    horizon is the window of the clock and whole windows before it, like the drift horizon."""
    gt = GroundTruth(str(tmp_path / "pending"), LabelsConfig(),
                     PerformanceConfig(horizon_seconds=3600, window_seconds=3600))
    for hour, value in ((0, 1), (1, 0)):
        ids = [f"h{hour}-{i}" for i in range(5)]
        gt.on_predictions(predictions("m", ids, T0 + hour * HOUR + HOUR // 2, np.ones(5), prob=np.full(5, 0.9)))
        gt.on_labels(labels("m", ids, np.full(5, value), T0 + hour * HOUR + HOUR // 2))
    cur = gt.current("m", "1")  # the clock is half way through the second hour
    assert cur is not None and cur.labeled == 5 and cur.metrics("1")["accuracy"][0] == 0.0
    gt = GroundTruth(str(tmp_path / "pending2"), LabelsConfig(),
                     PerformanceConfig(horizon_seconds=2 * 3600, window_seconds=3600))
    for hour in range(3):
        ids = [f"h{hour}-{i}" for i in range(5)]
        gt.on_predictions(predictions("m", ids, T0 + hour * HOUR + HOUR // 2, np.ones(5), prob=np.full(5, 0.9)))
        gt.on_labels(labels("m", ids, np.ones(5), T0 + hour * HOUR + HOUR // 2))
    cur = gt.current("m", "1")
    assert cur is not None and cur.labeled == 10  # hours 1 and 2, not 0


def test_multiclass_probabilities_wait_with_their_predictions_across_seals_merges_and_restarts(tmp_path: Path) -> None:
    """Issue 32: a multiclass model's class probabilities wait in the pending store beside a binary model's rows
    (segments of different widths, merged), a class first seen later (older rows: NaN for it), a checkpoint and
    a restore; realized one-vs-rest AUC and log loss equal scikit-learn's on the labelled rows."""
    import json

    rng = np.random.default_rng(3)
    classes = ["a", "b", "c"]
    n = 900
    y = np.array(classes)[rng.integers(0, 3, n)]
    p = np.round(rng.dirichlet([2, 2, 2], n), 3)
    p[:, 2] = 1 - p[:, 0] - p[:, 1]
    ids = [f"m-{i}" for i in range(n)]
    now = time.time_ns()
    gt = GroundTruth(str(tmp_path / "pending"), LabelsConfig(max_pending=30_000), PerformanceConfig())
    for k in range(0, n, 150):
        sl = slice(k, k + 150)
        given = classes if k >= 300 else classes[:2]  # "c" is sent from row 300 on
        numeric = {f"prediction.probability.{c}": p[sl, j] for j, c in enumerate(classes) if c in given}
        gt.on_predictions(ColumnarBatch("mc", "", 150, np.full(150, now), np.ones(150), numeric=numeric,
                                        categorical={"prediction": np.array(classes)[p[sl].argmax(axis=1)]},
                                        prediction_id=id_hash("mc", np.array(ids[sl]))))
        gt.on_predictions(predictions("bin", [f"b-{k}-{i}" for i in range(50)], now, np.ones(50), np.full(50, .7)))
        gt.pending.seal()  # one segment per batch, merged with its neighbours as they fit
    state = json.loads(json.dumps(gt.state()))
    upserts = gt.take_changes().upserts
    again = GroundTruth(str(tmp_path / "pending"), LabelsConfig(max_pending=30_000), PerformanceConfig())
    assert again.restore(state, upserts) == []
    again.on_labels(LabelBatch("mc", "", id_hash("mc", np.array(ids)), np.full(n, np.nan), y, np.full(n, now)))
    got = again.current("mc", "").metrics()
    per_class = again.current("mc", "").per_class()
    for j, c in enumerate(classes):  # each class's AUC counts the rows that gave its probability
        rows = slice(300, n) if c == "c" else slice(0, n)
        assert per_class[c]["roc_auc"] == pytest.approx(skm.roc_auc_score(y[rows] == c, p[rows, j]), abs=1e-12)
    assert got["roc_auc"][0] == pytest.approx(np.mean([per_class[c]["roc_auc"] for c in classes]))
    given_sum = np.where(np.arange(n)[:, None] < 300, p * [1, 1, 0], p).sum(axis=1)
    truth_p = p[np.arange(n), [classes.index(t) for t in y]] * ((np.arange(n) >= 300) | (y != "c"))
    want = np.mean(-np.log(np.clip(truth_p / given_sum, np.finfo(float).eps, 1 - np.finfo(float).eps)))
    assert got["log_loss"][0] == pytest.approx(want, rel=1e-6)
    assert any(s.width == 3 for s in again.pending.segments if s.kind == "pred")


def test_a_label_for_a_prediction_written_before_its_models_last_class_was_seen(tmp_path: Path) -> None:
    """Rows sealed while a multiclass model sent two classes are narrower than its class list once a third
    appears; their labels still count (the third class missing for them) instead of failing the join."""
    now = time.time_ns()
    gt = tracker(tmp_path)

    def batch(ids: list[str], classes: list[str]) -> ColumnarBatch:
        n = len(ids)
        return ColumnarBatch("mc", "", n, np.full(n, now), np.ones(n),
                             numeric={f"prediction.probability.{c}": np.full(n, 1 / len(classes)) for c in classes},
                             categorical={"prediction": np.full(n, classes[0])},
                             prediction_id=id_hash("mc", np.array(ids)))

    gt.on_predictions(batch(["p1", "p2", "p3"], ["a", "b"]))
    gt.pending.seal()
    gt.on_predictions(batch(["p4"], ["a", "b", "c"]))
    gt.on_labels(LabelBatch("mc", "", id_hash("mc", np.array(["p1", "p2"])), np.full(2, np.nan),
                            np.array(["a", "b"]), np.full(2, now)))
    got = gt.current("mc", "")
    assert got.labeled == 2
    assert got.metrics()["roc_auc"][0] == pytest.approx(0.5)  # equal probabilities: no ranking
    assert got.metrics()["log_loss"][0] == pytest.approx(-np.log(0.5))


def _binary(rng: np.random.Generator, p: np.ndarray, calibrated: bool = True) -> PerformanceProfile:
    """Labelled predictions of probabilities ``p``: outcomes drawn from ``p`` (calibrated), else from a flat 0.5."""
    y = (rng.uniform(size=len(p)) < (p if calibrated else 0.5)).astype(int)
    prof = PerformanceProfile()
    prof.add_predictions(len(p), p, (p >= 0.5).astype(float))
    prof.add_classified(y.astype(str), (p >= 0.5).astype(int).astype(str), p, "1")
    return prof


def test_an_estimate_that_stopped_tracking_is_decided_and_one_outside_the_reference_is_withheld() -> None:
    """Issue 43 part 6: the label-free accuracy stayed 0.978 "ok" while realized was 0.944 and degraded. Where labels
    exist, the estimate on the labelled predictions is tested against the realized value within the estimate's own
    standard error; probabilities outside the reference's range make the estimate unreliable."""
    from otel_ml.analyze.drift import DriftConfig
    from otel_ml.analyze.performance import assess_all

    rng = np.random.default_rng(9)
    ref_p = rng.uniform(0.05, 0.95, 20_000)
    ref_y = (rng.uniform(size=len(ref_p)) < ref_p).astype(int)
    reference = reference_performance(ref_y, np.full(len(ref_y), ""), (ref_p >= 0.5).astype(float), None, ref_p)
    cfg = PerformanceConfig()
    p = rng.uniform(0.05, 0.95, 4_000)
    tracking = assess_all("m", "", _binary(rng, p), reference, DriftConfig(), cfg)
    broken = assess_all("m", "", _binary(rng, p, calibrated=False), reference, DriftConfig(), cfg)
    assert not any(tracking.estimate_off.values()), tracking.estimate_gap
    assert broken.estimate_off["accuracy"], broken.estimate_gap
    # The gap is the estimate on the labelled rows minus the realized value, whose spread the estimate's se is.
    gap = broken.estimate_gap["accuracy"]
    assert gap.value == pytest.approx(broken.estimated["accuracy"].value - broken.realized["accuracy"].value,
                                      abs=3 * gap.se)
    assert tracking.unsupported_share == 0.0 and not tracking.estimate_withheld
    outside = assess_all("m", "", _binary(rng, np.concatenate([p, np.full(1_000, 0.99)])), reference, DriftConfig(),
                         cfg)
    assert outside.unsupported_share == pytest.approx(1_000 / 5_000)
    assert outside.estimate_withheld == "outside_reference_support" and outside.estimated_degraded == {}


def test_waiting_rows_are_sized_per_model_and_the_bytes_gauge_equals_the_disk(tmp_path: Path) -> None:
    """Issue 49 H and F: one multiclass prediction made every waiting prediction of every model 8x larger (36 bytes
    a row without class probabilities, 292 with 64 classes), and otel_ml_labels_waiting_bytes said 37.9 MB where the
    files held 58.4 MB. Rows of each width now go to segments of their own, and the gauge is the files' size."""
    import os

    from otel_ml.labels.segments import PRED

    gt = tracker(tmp_path)
    n = 5_000
    gt.on_predictions(predictions("plain", [f"p{i}" for i in range(n)], T0, np.ones(n), np.full(n, 0.7)))
    classes = [f"c{k}" for k in range(64)]
    numeric = {f"prediction.probability.{c}": np.full(10, 1 / 64) for c in classes}
    gt.on_predictions(ColumnarBatch("many", "1", 10, np.full(10, T0, np.int64), np.ones(10), numeric=numeric,
                                    categorical={"prediction": np.array(["c0"] * 10)},
                                    prediction_id=id_hash("many", np.array([f"m{i}" for i in range(10)]))))
    gt.on_labels(labels("plain", [f"p{i}" for i in range(100)], np.ones(100), T0 + HOUR))
    state = gt.state()  # seals: what a checkpoint writes
    gt.pending.committed(state["pending"])
    plain = [s for s in gt.pending.segments if s.kind == "pred" and s.width == 0]
    wide = [s for s in gt.pending.segments if s.kind == "pred" and s.width]
    assert sum(s.n for s in plain) == n and sum(s.n for s in wide) == 10
    assert PRED.itemsize == 36  # the plain model's rows: 36 bytes each, whatever another model sends
    on_disk = sum(e.stat().st_size for e in os.scandir(tmp_path / "pending") if e.is_file())
    waiting = gt.waiting()
    assert waiting["predictions"][1] + waiting["labels"][1] == on_disk
    assert waiting["predictions"][0] == n + 10
    # A merge of neighbouring segments keeps widths apart too.
    gt.pending.files.merge_adjacent(lambda kind: 10**9)
    assert sum(s.n for s in gt.pending.segments if s.kind == "pred" and s.width == 0) == n


def test_a_regressors_estimate_outside_the_reference_support_is_withheld() -> None:
    """Issue 43 part 6 for DLE: its trees do not extrapolate; the largest out-of-range or unseen share of the loss
    models' inputs (the drift report's data quality) is the estimate's unsupported share."""
    import math

    from otel_ml.analyze.drift import FeatureReport, MethodResult, ModelReport
    from otel_ml.analyze.performance import (
        MetricResult,
        PerformanceReport,
        loss_inputs_unsupported,
        withhold_outside_support,
    )
    from otel_ml.profile.loss_model import LossModel
    from otel_ml.profile.performance import PerformanceReference

    def feature(name: str, out: float, unseen: float = math.nan) -> FeatureReport:
        return FeatureReport(name, "numeric", 100, 100, [], MethodResult("overall", 0.5, 0.01, False, p_value=True),
                             out_of_range_ratio=out, unseen_ratio=unseen)

    tree = LossModel.__new__(LossModel)
    tree.columns, tree.categories, tree.indicators = ["x"], {"city": ["a"]}, [("plan", "pro")]
    reference = PerformanceReference(PerformanceProfile(), loss_models={"abs": tree})
    drift = ModelReport("m", "", "baseline", 100, 100, [feature("x", 0.04), feature("city", math.nan, 0.3),
                                                        feature("other", 0.9)])
    assert loss_inputs_unsupported(drift, reference) == 0.3  # "other" is no input of the trees
    report = PerformanceReport("m", "", "regression", estimated={"mae": MetricResult(1.0, 0.1, 100)},
                               estimated_degraded={"mae": True})
    withhold_outside_support(report, 0.3, 0.1)
    assert report.estimate_withheld == "outside_reference_support" and report.estimated_degraded == {}


def test_a_label_batch_keeps_the_ids_as_sent_of_its_first_rows_through_a_selection() -> None:
    """Only the first ID_TEXT_SAMPLE labels of a batch keep their id as sent (every one cost ~15% of label ingest,
    in the journal); a selection keeps the texts of the rows it keeps, first, aligned with them."""
    from otel_ml.decode.batch import ID_TEXT_SAMPLE

    n = ID_TEXT_SAMPLE + 8
    ids = np.array([f"r{i}" for i in range(n)])
    batch = LabelBatch("m", "", id_hash("m", ids), np.ones(n), np.full(n, ""), np.full(n, T0, np.int64),
                       ids[:ID_TEXT_SAMPLE])
    mask = np.arange(n) % 3 == 0
    part = batch.select(mask)
    assert part.id_text is not None and part.id_text.tolist() == ids[:ID_TEXT_SAMPLE][mask[:ID_TEXT_SAMPLE]].tolist()
    assert (part.prediction_id[:len(part.id_text)] == id_hash("m", part.id_text)).all()
    again = DecodeResult.from_bytes(DecodeResult([], labels=[part]).to_bytes()).labels[0]
    assert again.id_text.tolist() == part.id_text.tolist() and again.n_rows == part.n_rows


def test_an_objective_in_config_is_on_the_report_in_the_api_and_exported_and_a_wrong_one_is_refused(
        tmp_path: Path) -> None:
    """Issue 46 part 3: performance.objectives gives the burn-rate alerts their budget (1 - objective)."""
    from otel_ml.analyze.drift import DriftConfig
    from otel_ml.analyze.performance import assess_all
    from otel_ml.config import ConfigError, load_config
    from otel_ml.export.metrics import performance_series
    from otel_ml.read.views import performance_document

    path = tmp_path / "c.yaml"
    path.write_text("performance:\n  objectives:\n    m: {accuracy: 0.9, f1: 0.8}\n")
    cfg = load_config(str(path)).performance
    rng = np.random.default_rng(2)
    report = assess_all("m", "", _binary(rng, rng.uniform(0.05, 0.95, 2_000)), None, DriftConfig(), cfg)
    assert report.objectives == {"accuracy": 0.9, "f1": 0.8}
    assert {s[0]["ml.performance.metric"]: s[1] for s in performance_series(report, "ml.performance.objective")} == {
        "accuracy": 0.9, "f1": 0.8}
    doc = performance_document(report)
    assert {m["metric"]: m["objective"] for m in doc["metrics"]}["accuracy"] == 0.9
    other = assess_all("other", "", _binary(rng, rng.uniform(0.05, 0.95, 200)), None, DriftConfig(), cfg)
    assert list(performance_series(other, "ml.performance.objective")) == []
    for bad, why in (("{rmse: 0.5}", "a metric among"), ("{accuracy: 1.0}", "in \\(0, 1\\)")):
        path.write_text(f"performance:\n  objectives:\n    m: {bad}\n")
        with pytest.raises(ConfigError, match=why):
            load_config(str(path))
