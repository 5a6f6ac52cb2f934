"""Event time on every recording path (issue 32): the SDK's ``timestamp(s)=``, ``otel-ml labels send
--time-column`` and ``otel-ml replay``'s requests, read back with the processor's own decoders."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from otel_ml.decode.otlp import decode_request
from otel_ml.decode.outcomes import decode_logs_request
from otel_ml.instrument import ModelMonitor
from otel_ml.instrument.labels import labels_request, read_labels
from otel_ml.instrument.monitor import event_time_ns
from otel_ml.instrument.replay import ReplayColumns, build_replay

DAY = 86_400 * 10**9
T0 = event_time_ns("2026-10-01T00:00:00Z")


def test_event_time_reads_every_spelling_of_a_moment() -> None:
    want = T0 + 1_500_000_000
    for value in (dt.datetime(2026, 10, 1, 0, 0, 1, 500000), "2026-10-01T00:00:01.5Z", "2026-10-01 02:00:01.5+02:00",
                  (T0 + 1_500_000_000) / 1e9, pd.Timestamp("2026-10-01 00:00:01.5"),
                  np.datetime64("2026-10-01T00:00:01.500")):
        assert event_time_ns(value) == want, value
    assert event_time_ns(pd.Timestamp("2026-10-01 00:00:00.000000007")) == T0 + 7
    for bad in ("yesterday", float("nan"), True, object(), np.datetime64("NaT")):
        with pytest.raises((TypeError, ValueError)):
            event_time_ns(bad)


def test_record_batch_sends_one_span_per_time_in_time_order(provider, spans) -> None:
    m = ModelMonitor("m", tracer_provider=provider)
    times = [T0 + 2 * DAY, T0, T0 + 2 * DAY, T0 + DAY]
    m.record_batch({"x": [1.0, 2.0, 3.0, 4.0]}, predictions=[0, 1, 0, 1], prediction_ids=["a", "b", "c", "d"],
                   timestamps=[t / 1e9 for t in times])
    out = spans.get_finished_spans()
    assert [(s.start_time, s.end_time) for s in out] == [(t, t) for t in (T0, T0 + DAY, T0 + 2 * DAY)]
    assert [list(s.attributes["ml.feature.x"]) for s in out] == [[2.0], [4.0], [1.0, 3.0]]
    assert [list(s.attributes["ml.prediction.id"]) for s in out] == [["b"], ["d"], ["a", "c"]]
    # Each span takes its place in the monitor's sequence: the processor sees no gap.
    assert [s.attributes["ml.sequence"] for s in out] == [0, 1, 2]
    batches = decode_request(_request(out)).batches
    assert sorted(int(t) for b in batches for t in b.row_time_ns) == sorted(times)


def test_record_and_ground_truth_with_timestamps(provider, spans) -> None:
    m = ModelMonitor("m", "1", tracer_provider=provider, batch_rows=10)
    m.record({"x": 1.0}, prediction=1, prediction_id="a", timestamp=dt.datetime(2026, 10, 2))
    m.record({"x": 2.0}, prediction=0, prediction_id="b", timestamp=dt.datetime(2026, 10, 1))
    m.record({"x": 3.0}, prediction=0, prediction_id="c", timestamp="not a time")  # dropped, counted
    m.flush()
    m.record_ground_truth("a", 1, timestamp=dt.datetime(2026, 10, 5))
    m.record_ground_truth_batch(["b", "c"], [0, 1], timestamps=[T0 / 1e9, None])
    out = spans.get_finished_spans()
    assert [s.end_time for s in out[:2]] == [T0, T0 + DAY]
    assert [s.end_time for s in out[2:4]] == [T0 + 4 * DAY, T0]
    assert out[4].end_time > T0 + 30 * DAY  # no timestamp: now
    assert m.dropped_by_reason["invalid_timestamp"] == 1
    m.record_batch({"x": [1.0, 2.0]}, timestamps=[T0 / 1e9])  # one timestamp for two rows: dropped, counted
    assert len(spans.get_finished_spans()) == 5 and m.dropped_by_reason["length_mismatch"] == 1
    assert m.dropped_values == 2


def test_labels_file_with_a_time_column(tmp_path) -> None:
    path = tmp_path / "labels.csv"
    pd.DataFrame({"id": ["1", "2", "3", ""], "y": [1, 0, 1, 1],
                  "at": ["2026-10-02T00:00:00.7", "2026-10-01T00:00:00", "2026-10-02T00:00:00.2", ""]}).to_csv(
        path, index=False)
    ids, values, times = read_labels(str(path), "id", "y", "at")
    assert ids == ["1", "2", "3"] and values == [1, 0, 1] and times == [T0 + DAY, T0, T0 + DAY]  # to the second
    records = labels_request("m", "", ids, values, 5000, times)
    assert [n for n, _ in records] == [1, 2]  # one record per time, the earliest first
    decoded = [decode_logs_request(body).labels[0] for _, body in records]
    assert [lb.time_ns.tolist() for lb in decoded] == [[T0], [T0 + DAY] * 2]
    # One bad time never sinks the rest (issue 44): its row is left out and said, with the file and row.
    pd.DataFrame({"id": ["1", "2", "3"], "y": [1, 0, 1], "at": ["2026-10-01", "soon", "1900-01-01"]}).to_csv(
        path, index=False)
    notes: list[str] = []
    ids, _, times = read_labels(str(path), "id", "y", "at", notes=notes)
    assert ids == ["1"] and times == [T0]
    assert "2 row(s) refused by column 'at'" in notes[0] and "labels.csv: row 2: 'soon' is not a time" in notes[0]
    assert "row 3: '1900-01-01' is not a time the processor takes (1900-01-01T00:00:00Z is before 1970" in notes[0]
    pd.DataFrame({"id": ["1"], "y": [1]}).assign(at="soon").to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"labels.csv: no label has a usable time in column 'at'"):
        read_labels(str(path), "id", "y", "at")


@pytest.mark.parametrize("unit, scale", [("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9)])
def test_numeric_times_are_read_in_the_unit_their_magnitude_says_or_the_one_given(tmp_path, unit, scale) -> None:
    """Epoch seconds, milliseconds, microseconds and nanoseconds are told apart (and the unit said); --time-unit
    overrides the guess."""
    from otel_ml.instrument.labels import event_times
    from otel_ml.instrument.times import UNIT_NAMES

    read = event_times("f.csv", [T0 // 10**9 * scale, (T0 + DAY) // 10**9 * scale], "at")
    assert read.ns == [T0, T0 + DAY] and read.unit == unit and read.guessed and not read.refused
    assert read.describe("at").startswith(f"column 'at': Unix {UNIT_NAMES[unit]} (from its magnitude")
    forced = event_times("f.csv", [T0 // 10**9 * scale], "at", unit="s")
    assert (forced.ns == [T0]) == (unit == "s")


def test_replay_requests_hold_every_row_at_its_time_and_labels_after_their_predictions(tmp_path) -> None:
    rng = np.random.default_rng(3)
    n = 500
    at = T0 + np.sort(rng.integers(0, 10 * DAY, n))
    frame = pd.DataFrame({"t": pd.to_datetime(at), "id": [f"r{i}" for i in range(n)], "x": rng.normal(size=n),
                          "plan": rng.choice(["a", "b"], n), "p": rng.uniform(size=n),
                          "y": rng.integers(0, 2, n).astype(float)})
    frame["pred"] = (frame["p"] >= 0.5).astype(int)
    frame.loc[n - 50:, "y"] = np.nan  # not labelled yet
    frame["known"] = frame["t"] + pd.Timedelta(days=2)
    path = tmp_path / "month.parquet"
    frame.to_parquet(path)
    columns = ReplayColumns(time="t", prediction="pred", probability="p", prediction_id="id", target="y",
                            target_time="known")
    replay = build_replay(str(path), "m", "1", columns, batch=100, resolution_s=1.0, max_request_span_s=3600)
    assert (replay.predictions, replay.labels, replay.features) == (n, n - 50, ["x", "plan"])
    rows, labels, clock = [], [], 0
    for _, body in replay.requests:
        result = decode_request(body)
        assert not result.spans_rejected, result.message()
        span_times = [int(t) for b in result.batches for t in b.row_time_ns] + [
            int(t) for lb in result.labels for t in lb.time_ns]
        assert max(span_times) - min(span_times) <= 3600 * 10**9  # within --max-request-span
        assert min(span_times) >= clock  # in time order across requests
        clock = max(span_times)
        for b in result.batches:
            rows += list(zip(b.row_time_ns.tolist(), b.numeric["x"].tolist(), b.categorical["plan"].tolist(),
                             strict=True))
        labels += [int(t) for lb in result.labels for t in lb.time_ns]
    want = sorted(zip((at // 10**9 * 10**9).tolist(), frame["x"].tolist(), frame["plan"].tolist(), strict=True))
    assert sorted(rows) == want
    assert sorted(labels) == sorted((at[: n - 50] // 10**9 * 10**9 + 2 * DAY).tolist())


def test_replay_names_what_it_cannot_send(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    pd.DataFrame({"t": ["2026-10-01", "2026-10-02", "later"], "x": [1, 2, 3]}).to_csv(path, index=False)
    replay = build_replay(str(path), "m", "", ReplayColumns(time="t"))  # the bad row left out, said; two sent
    assert replay.predictions == 2 and replay.rows_refused == 1
    assert "bad.csv: row 3: 'later' is not a time" in replay.notes[0]
    pd.DataFrame({"t": ["2026-10-01"], "prediction": [1]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"'prediction' would be sent as features .* pass --prediction-column "
                                         r"prediction"):
        build_replay(str(path), "m", "", ReplayColumns(time="t"))
    pd.DataFrame({"t": ["2026-10-01", "2026-10-02"], "x": [1, 2]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"bad.csv: no column 'when'"):
        build_replay(str(path), "m", "", ReplayColumns(time="when"))
    with pytest.raises(ValueError, match=r"need the prediction ids"):
        build_replay(str(path), "m", "", ReplayColumns(time="t", target="x"))


def _request(spans: list) -> bytes:
    """The SDK's own OTLP encoding of finished spans: what its exporter would send."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return encode_spans(spans).SerializeToString()
