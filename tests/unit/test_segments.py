"""Issue 33: per-segment counts (profile/segments.py) and their tests (analyze/segments.py) against exact
computation on the raw rows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from otel_ml.analyze.segments import attribution_kind, compare_segments
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.segments import OTHER, SegmentCounts
from otel_ml.profile.sketch import grid_bins

KINDS = {"x": "numeric", "c": "categorical", "region": "categorical"}
GRIDS = {"x": (0.0, 1.0)}


def batch(region: np.ndarray, x: np.ndarray, c: np.ndarray | None = None) -> ColumnarBatch:
    n = len(x)
    return ColumnarBatch("m", "", n, np.zeros(n, np.int64), np.ones(n), numeric={"x": x},
                         categorical={"region": region, "c": c if c is not None else np.full(n, "a")})


def test_counts_equal_the_raw_rows_binned_and_survive_merge_and_serialization_in_any_label_order() -> None:
    rng = np.random.default_rng(1)
    region = rng.choice(np.array(["n", "s", "e"]), 3000)
    x = rng.normal(0, 1, 3000)
    a, b = SegmentCounts(("region",)), SegmentCounts(("region",))
    a.update(batch(region[:1500], x[:1500]), KINDS, GRIDS)
    b.update(batch(region[1500:][::-1], x[1500:][::-1]), KINDS, GRIDS)  # other rows first: other label order
    merged = SegmentCounts.from_dict(a.to_dict())
    merged.merge(SegmentCounts.from_dict(b.to_dict()))
    for label in ("n", "s", "e"):
        i = merged.labels.index(f"region={label}")
        exact = np.bincount(grid_bins(x[region == label], GRIDS["x"]), minlength=512)
        assert np.array_equal(merged.table("x", i), exact)
        assert merged.weights[i] == np.sum(region == label)
        assert np.isclose(merged.means("x")[i], x[region == label].mean())


def test_labels_beyond_the_limit_pool_as_other() -> None:
    s = SegmentCounts(("region",), max_segments=3)
    s.update(batch(np.array(["a", "b", "c", "d", "a"]), np.zeros(5)), KINDS, GRIDS)
    assert s.labels == ["region=a", "region=b", OTHER] and s.weights.tolist() == [2.0, 1.0, 2.0]


def test_a_model_profile_carries_its_segments_through_merge_and_json() -> None:
    p = ModelProfile("m", "")
    p.update(batch(np.array(["a", "b"]), np.array([1.0, 2.0])), KINDS, segmented=SegmentCounts(("region",)))
    q = ModelProfile.from_json(p.to_json())
    q.merge(p)
    assert q.segments is not None and q.segments.weights.tolist() == [2.0, 2.0]


def test_segment_p_values_are_the_exact_binned_tests_times_the_family_size() -> None:
    """The KS p-value of a segment's binned counts equals scipy's exact test on the binned raw values, multiplied
    by the number of (segment, feature) tests."""
    rng = np.random.default_rng(2)
    def counts(shift: float) -> tuple[SegmentCounts, np.ndarray, np.ndarray]:
        s = SegmentCounts(("region",))
        region = np.repeat(np.array(["a", "b"]), 1500)
        x = rng.normal(0, 1, 3000) + np.where(region == "b", shift, 0.0)
        c = rng.choice(np.array(["u", "v"]), 3000)
        s.update(batch(region, x, c), KINDS, GRIDS)
        return s, region, x
    (ref, r_region, r_x), (cur, c_region, c_x) = counts(0.0), counts(0.3)
    reports, contributions = compare_segments(ref, cur, alpha=0.01, min_samples=100)
    b = next(r for r in reports if r.segment == "region=b")
    ref_bins = grid_bins(r_x[r_region == "b"], GRIDS["x"]).astype(float)
    cur_bins = grid_bins(c_x[c_region == "b"], GRIDS["x"]).astype(float)
    exact = stats.ks_2samp(ref_bins, cur_bins, method="asymp").pvalue
    assert np.isclose(b.p_values["x"], min(1.0, exact * 4), rtol=0.05)  # 2 segments x 2 features
    assert b.detected and b.drifted == ["x"]
    assert attribution_kind(contributions, "x") == "within"
    total = sum(c.total for c in contributions if c.feature == "x")
    assert np.isclose(total, c_x.mean() - r_x.mean())  # mix + within add up to the change of the mean exactly


def test_a_baseline_built_with_segment_by_segments_the_windows_compared_with_it(tmp_path) -> None:
    """`baseline build --segment-by region`: the reference holds each region's counts on its own grid, and a
    window set given that baseline segments its rows the same way, so each segment meets its own."""
    from otel_ml.cli import main
    from otel_ml.profile.window import WindowConfig, WindowedProfile

    rng = np.random.default_rng(3)
    region = rng.choice(np.array(["n", "s"]), 4000)
    x = rng.normal(0, 1, 4000)
    csv = tmp_path / "train.csv"
    csv.write_text("region,x\n" + "".join(f"{r},{v}\n" for r, v in zip(region, x)))
    out = tmp_path / "m.json"
    assert main(["baseline", "build", "--model", "m", "--input", str(csv), "--segment-by", "region",
                 "--output", str(out)]) == 0
    reference = ModelProfile.from_json(out.read_text())
    assert reference.segments is not None and sorted(reference.segments.labels) == ["region=n", "region=s"]
    wp = WindowedProfile("m", "", WindowConfig(window_seconds=1, horizon_seconds=1), reference=reference)
    n = 3000
    live_region = rng.choice(np.array(["n", "s"]), n)
    live_x = rng.normal(0, 1, n) + np.where(live_region == "s", 1.0, 0.0)
    wp.update(ColumnarBatch("m", "", n, np.zeros(n, np.int64), np.ones(n), numeric={"x": live_x},
                            categorical={"region": live_region}, span_end_ns=np.zeros(1, np.int64),
                            span_duration_s=np.zeros(1), span_error=np.zeros(1, bool)))
    reports, _ = compare_segments(reference.segments, wp.current().segments, alpha=0.01, min_samples=100)
    assert {r.segment: r.detected for r in reports} == {"region=n": False, "region=s": True}


def test_outcomes_count_in_their_segment_across_a_checkpoint_and_a_partition_hop(tmp_path) -> None:
    """Performance per segment: a waiting prediction keeps its segment (the pending store's key), through a
    checkpoint of the store and through the journal record shared Kafka mode routes rows with; the segment's
    accuracy is that of its rows, and a checkpoint from before segments still reads."""
    from otel_ml import semconv
    from otel_ml.analyze.performance import PerformanceConfig
    from otel_ml.core.live import join_rows, with_segments
    from otel_ml.decode.batch import DecodeResult, LabelBatch
    from otel_ml.labels.ground_truth import GroundTruth
    from otel_ml.labels.pending import LabelsConfig
    from otel_ml.profile.performance import PerformanceProfile

    rng = np.random.default_rng(3)
    n = 600
    tier = rng.choice(np.array(["a", "b", "c"]), n)
    pred = rng.choice(np.array(["no", "yes"]), n)
    truth = np.where((tier == "b") & (rng.random(n) < 0.5), np.where(pred == "yes", "no", "yes"), pred)
    ids = np.arange(1, n + 1, dtype=np.uint64)
    t = np.full(n, 10**18, np.int64)
    b = ColumnarBatch("m", "1", n, t, np.ones(n), categorical={"tier": tier, semconv.PREDICTION_FEATURE: pred},
                      prediction_id=ids)
    segmented = SegmentCounts(("tier",))
    joined = with_segments(b, segmented)
    assert semconv.SEGMENT_COLUMN not in b.categorical  # the journaled batch is left alone
    hopped = DecodeResult.from_bytes(DecodeResult([join_rows(joined, np.ones(n, bool))], routed=True).to_bytes())
    gt = GroundTruth(str(tmp_path / "p"), LabelsConfig(), PerformanceConfig())
    gt.count_predictions(joined)
    gt.join_predictions(hopped.batches[0])
    state = gt.state()
    again = GroundTruth(str(tmp_path / "p"), LabelsConfig(), PerformanceConfig())
    assert not again.restore(state, gt.take_changes().upserts)  # the store's files and the sealed windows
    again.on_labels(LabelBatch("m", "1", ids, np.full(n, np.nan), truth, t + 10**9))
    current = again.current("m", "1")
    assert current is not None and sorted(current.segments) == ["tier=a", "tier=b", "tier=c"]
    for label in ("a", "b", "c"):
        rows = tier == label
        seg = current.segments[f"tier={label}"]
        assert seg.labeled == rows.sum() and seg.predictions == rows.sum()
        assert seg.metrics()["accuracy"][0] == (pred[rows] == truth[rows]).mean()
    assert PerformanceProfile.from_dict(current.to_dict()).segments["tier=b"].labeled == (tier == "b").sum()
    old = {**state["pending"], "keys": [["m", "1"]]}  # a checkpoint written before segments: two-part keys
    from otel_ml.labels.pending import PendingPredictions
    store = PendingPredictions(tmp_path / "q", 10**15, 1000, 10**12)
    store.restore(old)
    assert store.codes.keys == [("m", "1", "")]


def test_screened_ks_p_values_equal_the_exact_ones_adjusted() -> None:
    """``ks_pvalues_adjusted`` computes scipy's exact p-value only where Stephens' approximation says it may be
    below 4/tests; over sample sizes from 3 to 100,000 a side and statistics across the whole range, every
    adjusted p-value equals min(1, exact × tests)."""
    from otel_ml.analyze import stats as st

    rng = np.random.default_rng(7)
    n = np.round(10 ** rng.uniform(0.5, 5, 4000))
    m = np.round(10 ** rng.uniform(0.5, 5, 4000))
    d = rng.uniform(0, 1, 4000) * np.minimum(1.0, 4 / np.sqrt(n * m / (n + m)))  # most near where decisions fall
    for tests in (1, 10, 500):
        got = st.ks_pvalues_adjusted(d, n, m, tests)
        want = np.array([min(1.0, st.ks_pvalue(a, int(b), int(c)) * tests) for a, b, c in zip(d, n, m)])
        assert np.allclose(got, want, rtol=1e-12, atol=0), np.flatnonzero(~np.isclose(got, want))[:5]


def test_missing_ratio_per_segment_equals_the_raw_rows() -> None:
    """Data quality per segment: each feature's share of a segment's rows without a value, from the counts."""
    rng = np.random.default_rng(4)
    region = rng.choice(np.array(["n", "s"]), 4000)
    x = rng.normal(0, 1, 4000)
    x[(region == "s") & (rng.random(4000) < 0.3)] = np.nan
    c = np.where((region == "n") & (rng.random(4000) < 0.1), "", "a")
    ref, cur = SegmentCounts(("region",)), SegmentCounts(("region",))
    ref.update(batch(region, rng.normal(0, 1, 4000)), KINDS, GRIDS)
    cur.update(batch(region, x, c), KINDS, GRIDS)
    reports, _ = compare_segments(ref, cur, 0.01, 100)
    got = {r.segment: r.missing_ratio for r in reports}
    for label, column, values in (("n", "c", c == ""), ("s", "x", np.isnan(x))):
        assert got[f"region={label}"][column] == pytest.approx(values[region == label].mean(), abs=1e-12)
    assert "x" not in got["region=n"] and "c" not in got["region=s"]


def test_past_the_limit_the_busiest_segments_get_their_place_in_the_next_window() -> None:
    """max 3 segments (2 of their own and (other)): in the first window a and b come first and c, the busiest,
    is pooled; from the next window on c has its own place, and b (the quietest) is pooled instead."""
    from otel_ml.profile.window import WindowConfig, WindowedProfile

    wp = WindowedProfile("m", "", WindowConfig(window_seconds=60, horizon_seconds=600), segment_by={"m": ("region",)},
                         max_segments=3)
    rng = np.random.default_rng(2)
    region = np.array(["a"] * 30 + ["b"] * 10 + ["c"] * 500)
    for minute in range(2):
        n = len(region)
        t = np.full(n, (1_700_000_000 + minute * 60) * 10**9, np.int64)
        wp.update(ColumnarBatch("m", "", n, t, np.ones(n), numeric={"x": rng.normal(0, 1, n)},
                                categorical={"region": region}, span_end_ns=t[:1], span_duration_s=np.zeros(1),
                                span_error=np.zeros(1, bool)))
    first, second = (wp.windows[s].segments for s in sorted(wp.windows))
    assert dict(zip(first.labels, first.weights.tolist())) == {"region=a": 30.0, "region=b": 10.0, OTHER: 500.0}
    assert dict(zip(second.labels, second.weights.tolist())) == {"region=c": 500.0, "region=a": 30.0, OTHER: 10.0}


def test_a_numeric_key_with_declared_bins_segments_by_interval_in_the_baseline_and_the_windows(tmp_path) -> None:
    """`--segment-bins age=30,50` (and `segments.bins` in the config): ages segment by interval, not by value; the
    reference carries the edges to the windows compared with it, and wrong edges are refused in one line."""
    from otel_ml.cli import main
    from otel_ml.config import ConfigError, load_config
    from otel_ml.profile.window import WindowConfig, WindowedProfile

    rng = np.random.default_rng(5)
    age = rng.integers(18, 80, 3000).astype(float)
    csv = tmp_path / "train.csv"
    csv.write_text("age,x\n" + "".join(f"{a:g},{v}\n" for a, v in zip(age, rng.normal(0, 1, 3000))))
    out = tmp_path / "m.json"
    assert main(["baseline", "build", "--model", "m", "--input", str(csv), "--segment-by", "age",
                 "--segment-bins", "age=30,50", "--output", str(out)]) == 0
    reference = ModelProfile.from_json(out.read_text())
    assert reference.segments is not None
    weights = dict(zip(reference.segments.labels, reference.segments.weights.tolist()))
    assert weights == {"age=<30": (age < 30).sum(), "age=[30..50)": ((age >= 30) & (age < 50)).sum(),
                       "age=>=50": (age >= 50).sum()}
    wp = WindowedProfile("m", "", WindowConfig(window_seconds=1, horizon_seconds=1), reference=reference)
    wp.update(ColumnarBatch("m", "", 2, np.zeros(2, np.int64), np.ones(2), numeric={"age": np.array([29.5, 50.0]),
                            "x": np.zeros(2)}, span_end_ns=np.zeros(1, np.int64), span_duration_s=np.zeros(1),
                            span_error=np.zeros(1, bool)))
    assert wp.current().segments.labels == ["age=<30", "age=>=50"]
    assert main(["baseline", "build", "--model", "m", "--input", str(csv), "--segment-by", "age",
                 "--segment-bins", "age=50,30", "--output", str(out)]) != 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("segments:\n  by: {m: [age]}\n  bins: {age: [50, 30]}\n")
    with pytest.raises(ConfigError, match=r"segments\.bins\.age"):
        load_config(str(bad))


def test_spans_sending_the_baselines_segment_column_as_ml_segment_are_compared_by_it_and_miss_no_feature(
        tmp_path) -> None:
    """A baseline built with `--segment-by region` profiles region as a feature too; live spans that send it as
    ``ml.segment.region`` (the column ``segment.region``, not a feature) are segmented by it, and region is not
    reported as a dropped feature (100% missing would fire the missing-values alert)."""
    from otel_ml.analyze.drift import compare
    from otel_ml.cli import main
    from otel_ml.profile.window import WindowConfig, WindowedProfile
    from otel_ml.semconv import SEGMENT_COLUMN_PREFIX

    rng = np.random.default_rng(8)
    region = rng.choice(np.array(["n", "s"]), 4000)
    csv = tmp_path / "train.csv"
    csv.write_text("region,x\n" + "".join(f"{r},{v}\n" for r, v in zip(region, rng.normal(0, 1, 4000))))
    out = tmp_path / "m.json"
    assert main(["baseline", "build", "--model", "m", "--input", str(csv), "--segment-by", "region",
                 "--output", str(out)]) == 0
    reference = ModelProfile.from_json(out.read_text())
    wp = WindowedProfile("m", "", WindowConfig(window_seconds=1, horizon_seconds=1), reference=reference)
    n = 3000
    live = rng.choice(np.array(["n", "s"]), n)
    wp.update(ColumnarBatch("m", "", n, np.zeros(n, np.int64), np.ones(n),
                            numeric={"x": rng.normal(0, 1, n) + np.where(live == "s", 1.0, 0.0)},
                            categorical={SEGMENT_COLUMN_PREFIX + "region": live}, span_end_ns=np.zeros(1, np.int64),
                            span_duration_s=np.zeros(1), span_error=np.zeros(1, bool)))
    report = compare(reference, wp.current())
    assert [f.feature for f in report.features] == ["x"]
    assert {s.segment: s.detected for s in report.segments} == {"region=n": False, "region=s": True}


def test_segment_labels_stay_distinct_when_keys_or_values_hold_equals_signs_or_commas() -> None:
    """Issue 49 N: ``a="1,b=2", b="3"`` and ``a="1", b="2,b=3"`` both read ``a=1,b=2,b=3``: two segments under one
    label (their counts, pages and series merged). Commas and backslashes in keys and values, and ``=`` in keys,
    are escaped."""
    a = np.array(["1,b=2", "1", "1,b=2"])
    b = np.array(["3", "2,b=3", "3"])
    rows = ColumnarBatch("m", "", 3, np.zeros(3, np.int64), np.ones(3), categorical={"a": a, "b": b})
    labels = SegmentCounts(("a", "b")).row_labels(rows).tolist()
    assert labels[0] == labels[2] != labels[1], labels
    assert labels == ["a=1\\,b=2,b=3", "a=1,b=2\\,b=3", "a=1\\,b=2,b=3"]


def test_segment_keys_beyond_the_limit_are_named_in_the_log_once(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 49 M: keys beyond the first 4 (by name) were dropped without a word; each is now named once."""
    from otel_ml.profile.window import MAX_SEGMENT_KEYS, WindowConfig, WindowedProfile

    keys = ["a", "b", "c", "d", "e", "f"]
    rows = ColumnarBatch("m", "", 2, np.zeros(2, np.int64), np.ones(2), numeric={"x": np.array([1.0, 2.0])},
                         categorical={f"segment.{k}": np.array(["u", "v"]) for k in keys},
                         span_end_ns=np.zeros(2, np.int64), span_duration_s=np.full(2, np.nan),
                         span_error=np.zeros(2, bool))
    wp = WindowedProfile("m", "", WindowConfig(window_seconds=60, horizon_seconds=600))
    with caplog.at_level("WARNING"):
        wp.update(rows)
        wp.update(rows)  # the same keys again: no second line
    named = [r.getMessage() for r in caplog.records if "not segmented by" in r.getMessage()]
    assert len(named) == 1 and "segment key(s) e, f (ml.segment.*)" in named[0], named
    assert wp.segmented is not None and wp.segmented.by == tuple(keys[:MAX_SEGMENT_KEYS])
