"""A partition's state as changelog records (shared Kafka mode): what its owner publishes, and how a replica that
does not own it (or takes it over) applies what was published.

A partition's state is always the result of a *prefix* of that partition's messages, up to its ``offset``
(otel_ml/core/live.py), so whoever takes a partition over continues from the state it holds (its own, or the
latest one its previous owner published), never from a mix. Records (key, value): ``["m", model, version]`` →
the window set's ``to_state()`` (``None``: the set was released), ``["w", model, version, start]`` → one window's
``ModelProfile.to_json()`` (``None``: deleted), and last ``["p"]`` → ``{"offset", "caught_up", "lifecycle"}``,
which closes a publication.

The partition's ground truth (otel_ml/labels/): ``["gp", model, version, start]`` → a performance window,
``["gt"]`` → the labels ever joined or not per model (both read by every replica: the exporting one totals them),
``["gs", file]`` → a pending segment or flags file as written (``None``: deleted) and ``["gm"]`` → the pending
store's state naming them: only the replica taking the partition over reads those (``restore_labels``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from otel_ml.core.live import LiveModels, PartitionState
from otel_ml.decode.batch import DecodeResult
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.performance import PerformanceProfile
from otel_ml.profile.window import WindowChanges, WindowedProfile
from otel_ml.sealed import opened, seal
from otel_ml.state.copies import WindowCopies

Record = tuple[list, bytes | None]
LABEL_FILES = ("gs", "gm")
"""Records only a takeover reads (the pending store's files and state): the changelog's reader skips them."""
Taken = tuple[list[tuple[WindowedProfile, WindowChanges]], list[WindowChanges], list[list], list[Record]]
"""What a publication took from a partition: (window sets with their changes, released sets' last changes, the
archive keys of the publication before, the archived windows)."""


def encode_key(key: list) -> bytes:
    return json.dumps(key, separators=(",", ":")).encode()


def take_records(state: PartitionState) -> tuple[list[Record], Taken]:
    """What changed in the partition since its last publication, as records closed by its offset record; and
    what was taken, to ``give_back`` if they could not be published."""
    # The windows archived at the last publication were read by every replica then: compacted away now.
    records: list[Record] = [(key, None) for key in state.archived]
    records += state.unarchived  # windows a failed publication held
    state.unarchived = []
    released, state.released = state.released, []
    for changes in released:
        records += [(["w", changes.model, changes.version, s], None) for s in sorted(changes.removed)]
        records.append((["m", changes.model, changes.version], None))
        records += _archived(changes)
    taken = []
    for (model, version), wp in state.models.items():
        changes = wp.take_changes()
        records += _archived(changes)
        if not (changes.changed or changes.removed):
            continue
        taken.append((wp, changes))
        meta = wp.to_state()
        meta.pop("pinned_reference", None)  # a partial set pins nothing; the merge's reference has its record
        records.append((["m", model, version], json.dumps(meta).encode()))
        records += [(["w", model, version, s], v) for s, v in changes.changed.items()]
        records += [(["w", model, version, s], None) for s in changes.removed]
    records.append((["p"], json.dumps({"offset": state.offset, "caught_up": state.caught_up,
                                       "lifecycle": state.lifecycle.to_state(),
                                       "clock_ns": partition_clock(state)}).encode()))
    archived = [(k, v) for k, v in records if k[0] == "a" and v is not None]
    before, state.archived = state.archived, [k for k, _ in archived]
    return records, (taken, released, before, archived)


def _archived(changes: WindowChanges) -> list[Record]:
    """The windows that left a window set's memory, for every replica's archive."""
    return [(["a", changes.model, changes.version, start], seal(window.to_json().encode()))
            for start, window in changes.evicted]


def give_back(state: PartitionState, taken: Taken) -> None:
    """A publication failed: what it held is published next time."""
    sets, released, before, archived = taken
    for wp, changes in sets:
        wp.restore_changes(changes)
    state.released[:0] = released
    state.archived = before
    state.unarchived[:0] = archived


def take_label_records(state: PartitionState, published: set[str]) -> tuple[list[Record], tuple, dict]:
    """The partition's ground truth as records: performance windows changed since the last publication, its
    totals, the pending files not published yet (tombstones for those gone) and the pending store's state. Returns
    (records, the performance changes taken (for ``give_back_labels``), the pending state written)."""
    labels = state.labels
    if labels is None:
        return [], (), {}
    full = labels.state()  # seals what waits in memory into files the state names
    pending = full["pending"]
    changes = labels.take_changes()
    records: list[Record] = [(["gp", m, v, start], blob) for m, v, start, blob in changes.upserts]
    records += [(["gp", m, v, start], None) for m, v, start in changes.deletes]
    # Archive rows (windows that left the horizon, deltas of archived windows): every replica merges them into its
    # archive when it reads this publication, so the next publication tombstones them. The offset and the index
    # make each key new.
    records += [(key, None) for key in labels.archive_keys]
    keys = [["ga", m, v, s, e, state.offset, i] for i, (m, v, s, e, _) in enumerate(changes.archived)]
    records += [(key, row[4]) for key, row in zip(keys, changes.archived)]
    before, labels.archive_keys = labels.archive_keys, keys
    records.append((["gt"], json.dumps([[*k, n] for k, n in labels.totals.items()]).encode()))
    records.append((["ge"], json.dumps(full.get("evaluation_references", [])).encode()))  # LLM models' references
    named = {f"{seg['name']}.seg" for seg in pending["segments"]} | {
        seg["flags"] for seg in pending["segments"] if seg["flags"]}
    directory = labels.pending.dir
    records += [(["gs", name], (directory / name).read_bytes()) for name in sorted(named - published)]
    records += [(["gs", name], None) for name in sorted(published - named)]
    records.append((["gm"], json.dumps(pending).encode()))
    return records, (changes, before), pending


def give_back_labels(state: PartitionState, taken: tuple) -> None:
    if state.labels is not None and taken:
        changes, before = taken
        state.labels.give_back(changes)
        state.labels.archive_keys = before


def restore_labels(state: PartitionState, records: list[Record], quarantine_dir: Path) -> list:
    """A partition's ground truth from every record its changelog partition holds (read from its start when the
    partition is taken over): the pending files written to disk, the store opened on them. Returns the losses."""
    labels = state.labels
    if labels is None:
        return []
    files: dict[str, bytes | None] = {}
    meta: bytes | None = None
    windows: dict[tuple[str, str, int], bytes | None] = {}
    totals: bytes | None = None
    evaluations: bytes | None = None
    for key, value in records:
        if key[0] == "gs":
            files[key[1]] = value
        elif key[0] == "gm":
            meta = value
        elif key[0] == "gp":
            windows[(key[1], key[2], int(key[3]))] = value
        elif key[0] == "gt":
            totals = value
        elif key[0] == "ge":
            evaluations = value
    directory = labels.pending.dir
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if data is not None:
            (directory / name).write_bytes(data)
    losses = labels.restore({**({"pending": json.loads(meta)} if meta is not None else {}),
                             "evaluation_references": json.loads(evaluations) if evaluations is not None else []},
                            [(m, v, s, blob) for (m, v, s), blob in windows.items() if blob is not None],
                            quarantine_dir)
    labels.totals.clear()
    if totals is not None:
        labels.totals.update({(m, v, r): n for m, v, r, n in json.loads(totals)})
    return losses


def partition_clock(state: PartitionState) -> int | None:
    """The newest event of a partition (what the topic's watermark needs of it)."""
    clocks = [wp.newest_event_ns for wp in state.models.values() if wp.newest_event_ns is not None]
    return max(clocks) if clocks else state.clock_ns


def apply_records(live: LiveModels, partition: int, records: list[Record],
                  keep: Callable[[str], bool] = lambda model: True, copies: WindowCopies | None = None) -> None:
    """One publication of ``partition`` from the changelog (or all of them, replayed from its start), applied as
    one: meta records first, then windows, then the offset; only of the models ``keep`` says (a replica holds
    another's partition for the models it exports, not every model: memory scales out). With ``copies``, the
    windows go there (on disk) and the window sets hold only what describes them. Call under the live models'
    lock."""
    state = live.partition(partition)
    touched: set[tuple[str, str]] = set()
    for key, value in records:
        if key[0] != "m" or not keep(key[1]):
            continue
        mv = (key[1], key[2])
        if value is None:
            state.models.pop(mv, None)
            if copies is not None:
                copies.drop(partition, mv)
            continue
        meta = json.loads(value)
        wp = state.models.get(mv)
        if wp is None:
            wp = state.models[mv] = live.new_window_set(key[1], key[2])
            wp.keep_evicted = False  # a copy: its owner archives what leaves it
        wp.kinds.update(meta["kinds"])
        wp.first_window_ns, wp.newest_event_ns = meta["first_window_ns"], meta["newest_event_ns"]
        wp.current_start_ns = meta["current_start_ns"] if wp.current_start_ns is None else max(
            wp.current_start_ns, meta["current_start_ns"] or 0)
        wp.predictions = float(meta.get("predictions", 0.0))
    for key, value in records:
        if key[0] != "w" or not keep(key[1]):
            continue
        wp = state.models.get((key[1], key[2]))
        if wp is None:  # its model's record was deleted after this window's
            continue
        if copies is not None:
            copies.put(partition, key[1], key[2], int(key[3]), value)
            continue
        if value is None:
            wp.windows.pop(int(key[3]), None)
        else:
            wp.windows[int(key[3])] = ModelProfile.from_json(value)
        touched.add((key[1], key[2]))
    for mv in touched:
        wp = state.models[mv]
        wp.adopt_window_grids()
        wp.take_changes()  # what came from the changelog is published already
    if state.labels is not None:  # performance windows and totals: the exporting replica totals every partition's
        for key, value in records:
            if key[0] == "gp" and keep(key[1]):
                start = int(key[3])
                if value is None:
                    state.labels.windows.get((key[1], key[2]), {}).pop(start, None)
                else:
                    state.labels.windows.setdefault((key[1], key[2]), {})[start] = PerformanceProfile.from_dict(
                        json.loads(opened(value, "performance window")))
            elif key[0] == "gt" and value is not None:
                state.labels.totals.clear()
                state.labels.totals.update({(m, v, r): n for m, v, r, n in json.loads(value)})
    for key, value in records:
        if key[0] == "p" and value is not None:
            closing = json.loads(value)
            state.offset, state.caught_up = int(closing["offset"]), bool(closing.get("caught_up", False))
            state.clock_ns = closing.get("clock_ns")
            if "lifecycle" in closing:
                state.lifecycle.restore(closing["lifecycle"])


def split_for_partitions(result: DecodeResult, partitions: int) -> dict[int, DecodeResult]:
    """A request an OTLP receiver took, as the decoded records to write to the input topic: rows with a prediction
    id (and labels) to the partition their id hashes to, the other rows to any (key -1: the producer chooses). The
    request's counts go with one record only. A batch span whose rows go to several partitions keeps its
    span-level data (latency, status, sequence) with its first row's.

    >>> import numpy as np
    >>> from otel_ml.decode.batch import ColumnarBatch
    >>> b = ColumnarBatch("m", "", 3, np.zeros(3, np.int64), np.ones(3), numeric={"x": np.arange(3.0)},
    ...                   span_end_ns=np.zeros(1, np.int64), span_duration_s=np.zeros(1), span_error=np.zeros(1, bool),
    ...                   span_rows=np.array([3]), span_stream=np.zeros(1, np.int64), span_seq=np.full(1, -1),
    ...                   prediction_id=np.array([0, 4, 7], np.uint64))
    >>> parts = split_for_partitions(DecodeResult([b], spans_received=1, spans_accepted=1), 3)
    >>> {q: (p.batches[0].numeric["x"].tolist(), p.spans_received) for q, p in sorted(parts.items())}
    {-1: ([0.0], 1), 1: ([1.0, 2.0], 0)}
    """
    out: dict[int, DecodeResult] = {}

    def part(q: int) -> DecodeResult:
        if q not in out:
            out[q] = DecodeResult(batches=[], received_ns=result.received_ns)
        return out[q]

    for batch in result.batches:
        ids = batch.prediction_id
        dest = np.full(batch.n_rows, -1, np.int64)  # no id: any partition
        if len(ids):
            has = ids != 0
            dest[has] = (ids[has] % np.uint64(partitions)).astype(np.int64)
        span_rows = batch.span_rows if len(batch.span_rows) == len(batch.span_end_ns) else np.ones(
            len(batch.span_end_ns), np.int64)
        first = np.concatenate([[0], np.cumsum(span_rows)[:-1]]).astype(np.int64)
        span_dest = dest[np.minimum(first, max(batch.n_rows - 1, 0))] if batch.n_rows else np.full(len(first), -1)
        invalid_to = int(span_dest[0]) if len(span_dest) else -1  # values not positioned: with the first span
        for q in np.unique(np.concatenate([dest, span_dest])).tolist():
            sub = batch.select(dest == q, span_dest == q)
            sub.invalid = batch.invalid if q == invalid_to else Counter()
            part(q).batches.append(sub)
    for labels in result.labels:
        dest = (labels.prediction_id % np.uint64(partitions)).astype(np.int64)
        for q in np.unique(dest).tolist():
            rows = dest == q
            part(q).labels.append(labels.select(rows))
    counted = part(next(iter(out), -1))
    counted.spans_received, counted.spans_accepted = result.spans_received, result.spans_accepted
    counted.spans_ignored, counted.rejected, counted.examples = result.spans_ignored, result.rejected, result.examples
    return out
