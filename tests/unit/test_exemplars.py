"""Example spans (issue 46): kept per window and feature, through the journal's format, merged, serialized, chosen
where the distribution moved, and exported as OpenMetrics and OTLP exemplars."""

from __future__ import annotations

from typing import Any

import numpy as np
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from otel_ml import semconv as sc
from otel_ml.analyze.drift import compare
from otel_ml.analyze.exemplars import Exemplar
from otel_ml.core.counters import Counters
from otel_ml.core.snapshot import Snapshot
from otel_ml.decode.batch import SPAN_IDS_BYTES, ColumnarBatch, DecodeResult
from otel_ml.export.config import ExportConfig
from otel_ml.export.exemplars import with_exemplars
from otel_ml.export.metrics import MetricsExporter
from otel_ml.profile.exemplars import EXEMPLAR_BYTES, SLOTS, Exemplars
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import CATEGORICAL, NUMERIC, NumericProfile


def ids_of(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SPAN_IDS_BYTES), dtype=np.uint8)


def batch(x: np.ndarray, c: np.ndarray, t0: int, span_rows: np.ndarray | None = None, seed: int = 0
          ) -> ColumnarBatch:
    """Rows of ``x`` and ``c``; one row a span, or ``span_rows`` rows each (batch spans)."""
    n = len(x)
    rows = span_rows if span_rows is not None else np.ones(n, np.int64)
    spans = len(rows)
    span_of_row = np.repeat(np.arange(spans), rows)
    return ColumnarBatch("m", "1", n, (t0 + span_of_row).astype(np.int64), np.ones(n), numeric={"x": x},
                         categorical={"c": c}, span_end_ns=t0 + np.arange(spans, dtype=np.int64),
                         span_duration_s=np.full(spans, 0.01), span_error=np.zeros(spans, bool),
                         span_rows=rows.astype(np.int64), span_ids=ids_of(spans, seed))


KINDS = {"x": NUMERIC, "c": CATEGORICAL}


