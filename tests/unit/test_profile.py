"""Profiles, windows, horizons, pinning and serialization."""

from __future__ import annotations

import datasketches as ds
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile import CATEGORICAL, NUMERIC, ModelProfile, WindowConfig, WindowedProfile
from otel_ml.profile.sketch import kll_items
from otel_ml.profile.window import NS


def batch(t_seconds: np.ndarray, x: np.ndarray | None = None, c: np.ndarray | None = None,
          model: str = "m") -> ColumnarBatch:
    t = (np.asarray(t_seconds, dtype=np.float64) * NS).astype(np.int64)
    numeric = {"x": x} if x is not None else {}
    categorical = {"c": c} if c is not None else {}
    return ColumnarBatch(model, "", len(t), t, np.ones(len(t)), numeric=numeric, categorical=categorical,
                         span_end_ns=t, span_duration_s=np.full(len(t), 0.01), span_error=np.zeros(len(t), bool))


def test_merge_of_windows_equals_one_profile_of_all_rows() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=3000)
    c = rng.choice(np.array(["a", "b", "c", ""]), 3000)
    kinds = {"x": NUMERIC, "c": CATEGORICAL}
    whole = ModelProfile("m", "")
    whole.update(batch(np.zeros(3000), x, c), kinds)
    merged = ModelProfile("m", "")
    for part in np.array_split(np.arange(3000), 7):
        w = ModelProfile("m", "")
        w.update(batch(np.zeros(len(part)), x[part], c[part]), kinds)
        merged.merge(w)
    assert merged.rows == whole.rows == 3000
    fx_m, fx_w = merged.features["x"], whole.features["x"]
    assert fx_m.count == fx_w.count == 3000
    assert fx_m.mean == pytest.approx(np.mean(x)) and fx_m.std == pytest.approx(np.std(x, ddof=1))
    assert fx_m.min == x.min() and fx_m.max == x.max()
    assert merged.features["c"].frequencies() == whole.features["c"].frequencies()
    assert merged.features["c"].missing == int((c == "").sum())


def test_serialization_round_trip() -> None:
    p = ModelProfile("m", "v1")
    p.update(batch(np.arange(500), np.arange(500.0), np.array(["a", "b"] * 250)), {"x": NUMERIC, "c": CATEGORICAL})
    q = ModelProfile.from_json(p.to_json())
    assert (q.model, q.version, q.rows, q.spans) == ("m", "v1", 500, 500)
    assert q.features["x"].quantile(0.5) == p.features["x"].quantile(0.5)
    assert q.features["c"].frequencies() == {"a": 250, "b": 250}
    assert q.latency_quantile(0.5) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        ModelProfile.from_json('{"format": "something-else"}')


def test_type_mismatch_and_absent_features_are_counted() -> None:
    p = ModelProfile("m", "")
    b = batch(np.zeros(4), np.array([1.0, np.nan, np.nan, 2.0]), np.array(["", "str", "", ""]))
    p.update(b, {"x": NUMERIC, "c": CATEGORICAL, "gone": NUMERIC})
    x = p.features["x"]
    assert (x.count, x.missing, x.mismatch) == (2, 2, 0)
    assert p.features["gone"].missing == 4
    mixed = ColumnarBatch("m", "", 3, np.zeros(3, np.int64), np.ones(3),
                          numeric={"f": np.array([1.0, np.nan, np.nan])},
                          categorical={"f": np.array(["", "text", ""])})
    q = ModelProfile("m", "")
    q.update(mixed, {"f": NUMERIC})
    f = q.features["f"]
    assert (f.count, f.mismatch, f.missing) == (1, 1, 1)


def test_numbers_are_valid_categories() -> None:
    b = ColumnarBatch("m", "", 3, np.zeros(3, np.int64), np.ones(3),
                      numeric={"k": np.array([3.0, 3.5, np.nan])}, categorical={"k": np.array(["", "", "x"])})
    p = ModelProfile("m", "")
    p.update(b, {"k": CATEGORICAL})
    assert p.features["k"].frequencies() == {"3": 1, "3.5": 1, "x": 1}


