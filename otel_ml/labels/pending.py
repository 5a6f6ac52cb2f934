"""Where predictions wait for their labels, and labels for their predictions: on disk in the state dir, sorted by
id hash, bounded in rows and so in bytes.

Every prediction that carries an id is one 36-byte row (id hash, model/version/segment code, event time, predicted value
or class, positive-class probability); every label that comes before its prediction ("early") one 32-byte row
(id hash, model/version code, value, class code, time). New rows collect in memory until a segment is sealed:
written sorted by id as one file of columns, which lookups search with a binary search on a memory map, so waiting
rows cost disk, not RAM (one flag byte a row stays in memory: a prediction labelled, an early label gone, so a
repeated label is recognised and counted once).

Bounds that hold: segments are at most 1% of ``labels.max_pending`` (``max_early``) rows and kept in arrival
order, so evicting the oldest whole segments keeps the waiting predictions within 1% of the limit; the ids of
rows that left (expired, evicted) are kept so that a late label is counted as such rather than ``unknown``, at
most ``max_pending`` of them and for one ttl. Clocks are per model: one model's (or one client's) timestamps
never expire another's predictions.

Durability: segment and flags files are immutable and sealed (otel_ml/sealed.py: length and CRC); ``state()``
names them, with their checksums, for the checkpoint to commit with the rest of the state; ``restore`` opens
exactly those, verifies each, and reports what it had to drop (``Loss``) instead of failing: a damaged
prediction segment loses its rows (their labels will be ``unknown``), damaged flags make their segment's rows
``lost`` (a label for them might be one applied already, so none is applied), a damaged early segment loses its
labels. Rows added after the checkpoint come back from the journal replay, so nothing is applied twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from otel_ml.decode.batch import LabelBatch
from otel_ml.labels.segments import EARLY, RowCodes, Segment, SegmentFiles, concat_rows, width_of
from otel_ml.labels.spans import PredictionSpans
from otel_ml.sealed import Loss

log = logging.getLogger(__name__)

SEAL_ROWS = 262_144
"""Rows kept in memory at most before they are written as a segment (also written at every checkpoint)."""


@dataclass(frozen=True)
class LabelsConfig:
    """YAML ``labels``: how long predictions wait for their ground truth, and how many."""

    ttl_seconds: float = 7 * 86_400.0
    """A prediction waits this long (event time) for its label; a later label is counted ``expired``."""
    max_pending: int = 50_000_000
    """Waiting predictions kept (36 bytes each on disk, 1 in memory); beyond, the oldest leave (``evicted``)."""
    sample_ratio: float = 1.0
    """Share of predictions (by a hash of their id) kept for the join; labels of the rest are ``not_sampled``."""
    early_ttl_seconds: float = 3_600.0
    """A label arriving before its prediction waits this long before it is ``unknown``."""
    max_early: int = 1_000_000
    """Early labels kept waiting at most (32 bytes each on disk); beyond, ``early_overflow``."""


@dataclass
class Matched:
    """Labels that found their prediction: the label rows and the prediction rows, aligned."""

    label_index: np.ndarray
    rows: dict[str, np.ndarray]


@dataclass
class JoinResult:
    matched: list[tuple[LabelBatch, Matched]] = field(default_factory=list)
    unmatched: dict[str, int] = field(default_factory=dict)
    """Labels not applied, by reason: duplicate, expired, evicted, lost, unknown (early labels that timed out),
    not_sampled, early_overflow."""
    unmatched_at: dict[str, np.ndarray] = field(default_factory=dict)
    """The positions in the label batch of those labels, by reason (their examples: labels/diagnosis.py)."""
    waiting_at: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    """Positions of the labels that found no prediction yet and wait for one."""


class PendingPredictions:
    """The waiting predictions and early labels of every model, in ``<state dir>/pending``."""

    def __init__(self, directory: str | Path, ttl_ns: int, max_pending: int, early_ttl_ns: int,
                 max_early: int = 1_000_000, sample_ratio: float = 1.0, max_skew_ns: int = 3600 * 10**9) -> None:
        self.files = SegmentFiles(directory)
        self.ttl_ns, self.max_pending, self.early_ttl_ns = ttl_ns, max_pending, early_ttl_ns
        self.max_early = max_early
        self.max_skew_ns = max_skew_ns
        self.cap = max(64, max_pending // 100)
        """Rows per prediction or gone segment at most: evicting one keeps the bound within 1%."""
        self.early_cap = max(64, max_early // 100)
        self.sample_below = np.uint64(min(int(sample_ratio * 2.0**64), 2**64 - 1))
        self.sampled = sample_ratio < 1.0
        self.codes = RowCodes()
        self._buf: list[dict[str, np.ndarray]] = []
        self._buf_rows = 0
        self._buf_index: dict[int, int] = {}
        self._buf_labeled: list[int] = []
        self._early_buf: list[dict[str, np.ndarray]] = []
        self.clocks: dict[str, int] = {}
        """Per model, the newest event time of its predictions and labels: its own ttl and early waits run on it, so
        one model's (or one client's) timestamps cannot expire another's (decode bounds each by the clock skew)."""
        self.with_ids: dict[str, set[str]] = {}  # model → versions whose predictions had ids: whom labels can join
        self.spans = PredictionSpans(self.files, max(4096, max_pending // 10))
        """Sampled spans of waiting predictions: where a wrong prediction's trace is (labels/spans.py)."""

    @property
    def dir(self) -> Path:
        return self.files.dir

    @property
    def segments(self) -> list[Segment]:
        """Every segment, in the order it was written (oldest first)."""
        return self.files.segments

    # --- clocks -----------------------------------------------------------------------------------------
    @property
    def clock_ns(self) -> int:
        """The newest event time of any model."""
        return max(self.clocks.values(), default=0)

    def clock(self, model: str) -> int:
        return self.clocks.get(model, 0)

    def observe(self, model: str, time_ns: int) -> None:
        """``model``'s predictions or labels reached ``time_ns`` (event time)."""
        if time_ns > self.clocks.get(model, 0):
            self.clocks[model] = time_ns

    def _key_clocks(self, codes: np.ndarray) -> np.ndarray:
        """The clock of each row's model, from its key code."""
        per_key = np.array([self.clock(model) for model, _, _ in self.codes.keys] or [0], dtype=np.int64)
        return per_key[codes]

    def _models_newest(self, keys: np.ndarray, times: np.ndarray) -> dict[str, int]:
        """Per model, the newest time among rows (``keys``: their key codes)."""
        out: dict[str, int] = {}
        for code in np.unique(keys).tolist():
            model = self.codes.keys[code][0]
            out[model] = max(out.get(model, 0), int(times[keys == code].max()))
        return out

    def _expired(self, seg: Segment, ttl_ns: int) -> bool:
        """Every model of the segment is past ``ttl_ns`` of its own clock."""
        return bool(seg.models) and all(t < self.clock(m) - ttl_ns for m, t in seg.models.items())

    def keep(self, ids: np.ndarray) -> np.ndarray:
        """Which ids are kept (``labels.sample_ratio``, by hash: a label is kept exactly when its prediction was)."""
        return (ids != 0) & (ids < self.sample_below) if self.sampled else ids != 0

    # --- predictions -------------------------------------------------------------------------------------
    def add(self, model: str, version: str, ids: np.ndarray, time_ns: np.ndarray, pred: np.ndarray, cls: np.ndarray,
            prob: np.ndarray, by_class: tuple[list[str], np.ndarray] | None = None,
            segments: np.ndarray | None = None, span_ids: np.ndarray | None = None) -> int:
        """Keep predictions (rows with a kept id); returns how many. Labels waiting for them are then due:
        ``take_early`` returns them. ``by_class``: a multiclass model's classes and (rows × classes) probabilities;
        ``segments``: each row's segment label (a segmented model); ``span_ids``: each row's span (a sample is kept:
        ``spans``)."""
        keep = self.keep(ids)
        n = int(keep.sum())
        if not n:
            return 0
        if not keep.all():
            ids, time_ns, pred, cls, prob = ids[keep], time_ns[keep], pred[keep], cls[keep], prob[keep]
            by_class = (by_class[0], by_class[1][keep]) if by_class is not None else None
            segments = segments[keep] if segments is not None else None
            span_ids = span_ids[keep] if span_ids is not None else None
        self.observe(model, int(time_ns.max()))
        self.with_ids.setdefault(model, set()).add(version)
        if span_ids is not None:
            self.spans.add(model, ids, time_ns, span_ids)
        code = self.codes.key(model, version)
        if segments is None:
            keys = np.full(n, code, np.uint32)
        else:
            labels, which = np.unique(segments, return_inverse=True)
            keys = np.array([self.codes.key(model, version, str(s)) for s in labels], np.uint32)[which]
        rows = {"id": ids, "key": keys, "time": time_ns,
                "pred": pred, "cls": cls, "prob": prob.astype(np.float32)}
        if by_class is not None:
            rows["probs"] = self.codes.probability_columns(code, *by_class)
        start = self._buf_rows
        self._buf.append(rows)
        self._buf_index.update(zip(ids.tolist(), range(start, start + n)))
        self._buf_rows += n
        if self._buf_rows >= min(SEAL_ROWS, self.cap):
            try:
                self.seal()
            except OSError as e:  # a full disk: keep the rows in memory; the next checkpoint reports the failure
                log.warning("cannot write waiting predictions to %s (%s); kept in memory for now", self.dir, e)
        return n

    def pending_rows(self) -> int:
        """Waiting predictions (in memory and in segments)."""
        return self._buf_rows + sum(s.n for s in self.segments if s.kind == "pred")

    def early_rows(self) -> int:
        """Labels waiting for their prediction."""
        return sum(len(b["id"]) for b in self._early_buf) + sum(s.live for s in self.segments if s.kind == "early")

    def waiting(self) -> dict[str, tuple[int, int]]:
        """Rows waiting and the bytes their files take on disk, per kind (``predictions``, ``labels``): what the
        gauges export (an operator sizes disks by them)."""
        disk = self.files.disk_bytes_by_kind()
        return {"predictions": (self.pending_rows(), disk["predictions"]),
                "labels": (self.early_rows(), disk["labels"])}

    # --- early labels --------------------------------------------------------------------------------------
    def _add_early(self, lb: LabelBatch, mask: np.ndarray) -> None:
        n = int(mask.sum())
        text = lb.label[mask]
        label = np.full(n, -1, np.int32)
        has = text != ""
        if has.any():
            label[has] = self.codes.classes_of(text[has])
        self._early_buf.append({"id": lb.prediction_id[mask], "key": np.full(n, self.codes.key(lb.model, lb.version),
                                                                             np.uint32),
                                "value": lb.value[mask], "label": label, "time": lb.time_ns[mask]})
        if sum(len(b["id"]) for b in self._early_buf) >= min(SEAL_ROWS, self.early_cap):
            try:
                self._seal_early()
            except OSError as e:
                log.warning("cannot write early labels to %s (%s); kept in memory for now", self.dir, e)

    def take_early(self, ids: np.ndarray) -> list[LabelBatch]:
        """The waiting labels of ``ids`` (they stop waiting)."""
        parts = []
        for seg in self.segments:
            if seg.kind != "early" or not seg.n:
                continue
            sid = seg.cols["id"]
            # Every row of an id: one call's evaluation results wait as several rows of the same id.
            lo, hi = np.searchsorted(sid, ids, "left"), np.searchsorted(sid, ids, "right")
            found = hi > lo
            if not found.any():
                continue
            lo, hi = lo[found], hi[found]
            pos = np.repeat(hi - np.cumsum(hi - lo), hi - lo) + np.arange(int((hi - lo).sum()))
            hit = ~seg.flags[pos]
            if hit.any():
                rows = np.unique(pos[hit])
                seg.flags[rows] = True
                seg.dirty = True
                parts.append({c: np.asarray(seg.cols[c][rows]) for c in EARLY.names})
        for k, b in enumerate(self._early_buf):
            m = np.isin(b["id"], ids)
            if m.any():
                parts.append({c: v[m] for c, v in b.items()})
                self._early_buf[k] = {c: v[~m] for c, v in b.items()}
        return early_batches(self.codes, parts)

    def expire_early(self) -> list[LabelBatch]:
        """Drop early labels older than ``early_ttl`` of their model's clock (they are ``unknown``); returns them."""
        parts = []
        for seg in self.segments:
            if seg.kind != "early" or not seg.n:
                continue
            old = ~seg.flags & (np.asarray(seg.cols["time"]) < self._key_clocks(seg.cols["key"]) - self.early_ttl_ns)
            if old.any():
                seg.flags |= old
                seg.dirty = True
                parts.append({c: np.asarray(seg.cols[c][old]) for c in EARLY.names})
        for k, b in enumerate(self._early_buf):
            m = b["time"] < self._key_clocks(b["key"]) - self.early_ttl_ns
            if m.any():
                parts.append({c: v[m] for c, v in b.items()})
                self._early_buf[k] = {c: v[~m] for c, v in b.items()}
        return early_batches(self.codes, parts)

    # --- labels -------------------------------------------------------------------------------------------
    def join(self, labels: LabelBatch, now_ns: int | None = None, early: bool = True, mark: bool = True
             ) -> JoinResult:
        """Find each label's prediction and mark it labelled. Labels without one wait (``early``). ``mark=False``:
        find without marking, and never call a label a duplicate (an LLM call's evaluation results: one per
        evaluation)."""
        out = JoinResult()
        ids = labels.prediction_id
        now = max(self.clock(labels.model), now_ns or 0)
        sampled = self.keep(ids)
        if not sampled.all():
            out.unmatched["not_sampled"] = int((~sampled).sum())
        # 0: not found yet; 1: found; -1 duplicate; -2 expired; -3 evicted; -4 lost (state damaged); -9 not sampled
        status = np.where(sampled, 0, -9)
        parts: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []  # (label positions, their prediction rows)
        # Memory first (the newest predictions), then segments newest first.
        if self._buf_index:
            where, at_list = [], []
            for i in np.flatnonzero(status == 0).tolist():
                at = self._buf_index.get(int(ids[i]))
                if at is None:
                    continue
                if mark:
                    if at < len(self._buf_labeled) and self._buf_labeled[at]:
                        status[i] = -1
                        continue
                    self._mark_buffer(at)
                status[i] = 1
                where.append(i)
                at_list.append(at)
            if where:
                parts.append((np.array(where), _buffer_rows(self._buf, np.array(at_list))))
        for seg in reversed(self.segments):
            todo = np.flatnonzero(status == 0)
            if not len(todo):
                break
            if seg.kind in ("early", "spans") or not seg.n:
                continue
            sid = seg.cols["id"]
            pos = np.searchsorted(sid, ids[todo])
            hit = pos < seg.n
            hit[hit] = sid[pos[hit]] == ids[todo][hit]
            if not hit.any():
                continue
            which, at = todo[hit], pos[hit]
            if seg.kind == "gone":
                status[which] = {"expired": -2, "evicted": -3}.get(seg.reason, -4)
                continue
            dup = seg.flags[at] if mark else np.zeros(len(at), bool)
            status[which[dup]] = -1
            which, at = which[~dup], at[~dup]
            old = seg.cols["time"][at] < now - self.ttl_ns
            status[which[old]] = -2
            which, at = which[~old], at[~old]
            if len(which):
                if mark:
                    seg.flags[at] = True
                    seg.dirty = True
                status[which] = 1
                parts.append((which, {c: np.asarray(v[at]) for c, v in seg.cols.items()}))
        for code, reason in ((-1, "duplicate"), (-2, "expired"), (-3, "evicted"), (-4, "lost"), (-9, "not_sampled")):
            at = np.flatnonzero(status == code)
            if len(at):
                out.unmatched_at[reason] = at
                if code != -9:  # counted above
                    out.unmatched[reason] = out.unmatched.get(reason, 0) + len(at)
        if parts:
            idx = np.concatenate([w for w, _ in parts])
            rows = concat_rows([r for _, r in parts])
            out.matched.append((labels, Matched(idx, rows)))
        waiting = status == 0
        if waiting.any():
            if early:
                room = max(self.max_early - self.early_rows(), 0)
                wait = np.flatnonzero(waiting)
                if len(wait) > room:
                    out.unmatched["early_overflow"] = len(wait) - room
                    out.unmatched_at["early_overflow"] = wait[room:]
                    wait = wait[:room]
                out.waiting_at = wait
                if len(wait):
                    mask = np.zeros(len(ids), bool)
                    mask[wait] = True
                    self._add_early(labels, mask)
            else:
                out.unmatched["unknown"] = int(waiting.sum())
                out.unmatched_at["unknown"] = np.flatnonzero(waiting)
        return out

    def _mark_buffer(self, at: int) -> None:
        if len(self._buf_labeled) <= at:
            self._buf_labeled.extend([0] * (self._buf_rows - len(self._buf_labeled)))
        self._buf_labeled[at] = 1

    # --- segments -----------------------------------------------------------------------------------------
    def seal(self) -> None:
        """Write the rows in memory as sorted segments (at most ``cap`` rows each), then keep the bounds."""
        if self._buf_rows:
            labeled = np.zeros(self._buf_rows, bool)
            labeled[:len(self._buf_labeled)] = np.asarray(self._buf_labeled, bool)
            for cols, flags in _segments_of(self._buf, labeled, self.cap):
                self._add_segment("pred", cols, flags)
            self._buf, self._buf_rows, self._buf_index, self._buf_labeled = [], 0, {}, []
        self._seal_early()
        self.spans.seal()
        self._maintain()

    def _seal_early(self) -> None:
        parts = [b for b in self._early_buf if len(b["id"])]
        if parts:
            cols = {c: np.concatenate([b[c] for b in parts]) for c in EARLY.names}
            order = np.argsort(cols["id"], kind="stable")
            self._add_segment("early", {c: v[order] for c, v in cols.items()}, np.zeros(len(order), bool))
        self._early_buf = []

    def _add_segment(self, kind: str, cols: dict[str, np.ndarray], flags: np.ndarray) -> None:
        """Write new rows of ``kind`` as the newest segment."""
        times = cols.get("time")
        models = self._models_newest(cols["key"], times) if times is not None and len(times) else {}
        self.files.write(kind, cols, flags, "", models, self.clock_ns)

    def _maintain(self) -> None:
        """Expire, evict, merge: bounded rows of every kind, within 1%, and bounded time."""
        for seg in [s for s in self.segments if s.kind == "gone" and self._expired(s, self.ttl_ns)]:
            self.segments.remove(seg)  # a label that late is unknown
        for seg in [s for s in self.segments if s.kind == "pred" and self._expired(s, self.ttl_ns)]:
            self._forget(seg, "expired")
        preds = [s for s in self.segments if s.kind == "pred"]
        total = self.pending_rows()
        for seg in preds:  # oldest first
            if total <= self.max_pending:
                break
            self._forget(seg, "evicted")
            total -= seg.n
        gone = [s for s in self.segments if s.kind == "gone"]
        kept_ids = sum(s.n for s in gone)
        for seg in gone:  # the ids of rows that left: at most max_pending of them
            if kept_ids <= self.max_pending:
                break
            self.segments.remove(seg)
            kept_ids -= seg.n
        for seg in [s for s in self.segments if s.kind == "early"]:
            if seg.live == 0:
                self.segments.remove(seg)
            elif seg.live < seg.n // 2:  # mostly gone: rewritten with the live rows only
                live = ~seg.flags
                cols = {c: np.asarray(seg.cols[c][live]) for c in EARLY.names}
                self.files.replace([seg], "early", cols, np.zeros(int(live.sum()), bool), "",
                                   self._models_newest(cols["key"], cols["time"]), self.clock_ns)
        self.spans.maintain(lambda seg: self._expired(seg, self.ttl_ns))
        caps = {"early": self.early_cap, "spans": max(64, self.spans.max_rows // 100)}
        self.files.merge_adjacent(lambda kind: caps.get(kind, self.cap))

    def _forget(self, seg: Segment, reason: str) -> None:
        """A prediction segment's rows leave; their ids are kept in a gone segment in its place."""
        stamps = {m: self.clock(m) for m in seg.models}
        self.files.replace([seg], "gone", {"id": np.asarray(seg.cols["id"])}, np.zeros(0, bool), reason, stamps,
                           self.clock_ns)

    # --- durability ------------------------------------------------------------------------------------------
    def state(self) -> dict:
        """What a checkpoint commits: seal memory, write changed flags, name every file in use with its checksum."""
        self.seal()
        self.dir.mkdir(parents=True, exist_ok=True)
        segments = self.files.describe()
        return {"format": 2, "next": self.files.next, "clocks": self.clocks, "keys": self.codes.keys,
                "classes": self.codes.classes, "prob_classes": self.codes.prob_classes, "segments": segments,
                "truncated": sorted(self.codes.truncated),
                "with_ids": {m: sorted(v) for m, v in self.with_ids.items()}}

    def committed(self, state: dict) -> None:
        """After the checkpoint with ``state`` is written: delete files it no longer names."""
        self.files.delete_others(state)

    def restore(self, state: dict, quarantine_dir: Path | None = None) -> list[Loss]:
        """Open what a checkpoint named, verifying each file; delete everything else in the directory. Returns
        what could not be used (each damaged file moved to ``quarantine_dir``, when given)."""
        self.codes = RowCodes(state.get("keys", []), state.get("classes", []), state.get("prob_classes", {}),
                              state.get("truncated", []))
        self.with_ids = _with_ids(state, self.codes.keys)
        # No clock beyond the skew limit: a checkpoint from before per-model clocks may hold one poisoned by a
        # label stamped years ahead (its one clock then applies to every model, bounded).
        limit = time.time_ns() + self.max_skew_ns
        old = min(int(state.get("clock_ns", 0)), limit)
        clocks = state.get("clocks", {k[0]: old for k in self.codes.keys})
        self.clocks = {m: min(int(t), limit) for m, t in clocks.items()}
        self._buf, self._buf_rows, self._buf_index, self._buf_labeled = [], 0, {}, []
        self._early_buf = []
        self.spans.clear()
        if int(state.get("format", 1)) < 2:
            self.files.reopen({"next": state.get("next", 0)}, self.clock)
            if state.get("segments") or state.get("early_file"):
                return [Loss("pending", str(self.dir), sum(int(s["n"]) for s in state.get("segments", [])),
                             "written by an older otel-ml (unchecksummed files): the waiting predictions and "
                             "early labels of that version are not carried over; their labels will be unknown")]
            return []
        return self.files.reopen(state, self.clock, quarantine_dir)

    def disk_bytes(self) -> int:
        return self.files.disk_bytes()


def _buffer_rows(buf: list[dict[str, np.ndarray]], at: np.ndarray) -> dict[str, np.ndarray]:
    """Buffered prediction rows (``buf``) at positions ``at`` (in that order), gathered chunk by chunk."""
    starts = np.cumsum([0] + [len(b["id"]) for b in buf])
    chunk = np.searchsorted(starts, at, side="right") - 1
    parts, order = [], []
    for k in np.unique(chunk).tolist():
        sel = np.flatnonzero(chunk == k)
        parts.append({c: v[at[sel] - starts[k]] for c, v in buf[k].items()})
        order.append(sel)
    out = concat_rows(parts)
    back = np.empty(len(at), np.int64)
    back[np.concatenate(order)] = np.arange(len(at))
    return {c: v[back] for c, v in out.items()}


def _segments_of(parts: list[dict[str, np.ndarray]], labeled: np.ndarray, cap: int
                 ) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Buffered prediction rows (``parts``, their labelled flags in one array) as segments to write: rows of one
    width together (no model pays for another's class probabilities), at most ``cap`` each, in arrival order (the
    oldest first), each sorted by id."""
    at = np.cumsum([0] + [len(p["id"]) for p in parts])
    by_width: dict[int, list[int]] = {}
    for i, p in enumerate(parts):
        by_width.setdefault(width_of(p), []).append(i)
    for group in by_width.values():
        cols = concat_rows([parts[i] for i in group])
        flags = np.concatenate([labeled[at[i]:at[i + 1]] for i in group])
        for lo in range(0, len(flags), cap):
            part = {c: v[lo:lo + cap] for c, v in cols.items()}
            order = np.argsort(part["id"], kind="stable")
            yield {c: v[order] for c, v in part.items()}, flags[lo:lo + cap][order]


def _with_ids(state: dict, keys: list[tuple[str, str, str]]) -> dict[str, set[str]]:
    """A checkpoint's models and versions with ids; one from before they were recorded: those of its keys."""
    if "with_ids" in state:
        return {m: set(v) for m, v in state["with_ids"].items()}
    out: dict[str, set[str]] = {}
    for m, v, _ in keys:
        out.setdefault(m, set()).add(v)
    return out


def seen(pending: PendingPredictions, ids: np.ndarray) -> np.ndarray:
    """Whether a prediction with each id waits or waited in ``pending`` (labelled, or left: expired, evicted),
    changing nothing: what a diagnosis of labels that do not join asks (labels/diagnosis.py)."""
    found = np.array([int(i) in pending._buf_index for i in ids.tolist()], dtype=bool) if pending._buf_index else \
        np.zeros(len(ids), bool)
    for seg in pending.segments:
        if seg.kind in ("early", "spans") or not seg.n or found.all():
            continue
        sid = seg.cols["id"]
        pos = np.minimum(np.searchsorted(sid, ids), seg.n - 1)
        found |= sid[pos] == ids
    return found


def early_batches(codes: RowCodes, parts: list[dict[str, np.ndarray]]) -> list[LabelBatch]:
    """Early label rows (``parts``) as one ``LabelBatch`` per model and version."""
    parts = [p for p in parts if len(p["id"])]
    if not parts:
        return []
    cols = {c: np.concatenate([np.asarray(p[c]) for p in parts]) for c in EARLY.names}
    out = []
    for code in np.unique(cols["key"]).tolist():
        m = cols["key"] == code
        model, version, _ = codes.keys[code]
        out.append(LabelBatch(model, version, cols["id"][m], cols["value"][m],
                              codes.class_names(cols["label"][m]), cols["time"][m]))
    return out