def test_each_band_keeps_its_last_row_with_its_own_span_ids_also_through_the_journal_format() -> None:
    """Batch spans of 4 rows: each kept row's ids are its span's, its value its own, its band the last row in it;
    the same after the batch went through the journal record (``to_bytes``, which keeps the ids and the rows of
    each span)."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 400)
    c = rng.choice(["a", "b", "c"], 400)
    b = batch(x, c, 10**18, span_rows=np.full(100, 4), seed=3)
    (replayed,) = DecodeResult.from_bytes(DecodeResult([b], spans_received=100, spans_accepted=100).to_bytes()).batches
    assert (replayed.span_ids == b.span_ids).all() and (replayed.span_rows == b.span_rows).all()
    for source in (b, replayed):
        p = ModelProfile("m", "1", grids={"x": (0.0, 1.0)})
        p.update(source, KINDS)
        kept = p.exemplars.of("x")
        assert kept
        for band, t, value, trace, span in kept:
            row = int(np.flatnonzero(x == value)[-1])
            assert trace + span == b.span_ids[row // 4].tobytes().hex() and t == 10**18 + row // 4
            z = np.arcsinh(x)  # the grid (0, 1): asinh(z) against the band edges
            in_band = np.searchsorted([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], z, side="right") == band
            assert row == np.flatnonzero(in_band)[-1]
        categories = {k: (t, trace + span) for k, t, _, trace, span in p.exemplars.of("c")}
        assert set(categories) == {"a", "b", "c"}
        for k, (t, ids) in categories.items():
            row = int(np.flatnonzero(c == k)[0])  # a request's first row of each category
            assert ids == b.span_ids[row // 4].tobytes().hex() and t == 10**18 + row // 4


def test_windows_merge_to_the_later_row_and_survive_serialization_within_their_bound() -> None:
    rng = np.random.default_rng(2)
    early, late = ModelProfile("m", "1", grids={"x": (0.0, 1.0)}), ModelProfile("m", "1", grids={"x": (0.0, 1.0)})
    early.update(batch(rng.normal(0, 1, 300), rng.choice(list("abcdefghijkl"), 300), 1000, seed=1), KINDS)
    late.update(batch(rng.normal(0, 1, 300), rng.choice(list("abcdefghijkl"), 300), 5000, seed=2), KINDS)
    horizon = ModelProfile("m", "1")
    for window in (late, early):  # in either order, each slot keeps its later row
        horizon.merge(ModelProfile.from_json(window.to_json()))
    for name in ("x", "c"):
        merged = {k: t for k, t, *_ in horizon.exemplars.of(name)}
        for k, t, *_ in late.exemplars.of(name):
            assert merged[k] == t >= 5000
    # 12 categories seen, 8 slots: the most recent categories stay
    assert len(horizon.exemplars.of("c")) == SLOTS
    assert horizon.exemplars.nbytes <= SLOTS * EXEMPLAR_BYTES + SLOTS * (EXEMPLAR_BYTES + 1)
    again = Exemplars.from_dict(horizon.exemplars.to_dict())
    assert again.of("x") == horizon.exemplars.of("x") and again.of("c") == horizon.exemplars.of("c")


def test_the_report_leads_with_rows_from_where_the_distribution_moved() -> None:
    """The reference is N(0, 1); the current half N(0, 1), half N(6, 1): the first example is from the band above
    z = 3.6 (all of whose values are the shifted half's), with its shares; "b" gained on the reference."""
    rng = np.random.default_rng(3)
    reference = ModelProfile("m", "1")
    before = rng.normal(0, 1, 2000)
    reference.update(batch(before, rng.choice(["a", "b"], 2000, p=[0.8, 0.2]), 0), KINDS)
    current = ModelProfile("m", "1", grids=reference.grids)
    x = np.concatenate([rng.normal(0, 1, 1000), rng.normal(6, 1, 1000)])
    rng.shuffle(x)
    current.update(batch(x, rng.choice(["a", "b"], 2000, p=[0.3, 0.7]), 10**9), KINDS)
    report = {f.feature: f for f in compare(reference, current).features}
    top = report["x"].exemplars[0]
    center, scale = reference.grids["x"]
    assert top.value > center + scale * np.sinh(2.0)
    # The band's shares computed from the rows on each side: within twice each sketch's rank error (a share is the
    # difference of two ranks).
    edge = center + scale * np.sinh(2.0)
    ref_x, cur_x = reference.features["x"], current.features["x"]
    assert isinstance(ref_x, NumericProfile) and isinstance(cur_x, NumericProfile)
    assert abs(top.current_share - np.mean(x >= edge)) <= 2 * cur_x.rank_error()
    assert abs(top.reference_share - np.mean(before >= edge)) <= 2 * ref_x.rank_error()
    assert report["c"].exemplars[0].value == "b"


def gauge_with_exemplars(name: str, points: list, exemplars: dict) -> Any:
    """One gauge of ``points`` as the OTLP exporter would receive it, through ``with_exemplars``."""
    from opentelemetry.sdk.metrics.export import Gauge, Metric, MetricsData, ResourceMetrics, ScopeMetrics
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    data = MetricsData([ResourceMetrics(Resource.create({}), [ScopeMetrics(InstrumentationScope("s"), [
        Metric(name, "", "", Gauge(points))], "")], "")])
    return with_exemplars(data, exemplars).resource_metrics[0].scope_metrics[0].metrics[0]


def test_openmetrics_and_otlp_carry_the_example_on_the_drift_series() -> None:
    e = Exemplar("ab" * 16, "cd" * 8, 1_700_000_000 * 10**9, 42.5, 0.5, 0.0)
    counters = Counters()
    attrs = {sc.ATTR_MODEL_NAME: "m", sc.ATTR_MODEL_VERSION: "1", sc.ATTR_FEATURE_NAME: "x"}
    counters.count(sc.METRIC_DRIFT_DETECTIONS, 3, attrs)
    exporter = MetricsExporter(ExportConfig(), counters)
    exporter.publish(Snapshot())
    exporter._snap.exemplars = {("m", "1", "x"): e}
    text = exporter.openmetrics_text().decode()
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}  # the OpenMetrics parser accepts it
    [sample] = [s for s in families["ml_drift_detections"].samples if s.name.endswith("_total")]
    assert sample.value == 3 and sample.exemplar.labels == {"trace_id": "ab" * 16, "span_id": "cd" * 8}
    assert sample.exemplar.value == 42.5 and float(sample.exemplar.timestamp) == 1_700_000_000
    assert b" # {" not in exporter.prometheus_text()  # the classic format has no exemplars

    from opentelemetry.sdk.metrics.export import NumberDataPoint

    def point(method: str) -> NumberDataPoint:
        return NumberDataPoint({**attrs, sc.ATTR_DRIFT_METHOD: method}, 0, 1, 1.0)

    out = gauge_with_exemplars(sc.METRIC_DRIFT_DETECTED, [point("overall"), point("psi")], {("m", "1", "x"): e})
    overall, psi = out.data.data_points
    assert not psi.exemplars
    [x] = overall.exemplars
    assert (x.trace_id, x.span_id, x.value, x.time_unix_nano) == (int("ab" * 16, 16), int("cd" * 8, 16), 42.5,
                                                                  e.time_ns)


def test_a_model_keeps_its_span_ids_once_a_second_per_decoding_process() -> None:
    """The ids travel (journal, worker processes) and are applied for one request a second per model: every request
    of a model that sends fewer, one a second of a busy one."""
    from otel_ml.receiver.ingest import EXAMPLES_EVERY_NS, keep_ids_once_a_second

    def result(model: str) -> DecodeResult:
        b = batch(np.zeros(3), np.array(["a"] * 3), 0)
        b.model = model
        return DecodeResult([b])

    kept = []
    for t, model in ((0, "busy"), (1, "busy"), (EXAMPLES_EVERY_NS - 1, "busy"), (EXAMPLES_EVERY_NS, "busy"),
                     (5, "quiet")):
        r = result(model)
        keep_ids_once_a_second(r, now_ns=10**15 + t)
        kept.append(len(r.batches[0].span_ids) > 0)
    assert kept == [True, False, False, True, True]
    without = result("none")
    without.batches[0].span_ids = np.zeros_like(without.batches[0].span_ids)  # spans without trace ids
    keep_ids_once_a_second(without, now_ns=10**15)
    assert not len(without.batches[0].span_ids)