def test_first_horizon_is_pinned_and_current_excludes_it() -> None:
    cfg = WindowConfig(window_seconds=10, horizon_seconds=30, allowed_lateness_seconds=5, reference_min_rows=10)
    wp = WindowedProfile("m", "", cfg, reference_chunks=10)
    t0 = 1_000_000.0
    for sec in range(0, 34):
        wp.update(batch(np.array([t0 + sec]), np.array([float(sec)])))
    # Watermark = newest (t0+33) − 5 s < t0 + 30: not yet.
    assert wp.reference is None
    wp.update(batch(np.array([t0 + 35]), np.array([35.0])))
    assert wp.reference_source == "pinned" and wp.reference.rows == 30
    assert wp.reference.features["x"].max == 29.0
    assert [c.rows for c in wp.reference.chunks] == [10, 10, 10]  # one per window, for learned thresholds
    cur = wp.current()
    assert cur.rows == 5 and cur.features["x"].min == 30.0
    # A row for the pinned horizon arriving now is late, not counted twice.
    assert wp.update(batch(np.array([t0 + 29]), np.array([29.0]))) == 1


def test_horizon_slides_and_old_windows_are_evicted() -> None:
    cfg = WindowConfig(window_seconds=1, horizon_seconds=5, allowed_lateness_seconds=1)
    ref = ModelProfile("m", "")
    ref.update(batch(np.zeros(10), np.zeros(10)), {"x": NUMERIC})
    wp = WindowedProfile("m", "", cfg, reference=ref)
    for sec in range(100):
        wp.update(batch(np.array([sec, sec + 0.5]), np.array([sec, sec + 0.5])))
    assert len(wp.windows) <= 7  # horizon (5) + lateness (1) + the open one, bounded
    cur = wp.current()
    assert cur.rows == 10 and cur.features["x"].min == 95.0
    assert wp.update(batch(np.array([90.0]), np.array([1.0]))) == 1  # too late
    assert wp.update(batch(np.array([94.5]), np.array([1.0]))) == 0  # within lateness: kept


def test_baseline_kinds_win_over_traffic() -> None:
    ref = ModelProfile("m", "")
    ref.update(ColumnarBatch("m", "", 2, np.zeros(2, np.int64), np.ones(2),
                             categorical={"zip": np.array(["1000", "2000"])}), {"zip": CATEGORICAL})
    wp = WindowedProfile("m", "", WindowConfig(), reference=ref)
    wp.update(batch(np.array([1.0]), c=None, x=None))
    assert wp.kinds["zip"] == CATEGORICAL


def test_sparse_traffic_grows_the_pinned_reference_until_it_is_large_enough() -> None:
    cfg = WindowConfig(window_seconds=1, horizon_seconds=3, allowed_lateness_seconds=0, reference_min_rows=10)
    wp = WindowedProfile("m", "", cfg)
    for sec in range(5):  # 2 rows per second: the first horizon (3 s) has only 6
        wp.update(batch(np.array([sec, sec + 0.5]), np.array([sec, sec + 0.5])))
    assert wp.reference is None  # watermark 4.5 s is past the horizon, but 10 rows need seconds 0-4
    wp.update(batch(np.array([5.0]), np.array([5.0])))
    assert wp.reference is not None and wp.reference.rows == 10
    assert wp.current().features["x"].min == 5.0


def test_evicted_windows_are_not_kept_without_an_archive(tmp_path) -> None:
    from otel_ml.config import load_config
    from otel_ml.service import ProcessorService
    from tests.support import request

    cfg = load_config(overrides={"state.durable": False, "state.dir": str(tmp_path), "windows.window_seconds": 1,
                                 "windows.horizon_seconds": 2, "windows.reference_min_rows": 5,
                                 "export.prometheus.endpoint": "127.0.0.1:0", "ui.endpoint": "127.0.0.1:0"},
                      environ={})
    service = ProcessorService(cfg)
    service.exporter.start()
    for i in range(50):
        req = request({"ml.model.name": "m", "ml.feature.x": float(i)})
        req.resource_spans[0].scope_spans[0].spans[0].end_time_unix_nano = (1_700_000_000 + i) * NS
        service.pipeline.consume(req.SerializeToString())
    wp = service.live.partition(0).models[("m", "")]
    service.exporter.shutdown()
    assert len(wp.windows) <= 4 and wp.take_changes().evicted == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3000), st.sampled_from([8, 200, 400]),
       st.integers(1, 3))


