"""Both state backends in process: local recovery and a failed checkpoint given back; shared partitions as
changelog records, a takeover from them, a failed publication given back, and labels routed to the partition their
ids hash to. (Through real processes, Kafka and kill -9: tests/e2e/test_durability.py, test_kafka.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from otel_ml.analyze.performance import PerformanceConfig
from otel_ml.core.counters import Counters
from otel_ml.core.live import LiveConfig, LiveModels, MergedViews, Ownership, OwnViews
from otel_ml.core.references import ReferenceStore
from otel_ml.decode.batch import ColumnarBatch, DecodeResult, LabelBatch
from otel_ml.decode.ids import id_hash
from otel_ml.labels.ground_truth import GroundTruth
from otel_ml.labels.pending import LabelsConfig
from otel_ml.profile.window import WindowConfig
from otel_ml.state import partitions as records_of
from otel_ml.state.journal import StorageError
from otel_ml.state.local import LocalState, StateConfig

S = 10**9
T0 = 1_800_000_000 * S
WINDOWS = WindowConfig(window_seconds=1, horizon_seconds=4, allowed_lateness_seconds=0, reference_min_rows=5)


def rows(model: str, t: int, n: int = 10, ids: list[str] | None = None, seed: int = 0) -> ColumnarBatch:
    rng = np.random.default_rng(seed)
    ts = np.full(n, T0 + t * S, np.int64)
    batch = ColumnarBatch(model, "", n, ts, np.ones(n), numeric={"x": rng.normal(size=n),
                                                                 "prediction.probability": rng.uniform(size=n),
                                                                 "prediction": (rng.uniform(size=n) > 0.5) * 1.0},
                          span_end_ns=ts, span_duration_s=np.full(n, 0.01), span_error=np.zeros(n, bool))
    if ids is not None:
        batch.prediction_id = id_hash(model, np.array(ids))
    return batch


def labels(model: str, ids: list[str], t: int) -> LabelBatch:
    return LabelBatch(model, "", id_hash(model, np.array(ids)), np.ones(len(ids)), np.full(len(ids), ""),
                      np.full(len(ids), T0 + t * S, np.int64))


def local(tmp_path: Path) -> tuple[LiveModels, LocalState]:
    counters = Counters()
    cfg = LiveConfig(windows=WINDOWS, keep_evicted=True)
    live = LiveModels(cfg, ReferenceStore(None, str(tmp_path)), counters, OwnViews(),
                      labels=lambda p: GroundTruth(str(tmp_path / "pending"), LabelsConfig(), PerformanceConfig()))
    return live, LocalState(StateConfig(dir=str(tmp_path), checkpoint_interval_seconds=3600), live, counters)


def apply_local(live: LiveModels, backend: LocalState, result: DecodeResult) -> None:
    backend.commit(result, lambda r, p: live.apply(r, p))


def test_local_recovery_is_the_state_that_was_acknowledged_and_a_failed_checkpoint_gives_back(tmp_path: Path) -> None:
    live, backend = local(tmp_path)
    live.references.open()
    backend.open()
    for t in range(6):
        apply_local(live, backend, DecodeResult([rows("m", t, ids=[f"r{t}-{i}" for i in range(10)])]))
    backend.checkpoint()
    # A checkpoint that cannot be written gives what it took back: the next one writes it.
    real = backend.journal.checkpoint
    written: list[int] = []

    def failing(checkpoint) -> None:
        raise StorageError("checkpoint", OSError(28, "No space left on device"))

    backend.journal.checkpoint = failing  # type: ignore[method-assign]
    apply_local(live, backend, DecodeResult([rows("m", 6)]))
    with pytest.raises(StorageError):
        backend.checkpoint()
    assert backend.health.readiness()[0]  # the journal still writes: ready
    assert not backend.health.healthy()

    def spy(checkpoint) -> None:
        written.append(len(checkpoint.window_upserts))
        real(checkpoint)

    backend.journal.checkpoint = spy  # type: ignore[method-assign]
    backend.checkpoint()
    assert written and written[0] >= 1 and backend.health.healthy()
    apply_local(live, backend, DecodeResult([], labels=[labels("m", ["r5-1", "r5-2"], 7)]))  # journaled only
    before = {k: {s: w.rows for s, w in wp.windows.items()} for k, wp in live.views().items()}
    before_labels = live.partition(0).labels.totals.copy()
    backend.journal.close()  # as kill -9 leaves it: no final checkpoint
    again, backend2 = local(tmp_path)
    again.references.open()
    backend2.open()
    try:
        assert {k: {s: w.rows for s, w in wp.windows.items()} for k, wp in again.views().items()} == before
        assert again.partition(0).labels.totals == before_labels
    finally:
        backend2.shutdown()


def test_performance_windows_are_archived_and_a_late_label_counts_once_in_its_window_across_a_crash(
        tmp_path: Path) -> None:
    """Issue 43: a performance window that left the horizon was dropped, and a label for it afterwards moved nothing
    anyone could read. Now the window is archived, and a later label is a delta merged into it, written in the same
    checkpoint as the join state that marks it joined: after a crash the journal replays it, once."""
    from otel_ml.read.archive import open_read_only
    from otel_ml.read.performance import archived_windows, merged

    def backend_at(path: Path) -> tuple[LiveModels, LocalState]:
        counters = Counters()
        perf = PerformanceConfig(window_seconds=1, horizon_seconds=2)
        live = LiveModels(LiveConfig(windows=WINDOWS, keep_evicted=True), ReferenceStore(None, str(path)), counters,
                          OwnViews(), labels=lambda p: GroundTruth(str(path / "pending"), LabelsConfig(), perf,
                                                                   archives=True))
        backend = LocalState(StateConfig(dir=str(path), checkpoint_interval_seconds=3600), live, counters)
        live.references.open()
        backend.open()
        return live, backend

    def archived() -> tuple[int, int]:
        conn = open_read_only(tmp_path)
        try:
            windows = archived_windows(conn, "m", "", T0, T0 + S)
        finally:
            conn.close()
        prof = merged(windows)
        return (prof.predictions, prof.labeled) if prof is not None else (0, 0)

    def advance(live: LiveModels) -> None:
        with live.lock:
            live.partition(0).labels.advance()

    live, backend = backend_at(tmp_path)
    ids = [f"r{i}" for i in range(10)]
    apply_local(live, backend, DecodeResult([rows("m", 0, ids=ids)]))
    apply_local(live, backend, DecodeResult([rows("m", 10, ids=["later"])]))  # the clock leaves window 0 behind
    advance(live)
    backend.checkpoint()
    assert archived() == (10, 0)  # archived whole, no label yet
    assert all(w[0] != T0 for w in live.performance_windows("m", ""))  # memory holds only the horizon now
    apply_local(live, backend, DecodeResult([], labels=[labels("m", ids[:5], 11)]))
    mid = [w for w in live.performance_windows("m", "") if w[0] == T0]  # read before the checkpoint: the delta
    assert len(mid) == 1 and mid[0][2].labeled == 5
    backend.checkpoint()
    assert archived() == (10, 5)
    apply_local(live, backend, DecodeResult([], labels=[labels("m", ids[3:8], 12)]))  # 3 and 4 again: duplicates
    backend.journal.close()  # as kill -9 leaves it: no final checkpoint
    again, backend2 = backend_at(tmp_path)
    try:
        advance(again)
        backend2.checkpoint()
        assert archived() == (10, 8)  # 5, then 5..7 replayed from the journal: each label once
        assert again.partition(0).labels.totals[("m", "", "duplicate")] == 2
    finally:
        backend2.shutdown()


def shared_replica(tmp_path: Path, owned: set[int], partitions: int = 2) -> LiveModels:
    ownership = Ownership(partitions=partitions, owned=owned)
    cfg = LiveConfig(windows=WINDOWS)
    return LiveModels(cfg, ReferenceStore(None, str(tmp_path), pinned_files=False), Counters(), MergedViews(ownership),
                      labels=lambda p: GroundTruth(str(tmp_path / "pending" / f"p{p}"), LabelsConfig(),
                                                   PerformanceConfig()),
                      routing=lambda ids: (ids % np.uint64(partitions)).astype(np.int64))


def message(partition: int, offset: int, result: DecodeResult) -> DecodeResult:
    return dataclasses.replace(result, offsets=[("t", partition, offset)])


def apply_shared(live: LiveModels, partition: int, offset: int, result: DecodeResult) -> None:
    with live.lock:
        live.apply(result, partition)
        state = live.partition(partition)
        state.offset = max(state.offset, offset)


def deliver_outboxes(live: LiveModels, to: LiveModels, offsets: dict[int, int]) -> None:
    """What a publication sends to other partitions arrives there as messages (here: applied in process)."""
    for state in live.parts.values():
        for q, out in state.outbox.items():
            offsets[q] = offsets.get(q, 0) + 1
            apply_shared(to, q, offsets[q], DecodeResult.from_bytes(out.to_bytes()))
        state.outbox = {}


def test_a_partition_taken_over_from_its_records_continues_exactly_and_labels_meet_their_predictions(
        tmp_path: Path) -> None:
    a = shared_replica(tmp_path / "a", {0, 1})
    ids = [f"p{i}" for i in range(48)]
    offsets: dict[int, int] = {}
    for t in range(6):  # predictions with ids come in by both partitions, labels by partition 0
        for p in (0, 1):
            offsets[p] = offsets.get(p, 0) + 1
            apply_shared(a, p, offsets[p], DecodeResult([rows("m", t, 4, ids[p * 24 + t * 4:][:4], seed=t * 2 + p)]))
    offsets[0] += 1
    apply_shared(a, 0, offsets[0], DecodeResult([], labels=[labels("m", ids[:24], 6)]))
    assert a.partition(0).outbox or a.partition(1).outbox  # ids hashing to the other partition: sent there
    deliver_outboxes(a, a, offsets)
    with a.lock:
        a.count_labels()
        view = MergedViews.merged(a, ("m", ""))
    joined = sum(n for (_m, _v, r), n in (a.partition(0).labels.totals + a.partition(1).labels.totals).items()
                 if r == "applied")
    assert joined == 24  # every label met its prediction, in the partition of its id

    # Partition 1's state as its owner publishes it; a failed publication gives everything back.
    with a.lock:
        records, taken = records_of.take_records(a.partition(1))
        label_records, label_taken, _pending = records_of.take_label_records(a.partition(1), set())
        records_of.give_back(a.partition(1), taken)
        records_of.give_back_labels(a.partition(1), label_taken)
        again, _ = records_of.take_records(a.partition(1))
        label_again, _, _pending = records_of.take_label_records(a.partition(1), set())
    windows = {tuple(k) for k, v in records if k[0] == "w"}
    assert windows and windows == {tuple(k) for k, v in again if k[0] == "w"}
    assert {tuple(k) for k, _ in label_records if k[0] == "gp"} == {tuple(k) for k, _ in label_again if k[0] == "gp"}

    # Replica b takes partition 1 over from those records alone.
    b = shared_replica(tmp_path / "b", {1})
    with b.lock:
        records_of.apply_records(b, 1, again)
        losses = records_of.restore_labels(b.partition(1), label_again + again, tmp_path / "b")
    assert losses == []
    assert b.partition(1).offset == a.partition(1).offset
    assert b.partition(1).labels.totals == a.partition(1).labels.totals
    # Both go on with the same next message of partition 1: the same state.
    for live in (a, b):
        apply_shared(live, 1, offsets[1] + 1, DecodeResult([rows("m", 7, 4, seed=99)]))
    assert {s: w.rows for s, w in b.partition(1).models["m", ""].windows.items()} == \
        {s: w.rows for s, w in a.partition(1).models["m", ""].windows.items()}
    assert view is not None and view.predictions == 6 * 8


def test_other_partitions_windows_kept_on_disk_merge_as_if_held(tmp_path: Path) -> None:
    """Memory scales out: a replica exporting a model holds the other partitions' windows of it on disk
    (state/copies.py); its merged view equals that of a replica holding every partition in memory, and a window a
    later publication changed or deleted is merged again."""
    from otel_ml.core.live import exporting_partition
    from otel_ml.state.copies import COPIES_FILE, WindowCopies

    model = next(f"m{i}" for i in range(100) if exporting_partition(f"m{i}", 2) == 0)
    whole = shared_replica(tmp_path / "whole", {0, 1})
    for t in range(4):
        for p in (0, 1):
            apply_shared(whole, p, t + 1, DecodeResult([rows(model, t, 5 + p, seed=t * 2 + p)]))
    with whole.lock:
        records, _ = records_of.take_records(whole.partition(1))
        expected = MergedViews.merged(whole, (model, ""))

    exporter = shared_replica(tmp_path / "exporter", {0})
    copies = WindowCopies(tmp_path / COPIES_FILE)
    for t in range(4):
        apply_shared(exporter, 0, t + 1, DecodeResult([rows(model, t, 5, seed=t * 2)]))
    with exporter.lock:
        records_of.apply_records(exporter, 1, records, copies=copies)
        got = MergedViews.merged(exporter, (model, ""), others=copies.windows)
    assert exporter.partition(1).models[model, ""].windows == {}  # nothing of partition 1's windows in memory
    assert expected is not None and got is not None
    assert {s: w.rows for s, w in got.windows.items()} == {s: w.rows for s, w in expected.windows.items()}
    assert got.predictions == expected.predictions == 4 * 11

    # Partition 1's owner adds rows to its newest window, a reference comes and the oldest window leaves.
    reference = expected.current()
    for live in (whole, exporter):
        with live.lock:
            live.adopt_reference(reference, T0 + S)
    apply_shared(whole, 1, 5, DecodeResult([rows(model, 4, 7, seed=50)]))
    apply_shared(whole, 0, 5, DecodeResult([rows(model, 4, 5, seed=51)]))
    with whole.lock:
        for p in (0, 1):
            whole.partition(p).models[model, ""].evict()
        later, _ = records_of.take_records(whole.partition(1))
        expected = MergedViews.merged(whole, (model, ""))
    assert any(k[0] == "w" and v is None for k, v in later)  # the oldest window's deletion
    apply_shared(exporter, 0, 5, DecodeResult([rows(model, 4, 5, seed=51)]))
    with exporter.lock:
        exporter.partition(0).models[model, ""].evict()
        records_of.apply_records(exporter, 1, later, copies=copies)
        got = MergedViews.merged(exporter, (model, ""), others=copies.windows)
    assert expected is not None and got is not None
    assert {s: w.rows for s, w in got.windows.items()} == {s: w.rows for s, w in expected.windows.items()}


def test_shared_mode_publishes_archived_performance_once_and_every_replica_archives_it(tmp_path: Path) -> None:
    """Issue 43 in shared Kafka mode: the owner of a partition publishes the performance windows that left its
    horizon and the deltas of later labels as archive records; every replica merges them into its archive once per
    publication, and the next publication tombstones them."""
    from otel_ml.read.archive import open_read_only
    from otel_ml.read.performance import archived_windows, merged
    from otel_ml.state.archive import ArchiveRow, ArchiveWriter

    ownership = Ownership(partitions=1, owned={0})
    perf = PerformanceConfig(window_seconds=1, horizon_seconds=2)
    live = LiveModels(LiveConfig(windows=WINDOWS), ReferenceStore(None, str(tmp_path), pinned_files=False),
                      Counters(), MergedViews(ownership),
                      labels=lambda p: GroundTruth(str(tmp_path / "pending" / f"p{p}"), LabelsConfig(), perf),
                      routing=lambda ids: np.zeros(len(ids), np.int64))
    ids = [f"r{i}" for i in range(10)]
    apply_shared(live, 0, 1, DecodeResult([rows("m", 0, ids=ids)]))
    live.partition(0).labels.archives = True  # as SharedState._take_over sets it for an owned partition
    apply_shared(live, 0, 2, DecodeResult([rows("m", 10, ids=["later"])]))
    (tmp_path / "replica").mkdir()
    writer = ArchiveWriter(str(tmp_path / "replica"))

    def publish(offset: int) -> list:
        with live.lock:
            live.partition(0).labels.advance()
            records, _taken, _pending = records_of.take_label_records(live.partition(0), set())
        archive = [(k, v) for k, v in records if k[0] == "ga"]
        assert writer.insert_published(0, offset, [], [ArchiveRow(k[1], k[2], k[3], k[4], "window", v)
                                                        for k, v in archive if v is not None])
        return archive

    first = publish(100)
    assert [k[:4] for k, v in first if v is not None] == [["ga", "m", "", T0]]
    apply_shared(live, 0, 3, DecodeResult([], labels=[labels("m", ids[:6], 11)]))
    second = publish(101)
    assert [k for k, v in second if v is None] == [k for k, v in first if v is not None]  # tombstoned
    assert not writer.insert_published(0, 101, [], [])  # a publication read again adds nothing
    writer.close()
    conn = open_read_only(tmp_path / "replica")
    try:
        prof = merged(archived_windows(conn, "m", "", T0, T0 + S))
    finally:
        conn.close()
    assert prof is not None and (prof.predictions, prof.labeled) == (10, 6)
