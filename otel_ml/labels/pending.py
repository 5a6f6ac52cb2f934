"""Where predictions wait for their labels: on disk in the state dir, sorted by id hash.

Every prediction that carries an id is one 36-byte row (id hash, model/version code, event time, predicted value
or class, positive-class probability). New rows collect in memory (a dict finds them by id) until a segment
is sealed: written sorted by id as one file of columns, which labels search with a binary search on a memory
map, so waiting predictions cost disk, not RAM (only one flag byte a row stays in memory: labelled or not,
so a repeated label is recognised and counted once). Small segments are merged as they accumulate (at most
``MAX_SEGMENTS``), rows past ``labels.ttl`` and the oldest segments beyond ``labels.max_pending`` leave, and
their ids are kept (8 bytes each, for another ttl) so a late label is counted as ``expired`` or ``evicted``
instead of ``unknown``. Labels that come before their prediction wait in memory for ``labels.early_ttl``.

Durability: segment files are immutable; ``state()`` names the files (and the labelled flags, written as new
files when changed) that a checkpoint commits with the rest of the state, and recovery (``restore``) opens
exactly those and deletes any other file. Rows added after the checkpoint come back from the journal replay,
so nothing is applied twice.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from otel_ml.decode.batch import LabelBatch

log = logging.getLogger(__name__)

ROW = np.dtype([("id", "<u8"), ("key", "<u4"), ("time", "<i8"), ("pred", "<f8"), ("cls", "<i4"), ("prob", "<f4")])
"""One waiting prediction (36 bytes)."""
COLUMNS = ROW.names
MAX_SEGMENTS = 12
SEAL_ROWS = 262_144
"""Rows kept in memory before they are written as a segment (also written at every checkpoint)."""


@dataclass(frozen=True)
class LabelsConfig:
    """YAML ``labels``: how long predictions wait for their ground truth, and how many."""

    ttl_seconds: float = 7 * 86_400.0
    """A prediction waits this long (event time) for its label; a later label is counted ``expired``."""
    max_pending: int = 50_000_000
    """Waiting predictions kept (36 bytes each on disk); beyond, the oldest leave (``evicted``)."""
    sample_ratio: float = 1.0
    """Share of predictions (by a hash of their id) kept for the join; labels of the rest are ``not_sampled``."""
    early_ttl_seconds: float = 3_600.0
    """A label arriving before its prediction waits this long (in memory) before it is ``unknown``."""
    max_early: int = 1_000_000
    """Early labels kept waiting at most; beyond, ``early_overflow``."""


@dataclass
class Segment:
    """Rows sorted by id, one column after the other in one file (``<name>.seg``); ``gone`` segments hold only
    ids, of rows that left (``reason``: expired or evicted)."""

    name: str
    n: int
    cols: dict[str, np.ndarray]
    labeled: np.ndarray
    """bool per row (in memory)."""
    flags_file: str = ""
    """The file the committed ``labeled`` is in ("" when none is labelled)."""
    dirty: bool = False
    reason: str = ""
    """For gone segments: why their rows left."""
    newest: int = 0
    oldest: int = 0
    models: dict[str, int] = field(default_factory=dict)
    """Per model of its rows, their newest event time (gone segments: that model's clock when they left): a segment
    expires by the clocks of its own models, never by another model's."""

    @property
    def gone(self) -> bool:
        return bool(self.reason)


def _write_segment(path: Path, cols: dict[str, np.ndarray]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for name in COLUMNS:
            if name in cols:
                f.write(np.ascontiguousarray(cols[name]).astype(ROW[name], copy=False).tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _open_segment(path: Path, n: int, only_ids: bool) -> dict[str, np.ndarray]:
    if n == 0:
        return {name: np.empty(0, ROW[name]) for name in (("id",) if only_ids else COLUMNS)}
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    cols, at = {}, 0
    for name in (("id",) if only_ids else COLUMNS):
        dt = ROW[name]
        cols[name] = mm[at:at + n * dt.itemsize].view(dt)
        at += n * dt.itemsize
    return cols


@dataclass
class Matched:
    """Labels that found their prediction: the label rows and the prediction rows, aligned."""

    label_index: np.ndarray
    rows: dict[str, np.ndarray]


@dataclass
class JoinResult:
    matched: list[tuple[LabelBatch, Matched]] = field(default_factory=list)
    unmatched: dict[str, int] = field(default_factory=dict)
    """Labels not applied, by reason: duplicate, expired, evicted, unknown (early labels that timed out),
    not_sampled, early_overflow."""


_EARLY_COLUMNS = ("id", "key", "value", "label", "time")


class EarlyLabels:
    """Labels waiting for their prediction, in memory and bounded: sorted by id (a binary search per arriving
    prediction, whatever their number) plus a small unsorted tail of the newest, merged in once it grows."""

    TAIL_ROWS = 16_384

    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []
        self._key_code: dict[tuple[str, str], int] = {}
        self.base = self._empty()
        self.live = np.zeros(0, bool)
        self.tail: list[dict[str, np.ndarray]] = []
        self.changed = False

    @staticmethod
    def _empty() -> dict[str, np.ndarray]:
        return {"id": np.empty(0, np.uint64), "key": np.empty(0, np.uint32), "value": np.empty(0),
                "label": np.empty(0, "<U1"), "time": np.empty(0, np.int64)}

    def __len__(self) -> int:
        return int(self.live.sum()) + sum(len(t["id"]) for t in self.tail)

    def add(self, lb: LabelBatch) -> None:
        code = self._key_code.get((lb.model, lb.version))
        if code is None:
            code = self._key_code[(lb.model, lb.version)] = len(self.keys)
            self.keys.append((lb.model, lb.version))
        self.tail.append({"id": lb.prediction_id, "key": np.full(lb.n_rows, code, np.uint32), "value": lb.value,
                          "label": lb.label, "time": lb.time_ns})
        self.changed = True
        if sum(len(t["id"]) for t in self.tail) > self.TAIL_ROWS:
            self._rebuild()

    def _rebuild(self) -> None:
        parts = [{c: v[self.live] for c, v in self.base.items()}, *self.tail]
        cols = {c: np.concatenate([p[c] for p in parts]) for c in _EARLY_COLUMNS}
        order = np.argsort(cols["id"], kind="stable")
        self.base = {c: v[order] for c, v in cols.items()}
        self.live = np.ones(len(order), bool)
        self.tail = []

    def _batches(self, parts: list[dict[str, np.ndarray]]) -> list[LabelBatch]:
        parts = [p for p in parts if len(p["id"])]
        if not parts:
            return []
        cols = {c: np.concatenate([p[c] for p in parts]) for c in _EARLY_COLUMNS}
        out = []
        for code in np.unique(cols["key"]).tolist():
            m = cols["key"] == code
            model, version = self.keys[code]
            out.append(LabelBatch(model, version, cols["id"][m], cols["value"][m], cols["label"][m], cols["time"][m]))
        return out

    def take(self, ids: np.ndarray) -> list[LabelBatch]:
        """The waiting labels of ``ids`` (they stop waiting)."""
        parts = []
        n = len(self.base["id"])
        if n and len(ids):
            pos = np.minimum(np.searchsorted(self.base["id"], ids), n - 1)
            hit = (self.base["id"][pos] == ids) & self.live[pos]
            if hit.any():
                rows = np.unique(pos[hit])
                self.live[rows] = False
                parts.append({c: v[rows] for c, v in self.base.items()})
        for k, t in enumerate(self.tail):
            m = np.isin(t["id"], ids)
            if m.any():
                parts.append({c: v[m] for c, v in t.items()})
                self.tail[k] = {c: v[~m] for c, v in t.items()}
        if parts:
            self.changed = True
            if n and self.live.sum() < n // 2:
                self._rebuild()
        return self._batches(parts)

    def expire(self, before_ns: Callable[[np.ndarray], np.ndarray]) -> list[LabelBatch]:
        """Drop the labels observed before ``before_ns(key codes)`` (per row: their model's clock minus the wait);
        returns them (they are ``unknown``)."""
        parts = []
        old = self.live & (self.base["time"] < before_ns(self.base["key"]))
        if old.any():
            parts.append({c: v[old] for c, v in self.base.items()})
            self.live &= ~old
        for k, t in enumerate(self.tail):
            m = t["time"] < before_ns(t["key"])
            if m.any():
                parts.append({c: v[m] for c, v in t.items()})
                self.tail[k] = {c: v[~m] for c, v in t.items()}
        if parts:
            self.changed = True
            self._rebuild()
        return self._batches(parts)

    def save(self, path: Path) -> None:
        self._rebuild()
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **self.base)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self.changed = False

    def load(self, path: Path, keys: list) -> None:
        self.keys = [tuple(k) for k in keys]  # type: ignore[misc]
        self._key_code = {k: i for i, k in enumerate(self.keys)}
        with np.load(path) as data:
            self.base = {c: data[c] for c in _EARLY_COLUMNS}
        self.live = np.ones(len(self.base["id"]), bool)
        self.tail = []
        self.changed = False


class PendingPredictions:
    """The waiting predictions of every model, in ``<state dir>/pending``."""

    def __init__(self, directory: str | Path, ttl_ns: int, max_pending: int, early_ttl_ns: int,
                 max_early: int = 1_000_000, sample_ratio: float = 1.0, max_skew_ns: int = 3600 * 10**9) -> None:
        self.dir = Path(directory)  # created with the first segment (the state dir is checked at start first)
        self.ttl_ns, self.max_pending, self.early_ttl_ns = ttl_ns, max_pending, early_ttl_ns
        self.max_early = max_early
        self.max_skew_ns = max_skew_ns
        self.sample_below = np.uint64(min(int(sample_ratio * 2.0**64), 2**64 - 1))
        self.keys: list[tuple[str, str]] = []
        self._key_code: dict[tuple[str, str], int] = {}
        self.classes: list[str] = []
        self._class_code: dict[str, int] = {}
        self.segments: list[Segment] = []
        self._next = 0
        self._buf: list[dict[str, np.ndarray]] = []
        self._buf_rows = 0
        self._buf_index: dict[int, int] = {}
        self._buf_labeled: list[int] = []
        self.clocks: dict[str, int] = {}
        """Per model, the newest event time of its predictions and labels: its own ttl and early waits run on it, so
        one model's (or one client's) timestamps cannot expire another's (decode bounds each by the clock skew)."""
        self.early = EarlyLabels()
        self._early_file = ""
        self.sampled = sample_ratio < 1.0

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

    def _key_clocks(self, codes: np.ndarray, keys: list[tuple[str, str]] | None = None) -> np.ndarray:
        """The clock of each row's model, from its key code (into ``keys``, default this store's)."""
        keys = self.keys if keys is None else keys
        per_key = np.array([self.clock(model) for model, _ in keys] or [0], dtype=np.int64)
        return per_key[codes]

    def _models_newest(self, cols: dict[str, np.ndarray]) -> dict[str, int]:
        """Per model, the newest time among rows ``cols``."""
        out: dict[str, int] = {}
        for code in np.unique(cols["key"]).tolist():
            model = self.keys[code][0]
            out[model] = max(out.get(model, 0), int(cols["time"][cols["key"] == code].max()))
        return out

    def _expired(self, seg: Segment) -> bool:
        """Every model of the segment is past the ttl of its own clock (gone segments: one ttl after they left)."""
        return bool(seg.models) and all(t < self.clock(m) - self.ttl_ns for m, t in seg.models.items())

    # --- codes ------------------------------------------------------------------------------------------
    def key_code(self, model: str, version: str) -> int:
        code = self._key_code.get((model, version))
        if code is None:
            code = self._key_code[(model, version)] = len(self.keys)
            self.keys.append((model, version))
        return code

    def class_codes(self, names: np.ndarray, cap: int = 4096) -> np.ndarray:
        uniq, inv = np.unique(names, return_inverse=True)
        codes = np.empty(len(uniq), np.int32)
        for i, c in enumerate(uniq.tolist()):
            code = self._class_code.get(c)
            if code is None and len(self.classes) < cap:
                code = self._class_code[c] = len(self.classes)
                self.classes.append(c)
            codes[i] = -2 if code is None else code  # -2: a class beyond the cap (counted as "(other)")
        return codes[inv]

    def keep(self, ids: np.ndarray) -> np.ndarray:
        """Which ids are kept (``labels.sample_ratio``, by hash: a label is kept exactly when its prediction was)."""
        return (ids != 0) & (ids < self.sample_below) if self.sampled else ids != 0

    # --- predictions -------------------------------------------------------------------------------------
    def add(self, model: str, version: str, ids: np.ndarray, time_ns: np.ndarray, pred: np.ndarray, cls: np.ndarray,
            prob: np.ndarray) -> int:
        """Keep predictions (rows with a kept id); returns how many. Labels waiting for them are then due:
        ``take_early`` returns them."""
        keep = self.keep(ids)
        n = int(keep.sum())
        if not n:
            return 0
        if not keep.all():
            ids, time_ns, pred, cls, prob = ids[keep], time_ns[keep], pred[keep], cls[keep], prob[keep]
        self.observe(model, int(time_ns.max()))
        rows = {"id": ids, "key": np.full(n, self.key_code(model, version), np.uint32), "time": time_ns,
                "pred": pred, "cls": cls, "prob": prob.astype(np.float32)}
        start = self._buf_rows
        self._buf.append(rows)
        self._buf_index.update(zip(ids.tolist(), range(start, start + n)))
        self._buf_rows += n
        if self._buf_rows >= SEAL_ROWS:
            try:
                self.seal()
            except OSError as e:  # a full disk: keep the rows in memory; the next checkpoint reports the failure
                log.warning("cannot write waiting predictions to %s (%s); kept in memory for now", self.dir, e)
        return n

    def take_early(self, ids: np.ndarray) -> list[LabelBatch]:
        """Early labels whose prediction is among ``ids`` (they stop waiting)."""
        return self.early.take(ids) if self.early.base["id"].size or self.early.tail else []

    # --- labels -------------------------------------------------------------------------------------------
    def join(self, labels: LabelBatch, now_ns: int | None = None, early: bool = True) -> JoinResult:
        """Find each label's prediction and mark it labelled. Labels without one wait (``early``)."""
        out = JoinResult()
        ids = labels.prediction_id
        now = max(self.clock(labels.model), now_ns or 0)
        sampled = self.keep(ids)
        if not sampled.all():
            out.unmatched["not_sampled"] = int((~sampled).sum())
        status = np.where(sampled, 0, -9)  # 0: not found yet; 1: found; -1 duplicate; -2 expired; -3 evicted
        parts: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []  # (label positions, their prediction rows)
        # Memory first (the newest predictions), then segments newest first.
        if self._buf_index:
            where, at_list = [], []
            for i in np.flatnonzero(status == 0).tolist():
                at = self._buf_index.get(int(ids[i]))
                if at is None:
                    continue
                if at < len(self._buf_labeled) and self._buf_labeled[at]:
                    status[i] = -1
                    continue
                self._mark_buffer(at)
                status[i] = 1
                where.append(i)
                at_list.append(at)
            if where:
                parts.append((np.array(where), self._buffer_rows(np.array(at_list))))
        for seg in reversed(self.segments):
            todo = np.flatnonzero(status == 0)
            if not len(todo):
                break
            if not seg.n:
                continue
            sid = seg.cols["id"]
            pos = np.searchsorted(sid, ids[todo])
            hit = pos < seg.n
            hit[hit] = sid[pos[hit]] == ids[todo][hit]
            if not hit.any():
                continue
            which, at = todo[hit], pos[hit]
            if seg.gone:
                status[which] = -2 if seg.reason == "expired" else -3
                continue
            dup = seg.labeled[at]
            status[which[dup]] = -1
            which, at = which[~dup], at[~dup]
            old = seg.cols["time"][at] < now - self.ttl_ns
            status[which[old]] = -2
            which, at = which[~old], at[~old]
            if len(which):
                seg.labeled[at] = True
                seg.dirty = True
                status[which] = 1
                parts.append((which, {c: np.asarray(seg.cols[c][at]) for c in COLUMNS}))
        for code, reason in ((-1, "duplicate"), (-2, "expired"), (-3, "evicted")):
            k = int((status == code).sum())
            if k:
                out.unmatched[reason] = out.unmatched.get(reason, 0) + k
        if parts:
            idx = np.concatenate([w for w, _ in parts])
            rows = {c: np.concatenate([r[c] for _, r in parts]) for c in COLUMNS}
            out.matched.append((labels, Matched(idx, rows)))
        waiting = status == 0
        if waiting.any():
            if early:
                room = self.max_early - len(self.early)
                wait = np.flatnonzero(waiting)
                if len(wait) > room:
                    out.unmatched["early_overflow"] = len(wait) - max(room, 0)
                    wait = wait[:max(room, 0)]
                if len(wait):
                    mask = np.zeros(len(ids), bool)
                    mask[wait] = True
                    self.early.add(_select(labels, mask))
            else:
                out.unmatched["unknown"] = int(waiting.sum())
        return out

    def expire_early(self) -> list[LabelBatch]:
        """Drop early labels older than ``early_ttl`` of their model's clock (they are ``unknown``); returns them."""
        if not len(self.early):
            return []
        return self.early.expire(lambda codes: self._key_clocks(codes, self.early.keys) - self.early_ttl_ns)

    def _mark_buffer(self, at: int) -> None:
        if len(self._buf_labeled) <= at:
            self._buf_labeled.extend([0] * (self._buf_rows - len(self._buf_labeled)))
        self._buf_labeled[at] = 1

    def _buffer_rows(self, at: np.ndarray) -> dict[str, np.ndarray]:
        """Rows at buffer positions ``at`` (in that order), gathered chunk by chunk."""
        starts = np.cumsum([0] + [len(b["id"]) for b in self._buf])
        chunk = np.searchsorted(starts, at, side="right") - 1
        out = {c: np.empty(len(at), ROW[c]) for c in COLUMNS}
        for k in np.unique(chunk).tolist():
            sel = chunk == k
            for c in COLUMNS:
                out[c][sel] = self._buf[k][c][at[sel] - starts[k]]
        return out

    # --- segments -----------------------------------------------------------------------------------------
    def seal(self) -> None:
        """Write the rows in memory as a sorted segment."""
        if not self._buf_rows:
            return
        cols = {c: np.concatenate([b[c] for b in self._buf]) for c in COLUMNS}
        labeled = np.zeros(self._buf_rows, bool)
        labeled[:len(self._buf_labeled)] = np.asarray(self._buf_labeled, bool)
        order = np.argsort(cols["id"], kind="stable")
        self._add_segment({c: v[order] for c, v in cols.items()}, labeled[order])
        self._buf, self._buf_rows, self._buf_index, self._buf_labeled = [], 0, {}, []
        self._maintain()

    def _add_segment(self, cols: dict[str, np.ndarray], labeled: np.ndarray, reason: str = "",
                     newest: int | None = None, models: dict[str, int] | None = None) -> Segment:
        self._next += 1
        name = f"{self._next:08d}{'-gone' if reason else ''}"
        n = len(cols["id"])
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_segment(self.dir / f"{name}.seg", cols)
        times = cols.get("time")
        seg = Segment(name, n, _open_segment(self.dir / f"{name}.seg", n, bool(reason)), labeled, reason=reason,
                      newest=int(times.max()) if times is not None and n else (newest or self.clock_ns),
                      oldest=int(times.min()) if times is not None and n else (newest or self.clock_ns),
                      dirty=bool(labeled.any()),
                      models=models if models is not None else self._models_newest(cols) if times is not None else {})
        self.segments.append(seg)
        return seg

    def pending_rows(self) -> int:
        return self._buf_rows + sum(s.n for s in self.segments if not s.gone)

    def _maintain(self) -> None:
        """Expire, evict, merge: bounded count of segments, of rows, and of time."""
        live = [s for s in self.segments if not s.gone]
        # Gone ids are kept for one more ttl, then forgotten (a label that late is unknown).
        self.segments = [s for s in self.segments if not (s.gone and self._expired(s))]
        for seg in live:
            if self._expired(seg):
                self._forget([seg], "expired")
        total = self.pending_rows()
        for seg in sorted((s for s in self.segments if not s.gone), key=lambda s: s.newest):
            if total <= self.max_pending:
                break
            self._forget([seg], "evicted")
            total -= seg.n
        while len(self.segments) > MAX_SEGMENTS:
            kind = [s for s in self.segments if not s.gone]
            gone = [s for s in self.segments if s.gone]
            group = sorted(gone, key=lambda s: s.n)[:4] if len(gone) >= 4 else sorted(kind, key=lambda s: s.n)[:4]
            if len(group) < 2:
                break
            self._merge(group)

    def _forget(self, segs: list[Segment], reason: str) -> None:
        ids = np.concatenate([np.asarray(s.cols["id"]) for s in segs])
        stamps = {m: self.clock(m) for s in segs for m in s.models}
        self._add_segment({"id": np.sort(ids)}, np.zeros(0, bool), reason, newest=self.clock_ns,  # first: may fail
                          models=stamps)
        self.segments = [s for s in self.segments if s not in segs]

    def _merge(self, group: list[Segment]) -> None:
        """Replace ``group`` by one segment; the old ones leave the list only once the new files are written."""
        gone = group[0].gone
        names = ("id",) if gone else COLUMNS
        cols = {c: np.concatenate([np.asarray(s.cols[c]) for s in group]) for c in names}
        order = np.argsort(cols["id"], kind="stable")
        cols = {c: v[order] for c, v in cols.items()}
        if gone:
            stamps: dict[str, int] = {}
            for s in group:
                for m, t in s.models.items():
                    stamps[m] = max(stamps.get(m, 0), t)
            self._add_segment(cols, np.zeros(0, bool), group[0].reason, newest=max(s.newest for s in group),
                              models=stamps)
        else:
            labeled = np.concatenate([s.labeled for s in group])[order]
            old = cols["time"] < self._key_clocks(cols["key"]) - self.ttl_ns
            if old.any():  # expired rows leave here; their ids are remembered
                self._add_segment({"id": cols["id"][old]}, np.zeros(0, bool), "expired", newest=self.clock_ns,
                                  models={m: self.clock(m) for m in self._models_newest(
                                      {"key": cols["key"][old], "time": cols["time"][old]})})
                cols = {c: v[~old] for c, v in cols.items()}
                labeled = labeled[~old]
            self._add_segment(cols, labeled)
        self.segments = [s for s in self.segments if s not in group]

    # --- durability ------------------------------------------------------------------------------------------
    def state(self) -> dict:
        """What a checkpoint commits: seal memory, write changed labelled flags, name every file in use."""
        self.seal()
        self.dir.mkdir(parents=True, exist_ok=True)
        for seg in self.segments:
            if seg.dirty and not seg.gone:
                self._next += 1
                name = f"{seg.name}.{self._next}.flags"
                packed = np.packbits(seg.labeled)
                tmp = self.dir / (name + ".tmp")
                with open(tmp, "wb") as f:
                    f.write(packed.tobytes())
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.dir / name)
                seg.flags_file, seg.dirty = name, False
        if self.early.changed:
            self._next += 1
            name = f"early.{self._next}.npz"
            self.early.save(self.dir / name)
            self._early_file = name
        return {"next": self._next, "clocks": self.clocks, "keys": self.keys, "classes": self.classes,
                "segments": [{"name": s.name, "n": s.n, "flags": s.flags_file, "reason": s.reason,
                              "newest": s.newest, "oldest": s.oldest, "models": s.models} for s in self.segments],
                "early_file": self._early_file, "early_keys": self.early.keys}

    def committed(self, state: dict) -> None:
        """After the checkpoint with ``state`` is written: delete files it no longer names."""
        self._delete_others(state)

    def _delete_others(self, state: dict) -> None:
        keep = {f"{s['name']}.seg" for s in state.get("segments", [])} | {
            s["flags"] for s in state.get("segments", []) if s["flags"]}
        keep |= {f"{s.name}.seg" for s in self.segments} | {s.flags_file for s in self.segments if s.flags_file}
        keep |= {state.get("early_file", ""), self._early_file}
        if not self.dir.is_dir():
            return
        for path in self.dir.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def restore(self, state: dict) -> None:
        """Open what a checkpoint named; delete everything else in the directory."""
        self._next = int(state.get("next", 0))
        self.keys = [tuple(k) for k in state.get("keys", [])]  # type: ignore[misc]
        # No clock beyond the skew limit: a checkpoint from before per-model clocks may hold one poisoned by a
        # label stamped years ahead (its one clock then applies to every model, bounded).
        limit = time.time_ns() + self.max_skew_ns
        old = min(int(state.get("clock_ns", 0)), limit)
        self.clocks = {m: min(int(t), limit) for m, t in state.get("clocks", {m: old for m, _ in self.keys}).items()}
        self._key_code = {k: i for i, k in enumerate(self.keys)}
        self.classes = list(state.get("classes", []))
        self._class_code = {c: i for i, c in enumerate(self.classes)}
        self.segments = []
        for s in state.get("segments", []):
            n = int(s["n"])
            cols = _open_segment(self.dir / f"{s['name']}.seg", n, bool(s["reason"]))
            labeled = np.zeros(0 if s["reason"] else n, bool)
            if s["flags"]:
                labeled = np.unpackbits(np.fromfile(self.dir / s["flags"], np.uint8), count=n).astype(bool)
            models = s.get("models") or {m: int(s["newest"]) for m in self.clocks}
            self.segments.append(Segment(s["name"], n, cols, labeled, s["flags"], reason=s["reason"],
                                         newest=int(s["newest"]), oldest=int(s["oldest"]), models=models))
        self.early = EarlyLabels()
        self._early_file = state.get("early_file", "")
        if self._early_file:
            self.early.load(self.dir / self._early_file, state.get("early_keys", []))
        self._delete_others(state)

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file()) if self.dir.is_dir() else 0


def _select(lb: LabelBatch, mask: np.ndarray) -> LabelBatch:
    return LabelBatch(lb.model, lb.version, lb.prediction_id[mask], lb.value[mask], lb.label[mask], lb.time_ns[mask])