def test_kll_items_equal_the_sketch_iterator(values: list[float], k: int, parts: int) -> None:
    """kll_items reads the serialized sketch; the sketch's own iterator is the reference (merged sketches too)."""
    sketch = ds.kll_doubles_sketch(k)
    for chunk in np.array_split(np.array(values, dtype=float), parts):
        part = ds.kll_doubles_sketch(k)
        if len(chunk):
            part.update(chunk)
        sketch.merge(part)
    got_values, got_weights = kll_items(sketch.serialize())
    assert got_weights.sum() == sketch.n
    iterated = sorted(sketch)
    # The library's iterator is the reference only where it is consistent: after merging sketches whose level 0
    # is empty (k=8, 24 zeros in two parts: every item at level 1) it reports weight 1 per item, 12 in all for
    # n=24, while the serialized levels (read here) say weight 2.
    if sum(w for _, w in iterated) == sketch.n:
        assert sorted(zip(got_values.tolist(), got_weights.tolist())) == iterated


def test_error_ratio_counts_failed_predictions_not_spans_through_the_journal_format() -> None:
    """Issue 31 case 9: ml_prediction_error_ratio counted spans: one failed 10-row call among 510 rows read 0.167
    (1 of 6 spans). It counts rows now, also after a batch went through the journal's (and the receiver worker
    processes') byte format, which keeps the rows of spans only when one of them failed."""
    from otel_ml.analyze.drift import compare
    from otel_ml.decode.batch import DecodeResult

    def batch(rows: list[int], failed: list[bool]) -> ColumnarBatch:
        n = sum(rows)
        return ColumnarBatch("m", "", n, np.full(n, 5), np.ones(n), numeric={"x": np.arange(n, dtype=float)},
                             span_end_ns=np.full(len(rows), 5), span_duration_s=np.full(len(rows), 0.1),
                             span_error=np.array(failed), span_rows=np.array(rows),
                             span_stream=np.zeros(len(rows), np.int64), span_seq=np.full(len(rows), -1))

    live = [batch([100] * 5 + [10], [False] * 5 + [True])]
    replayed = DecodeResult.from_bytes(DecodeResult(live, spans_received=6, spans_accepted=6).to_bytes()).batches
    assert replayed[0].span_rows.tolist() == [100] * 5 + [10]
    healthy = DecodeResult.from_bytes(DecodeResult([batch([10], [False])]).to_bytes()).batches[0]
    assert not len(healthy.span_rows)  # nothing kept for batches that did not fail
    for batches in (live, replayed):
        p = ModelProfile("m", "")
        for b in batches:
            p.update(b, {"x": NUMERIC})
        assert (p.rows, p.error_spans, p.error_rows) == (510, 1, 10)
        assert compare(None, p).error_ratio == pytest.approx(10 / 510)
        assert ModelProfile.from_json(p.to_json()).error_rows == 10


