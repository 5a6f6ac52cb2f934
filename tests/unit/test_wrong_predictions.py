"""Wrong predictions point at their spans (issue 46): the sampled spans of waiting predictions (labels/spans.py),
the wrong ones a window keeps when labels join (profile/wrong_predictions.py), through seals, checkpoints, shared
mode's routing and both exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from otel_ml import semconv as sc
from otel_ml.analyze.performance import PerformanceConfig, assess
from otel_ml.core.counters import Counters
from otel_ml.core.live import join_rows
from otel_ml.core.snapshot import Snapshot
from otel_ml.decode.batch import SPAN_IDS_BYTES, ColumnarBatch, DecodeResult, LabelBatch
from otel_ml.decode.ids import id_hash
from otel_ml.export.config import ExportConfig
from otel_ml.export.metrics import MetricsExporter
from otel_ml.labels.ground_truth import GroundTruth
from otel_ml.labels.pending import LabelsConfig
from otel_ml.labels.spans import ROWS_PER_REQUEST
from otel_ml.profile.performance import performance_blob, performance_profile
from otel_ml.profile.wrong_predictions import SLOTS, WrongPredictions
from tests.unit.test_exemplars import gauge_with_exemplars

T0 = 1_800_000_000 * 10**9
HOUR = 3600 * 10**9


def span_ids(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, (n, SPAN_IDS_BYTES), dtype=np.uint8)


def predictions(names: list[str], t: int, pred: np.ndarray, seed: int, with_spans: bool = True,
                classes: bool = True) -> ColumnarBatch:
    n = len(names)
    cols = ({"categorical": {"prediction": pred.astype(str)}} if classes else
            {"numeric": {"prediction": pred.astype(float)}})
    return ColumnarBatch("m", "1", n, np.full(n, t, np.int64) + np.arange(n), np.ones(n), **cols,
                         span_end_ns=np.full(n, t, np.int64) + np.arange(n), span_duration_s=np.full(n, np.nan),
                         span_error=np.zeros(n, bool), prediction_id=id_hash("m", np.array(names)),
                         span_ids=span_ids(n, seed) if with_spans else np.empty((0, SPAN_IDS_BYTES), np.uint8))


def labels(names: list[str], truth: np.ndarray, t: int, classes: bool = True) -> LabelBatch:
    n = len(names)
    return LabelBatch("m", "", id_hash("m", np.array(names)),
                      np.full(n, np.nan) if classes else truth.astype(float),
                      truth.astype(str) if classes else np.full(n, ""), np.full(n, t, np.int64))


def tracker(tmp_path: Path, **cfg: float) -> GroundTruth:
    return GroundTruth(str(tmp_path / "pending"), LabelsConfig(**cfg), PerformanceConfig())


def kept_spans(b: ColumnarBatch) -> dict[int, str]:
    """The predictions of ``b`` whose spans the store keeps (the lowest id hashes), id → span id in hex."""
    order = np.argsort(b.prediction_id)[:ROWS_PER_REQUEST]
    return {int(b.prediction_id[i]): b.span_ids[i, 16:].tobytes().hex() for i in order}


def test_a_window_keeps_the_latest_wrong_predictions_whose_spans_were_kept_through_a_restart(tmp_path: Path) -> None:
    gt = tracker(tmp_path)
    rng = np.random.default_rng(1)
    batches, truths = [], {}
    for k in range(6):  # six requests (each keeping the spans of ROWS_PER_REQUEST of its predictions)
        names = [f"r{k}-{i}" for i in range(50)]
        pred = rng.integers(0, 2, 50)
        b = predictions(names, T0 + k * 1000, pred, seed=k)
        batches.append(b)
        truths.update(zip(names, np.where(rng.random(50) < 0.4, 1 - pred, pred).tolist()))
    for b in batches[:3]:
        gt.on_predictions(b)
        if b is batches[1]:
            gt.state()  # sealed: the spans of some requests in one segment, of the third in another
    state = gt.state()
    again = tracker(tmp_path)
    again.restore(state)
    for b in batches[3:]:  # after the checkpoint (as the journal's replay brings it back): in memory
        again.on_predictions(b)
    names = list(truths)
    again.on_labels(labels(names, np.array([truths[n] for n in names]), T0 + HOUR))

    kept = {}
    for b in batches:
        kept.update(kept_spans(b))
    predicted = {}
    for b in batches:
        predicted.update(zip(b.prediction_id.tolist(), zip(b.categorical["prediction"].tolist(),
                                                           b.row_time_ns.tolist())))
    truth_of = dict(zip(id_hash("m", np.array(names)).tolist(), (str(truths[n]) for n in names)))
    wrong = sorted(((predicted[i][1], i) for i in kept if predicted[i][0] != truth_of[i]), reverse=True)
    assert len(wrong) > SLOTS  # the test can tell the latest from the others
    cur = again.current("m", "1")
    assert cur is not None
    rows = cur.wrong.rows()
    assert [(r.time_ns, r.span_id) for r in rows] == [(t, kept[i]) for t, i in wrong[:SLOTS]]
    assert all(r.predicted != r.truth for r in rows)
    by_time = {t: i for t, i in wrong}
    assert all(r.predicted == predicted[by_time[r.time_ns]][0] and r.truth == truth_of[by_time[r.time_ns]]
               for r in rows)
    # The window as checkpointed and archived (the same blob) keeps them; the report leads with the latest.
    assert performance_profile(performance_blob(cur)).wrong.to_dict() == cur.wrong.to_dict()
    assert assess("m", "1", cur, None, 0.01).wrong_predictions == rows


def test_a_regressor_keeps_its_largest_errors_and_a_request_without_span_ids_keeps_none(tmp_path: Path) -> None:
    gt = tracker(tmp_path)
    names = [f"q{i}" for i in range(40)]
    pred = np.arange(40, dtype=float)
    b = predictions(names, T0, pred, seed=3, classes=False)
    gt.on_predictions(b)
    gt.on_predictions(predictions([f"n{i}" for i in range(40)], T0, pred, seed=4, classes=False, with_spans=False))
    truth = pred + np.random.default_rng(2).normal(0, 5, 40)
    gt.on_labels(labels(names, truth, T0 + HOUR, classes=False))
    gt.on_labels(labels([f"n{i}" for i in range(40)], pred + 100, T0 + HOUR, classes=False))
    kept = kept_spans(b)
    err = {int(i): p - y for i, p, y in zip(b.prediction_id, pred, truth)}
    expected = sorted(kept, key=lambda i: abs(err[i]), reverse=True)
    rows = gt.current("m", "1").wrong.rows()  # type: ignore[union-attr]
    assert [r.span_id for r in rows] == [kept[i] for i in expected[:SLOTS]]
    assert [r.error for r in rows] == [err[i] for i in expected[:SLOTS]]


def test_spans_expire_with_their_predictions_and_stay_within_their_bound(tmp_path: Path) -> None:
    gt = tracker(tmp_path, ttl_seconds=3600, max_pending=1000)
    spans = gt.pending.spans
    assert spans.max_rows == 4096
    spans.max_rows = 10 * ROWS_PER_REQUEST
    sent = []
    for k in range(30):
        sent.append(predictions([f"a{k}-{i}" for i in range(30)], T0 + k, np.zeros(30), seed=k))
        gt.on_predictions(sent[-1])
        gt.pending.seal()
    # Within the bound, less at most one merged segment (64 rows); the newest kept, the oldest evicted.
    assert spans.max_rows - 64 <= spans.rows() <= spans.max_rows
    assert spans.of(np.array(list(kept_spans(sent[-1])), np.uint64))[0].all()
    assert not spans.of(np.array(list(kept_spans(sent[0])), np.uint64))[0].any()
    pred_segments = [s for s in gt.pending.segments if s.kind == "pred"]
    # Two seals' predictions a segment (at most 64 rows, max_pending / 100): merged across the spans between them.
    assert [s.n for s in pred_segments] == [60] * 15
    gt.pending.observe("m", T0 + 2 * 3600 * 10**9)
    gt.pending.seal()
    assert spans.rows() == 0 and not spans.segments


def test_shared_mode_routes_a_rows_span_with_it() -> None:
    b = predictions([f"s{i}" for i in range(6)], T0, np.zeros(6), seed=9)
    rows = np.array([False, True, False, True, True, False])
    routed = join_rows(b, rows)
    again = DecodeResult.from_bytes(DecodeResult(batches=[routed], routed=True).to_bytes()).batches[0]
    assert np.array_equal(again.row_span_ids(), b.span_ids[rows])
    assert np.array_equal(again.prediction_id, b.prediction_id[rows])


def test_both_exports_carry_the_latest_wrong_prediction() -> None:
    wrong = WrongPredictions()
    wrong.add(np.array([T0]), np.arange(24, dtype=np.uint8).reshape(1, 24), np.array(["spam"]), np.array(["ham"]),
              np.array([np.nan]))
    report = assess("m", "1", None, None, 0.01)
    report.wrong_predictions = wrong.rows()
    counters = Counters()
    model = {sc.ATTR_MODEL_NAME: "m", sc.ATTR_MODEL_VERSION: "1"}
    counters.count(sc.METRIC_GROUND_TRUTH, 5, model)
    exporter = MetricsExporter(ExportConfig(), counters)
    exporter.publish(Snapshot(performance=(report,)))
    families = {f.name: f for f in text_string_to_metric_families(exporter.openmetrics_text().decode())}
    [sample] = [s for s in families["ml_ground_truth"].samples if s.name.endswith("_total")]
    assert sample.value == 5 and sample.exemplar.labels == {"trace_id": bytes(range(16)).hex(),
                                                            "span_id": bytes(range(16, 24)).hex()}
    assert float(sample.exemplar.timestamp) == T0 / 1e9

    from opentelemetry.sdk.metrics.export import NumberDataPoint

    points = [NumberDataPoint({**model, sc.ATTR_PERFORMANCE_METRIC: "accuracy"}, 0, 1, 0.9),
              NumberDataPoint({**model, sc.ATTR_PERFORMANCE_METRIC: "accuracy", sc.ATTR_SEGMENT: "a=1"}, 0, 1, 0.8)]
    out = gauge_with_exemplars(sc.METRIC_PERFORMANCE, points, exporter._rendered().exemplars)
    model_point, segment_point = out.data.data_points
    assert not segment_point.exemplars
    [x] = model_point.exemplars
    assert (x.trace_id, x.span_id, x.time_unix_nano) == (int(bytes(range(16)).hex(), 16),
                                                         int(bytes(range(16, 24)).hex(), 16), T0)