def test_the_compiled_column_pass_equals_the_numpy_reference() -> None:
    """``_columns.c`` against the numpy forms it replaced: bins equal the asinh formula's exactly (on z within a
    few ulps of every bin edge, in the table and beyond it, and on random data against ``grid_bins``' numpy
    form), counts equal, mean and m2 within the two-pass algorithms' rounding bound."""
    from otel_ml.profile import sketch

    if sketch._columns is None:
        pytest.skip("built without a C compiler")
    numeric_module = sketch._columns
    edges = np.sinh(np.arange(1, sketch.NUMERIC_GRID_BINS) / 16.0 - 16.0)
    near = np.concatenate([np.nextafter(edges, s * np.inf) if s else edges for s in (-1, 0, 1)] +
                          [edges * (1 + f) for f in (-1e-15, 1e-15, -1e-12, 1e-12)] +
                          [np.array([0.0, -0.0, 63.999, 64.0, -64.0, -64.0001, 1e300, -1e300, np.inf, -np.inf])])
    by_formula, by_tables = np.empty(len(near), np.int32), np.empty(len(near), np.int32)
    numeric_module.formula_bins(near, by_formula)
    numeric_module.bins(near, 0.0, 1.0, by_tables)
    assert (by_tables == by_formula).all(), near[by_tables != by_formula]

    rng = np.random.default_rng(7)
    for _ in range(300):
        x = rng.standard_cauchy(rng.integers(1, 700)) * 10 ** rng.uniform(-3, 6) + rng.normal(0, 100)
        x[rng.random(len(x)) < 0.05] = rng.choice([np.nan, np.inf, -np.inf])
        grid = sketch.choose_grid(x[np.isfinite(x)]) if np.isfinite(x).sum() else (0.0, 1.0)
        compiled = np.zeros(sketch.NUMERIC_GRID_BINS, np.int64)
        last = (np.full(8, -1, np.int32), np.zeros(8))
        count, mean, m2 = numeric_module.summarize(x, *grid, compiled, sketch.EXEMPLAR_SLOT_OF_BIN, *last)
        try:
            sketch._columns = None
            reference = np.zeros(sketch.NUMERIC_GRID_BINS, np.int64)
            last_np = (np.full(8, -1, np.int32), np.zeros(8))
            count_np, mean_np, m2_np = sketch._summarize(x, grid, reference, last_np)
            bins_np = sketch.grid_bins(x[np.isfinite(x)], grid)
        finally:
            sketch._columns = numeric_module
        assert count == count_np and (compiled == reference).all()
        # each exemplar band's last value: the same row on both paths, and truly the last of its band
        assert (last[0] == last_np[0]).all() and (last[1][last[0] >= 0] == x[last[0][last[0] >= 0]]).all()
        bands = np.full(len(x), -1)
        bands[np.isfinite(x)] = sketch.EXEMPLAR_SLOT_OF_BIN[bins_np]
        assert last[0].tolist() == [int(np.flatnonzero(bands == k)[-1]) if (bands == k).any() else -1
                                    for k in range(8)]
        assert (sketch.grid_bins(x[np.isfinite(x)], grid) == bins_np).all()
        # The mean: each sum of n terms is within n·ε·Σ|terms| of the exact one (Higham, Accuracy and Stability of
        # Numerical Algorithms, 4.2); the reference's pairwise sums are tighter, so the two means differ by at most
        # 2n·ε·mean|x|. m2: each form sums n squared deviations from its own mean m̂, three roundings each, so each
        # is within (n + 3)·ε·Σ(x − m̂)² of Σ(x − m̂)² = m2 + n·(m̂ − mean)²; the compiled form subtracts that
        # offset (the correction term), numpy's keeps it, so they differ by at most 2(n + 3)·ε ≤ 8n·ε (n ≥ 1) times
        # that sum plus the offset n·(mean − mean_np)². 1e-300: constant data, where m2 is 0 on both sides.
        present = x[np.isfinite(x)]
        bound = 2 * count * np.finfo(float).eps
        assert abs(mean - mean_np) <= bound * (np.abs(present).mean() if count else 0.0)
        assert abs(m2 - m2_np) <= bound * 4 * (np.square(present - mean_np).sum() + count * (mean - mean_np) ** 2) \
            + 1e-300


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["", "a", "b", "north", "é", "\x00x", "x\x00y"]), st.text(max_size=6)),
                max_size=60))
def test_the_compiled_category_count_equals_numpy_unique(cells: list[str]) -> None:
    """``_columns.c``'s hash count against ``np.unique``: the same distinct strings (a leading or inner NUL is a
    category, only "" is missing; any code point, surrogates included), counts and missing count."""
    from otel_ml.profile import sketch

    if sketch._columns is None:
        pytest.skip("built without a C compiler")
    values = np.array(cells, dtype=str) if cells else np.array([], dtype="<U1")
    compiled = sketch._count_categories(values)
    columns, sketch._columns = sketch._columns, None
    try:
        assert compiled == sketch._count_categories(values)
    finally:
        sketch._columns = columns


def test_the_compiled_cell_sums_equal_bincount() -> None:
    """Segments' exact counts: ``_columns.c``'s cell sums against bincount and flatnonzero (the fallback), with
    repeated cells, zero weights, cells far apart (the scratch table grows) and empty input; bit-equal sums, as
    both add each cell's weights in row order."""
    from otel_ml.profile import sketch

    if sketch._columns is None:
        pytest.skip("built without a C compiler")
    rng = np.random.default_rng(11)
    for size, span in [(0, 10), (1, 1), (512, 40), (512, 5632), (3000, 300_000), (10, 5)]:
        ids = rng.integers(0, span, size)
        weights = rng.choice([0.0, 1.0, 2.5, 1e-3], size)
        got = dict(zip(*(a.tolist() for a in sketch.cell_sums(ids, weights))))
        columns, sketch._columns = sketch._columns, None
        try:
            expected = dict(zip(*(a.tolist() for a in sketch.cell_sums(ids, weights))))
        finally:
            sketch._columns = columns
        assert got == expected
    with pytest.raises(ValueError, match=">= 0"):
        sketch.cell_sums(np.array([-1]), np.ones(1))
