"""The files behind the pending store: sealed segments of fixed-width rows, each opened as a memory map.

``SegmentFiles`` knows files, not labels: it writes a segment (rows the caller sorted by id, one column after the
other, in one sealed file), replaces neighbours with their merge, writes the changed flag bitmaps a checkpoint commits,
reopens what a checkpoint named (verifying length and both checksums) and deletes what no checkpoint names. What
the rows mean, and when they expire or are evicted, is ``PendingPredictions``'s business (labels/pending.py).

>>> import tempfile
>>> files = SegmentFiles(tempfile.mkdtemp())
>>> seg = files.write("gone", {"id": np.array([3, 5, 9], np.uint64)}, np.zeros(0, bool), "expired", {}, 0)
>>> seg.name, seg.n, seg.cols["id"].tolist()
('00000001-expired', 3, [3, 5, 9])
>>> again = SegmentFiles(files.dir)
>>> again.reopen({"next": files.next, "segments": files.describe()}, lambda m: 0)
[]
>>> again.segments[0].cols["id"].tolist()
[3, 5, 9]
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from otel_ml.decode.batch import SPAN_IDS_BYTES
from otel_ml.sealed import Damaged, Loss, check_sealed, quarantine, read_sealed, write_sealed

PRED = np.dtype([("id", "<u8"), ("key", "<u4"), ("time", "<i8"), ("pred", "<f8"), ("cls", "<i4"), ("prob", "<f4")])
"""One waiting prediction (36 bytes)."""
EARLY = np.dtype([("id", "<u8"), ("key", "<u4"), ("value", "<f8"), ("label", "<i4"), ("time", "<i8")])
"""One label waiting for its prediction (32 bytes): ``label`` is a class code (-1: a number, not a class)."""
GONE = np.dtype([("id", "<u8")])
"""The id of a prediction that left (8 bytes)."""
SPANS = np.dtype([("id", "<u8"), ("span", "u1", (SPAN_IDS_BYTES,))])
"""The span of a waiting prediction (32 bytes: its id, its trace id and span id): sampled, for the wrong predictions'
example spans (labels/pending.py ``PredictionSpans``)."""
DTYPES = {"pred": PRED, "early": EARLY, "gone": GONE, "spans": SPANS}
UNFLAGGED = frozenset({"gone", "spans"})
"""Kinds whose rows never change: no flags."""


def pred_dtype(width: int) -> np.dtype:
    """A waiting prediction's row: ``PRED`` and, for a multiclass model that sends them, its probability of each
    of ``width`` classes (4 bytes each; the classes are ``RowCodes.prob_classes`` of its key, NaN: not given).

    >>> pred_dtype(0) is PRED, pred_dtype(3).itemsize
    (True, 48)
    """
    return PRED if not width else np.dtype([*PRED.descr, ("probs", "<f4", (width,))])


def width_of(cols: dict[str, np.ndarray]) -> int:
    probs = cols.get("probs")
    return probs.shape[1] if probs is not None and probs.ndim == 2 else 0


def concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Prediction rows of several parts as one: ``probs`` widened with NaN to the widest part's.

    >>> a = {"id": np.array([1], np.uint64)}
    >>> b = {"id": np.array([2], np.uint64), "probs": np.array([[0.5, 0.5]], np.float32)}
    >>> concat_rows([a, b])["probs"].tolist()
    [[nan, nan], [0.5, 0.5]]
    """
    width = max(width_of(p) for p in parts)
    out = {c: np.concatenate([np.asarray(p[c]) for p in parts]) for c in parts[0] if c != "probs"}
    if width:
        probs = np.full((len(out["id"]), width), np.nan, np.float32)
        at = 0
        for p in parts:
            n, w = len(p["id"]), width_of(p)
            if w:
                probs[at:at + n, :w] = p["probs"]
            at += n
        out["probs"] = probs
    return out
MAX_CLASSES = 4096
MAX_PROBABILITY_CLASSES = 64
"""Classes whose probabilities a waiting prediction keeps (4 bytes each). A model with more: its labels' log loss is
withheld (the true class's share of a row is unknown), never computed wrong; its AUC per kept class stays."""
OTHER_CLASS_CODE = -2
WHAT = {"pred": "waiting predictions", "early": "early labels", "gone": "ids of predictions that left",
        "spans": "spans of waiting predictions"}


class RowCodes:
    """The small integers rows hold for a (model, version) and for a class name; a checkpoint keeps both tables.

    >>> codes = RowCodes()
    >>> codes.key("m", "1"), codes.key("m", "1", "tier=a"), codes.classes_of(np.array(["b", "a", "b"])).tolist()
    (0, 1, [1, 0, 1])
    >>> codes.class_names(np.array([1, -1, OTHER_CLASS_CODE])).tolist()
    ['b', '', '(other)']
    """

    def __init__(self, keys: list | None = None, classes: list[str] | None = None,
                 prob_classes: dict | None = None, truncated: list[int] | None = None) -> None:
        # (model, version, segment): a segmented model's rows keep their segment (profile/segments.py) so that
        # their outcomes count in it; "" is none (and every key a checkpoint from before segments named).
        self.keys: list[tuple[str, str, str]] = [(str(k[0]), str(k[1]), str(k[2]) if len(k) > 2 else "")
                                                 for k in keys or []]
        self._key = {k: i for i, k in enumerate(self.keys)}
        self.classes: list[str] = list(classes or [])
        self._class = {c: i for i, c in enumerate(self.classes)}
        self.prob_classes: dict[int, list[str]] = {int(k): list(v) for k, v in (prob_classes or {}).items()}
        self.truncated: set[int] = {int(k) for k in truncated or []}
        """Keys whose models gave probabilities of more than ``MAX_PROBABILITY_CLASSES`` classes."""
        """Key code → the classes whose probabilities its rows hold (``probs``), in column order."""

    def probability_columns(self, key: int, classes: list[str], p: np.ndarray,
                            cap: int = MAX_PROBABILITY_CLASSES) -> np.ndarray:
        """A batch's class probabilities (``classes``: its columns) in the column order of ``key``'s rows, new
        classes appended (at most ``cap``; further ones are not kept, and ``key`` is marked ``truncated``)."""
        known = self.prob_classes.setdefault(key, [])
        for c in classes:
            if c not in known:
                if len(known) < cap:
                    known.append(c)
                else:
                    self.truncated.add(key)
        out = np.full((len(p), len(known)), np.nan, np.float32)
        for j, c in enumerate(classes):
            if c in known:
                out[:, known.index(c)] = p[:, j]
        return out

    def key(self, model: str, version: str, segment: str = "") -> int:
        code = self._key.get((model, version, segment))
        if code is None:
            code = self._key[(model, version, segment)] = len(self.keys)
            self.keys.append((model, version, segment))
        return code

    def model_key(self, code: int) -> int:
        """The code of ``code``'s (model, version) without a segment: what its class columns are kept under."""
        model, version, segment = self.keys[code]
        return self.key(model, version) if segment else code

    def classes_of(self, names: np.ndarray, cap: int = MAX_CLASSES) -> np.ndarray:
        """Class names to codes; a class beyond the first ``cap`` is ``OTHER_CLASS_CODE`` (counted "(other)")."""
        uniq, inv = np.unique(names, return_inverse=True)
        codes = np.empty(len(uniq), np.int32)
        for i, c in enumerate(uniq.tolist()):
            code = self._class.get(c)
            if code is None and len(self.classes) < cap:
                code = self._class[c] = len(self.classes)
                self.classes.append(c)
            codes[i] = OTHER_CLASS_CODE if code is None else code
        return codes[inv]

    def class_names(self, codes: np.ndarray) -> np.ndarray:
        """Class codes back to names: "" for -1 (no class), "(other)" beyond the cap."""
        table = np.array([*self.classes, "(other)", ""], dtype=object)
        return table[np.where(codes >= 0, codes, np.where(codes == OTHER_CLASS_CODE, len(self.classes),
                                                          len(self.classes) + 1))].astype(str)


@dataclass
class Segment:
    """Rows sorted by id, one column after the other, in one sealed file (``<name>.seg``). ``kind``: ``pred``
    (waiting predictions; ``flags``: labelled), ``early`` (waiting labels; ``flags``: gone), ``gone`` (ids of
    predictions that left; ``reason``: expired, evicted or lost)."""

    name: str
    kind: str
    n: int
    cols: dict[str, np.ndarray]
    flags: np.ndarray
    crc: int = 0
    flags_file: str = ""
    flags_crc: int = 0
    dirty: bool = False
    reason: str = ""
    width: int = 0
    """Prediction segments: class probabilities per row (``pred_dtype``)."""
    newest: int = 0
    models: dict[str, int] = field(default_factory=dict)
    """Per model of its rows, their newest event time (gone segments: that model's clock when they left): a
    segment expires by the clocks of its own models, never by another model's."""

    @property
    def live(self) -> int:
        return self.n - int(self.flags.sum()) if self.kind == "early" else self.n


def _write_columns(path: Path, cols: dict[str, np.ndarray], dtype: np.dtype) -> int:
    parts = [np.ascontiguousarray(cols[name]).astype(dtype[name].base, copy=False).tobytes() for name in dtype.names]
    write_sealed(path, parts)
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc


def _open_columns(path: Path, n: int, dtype: np.dtype) -> dict[str, np.ndarray]:
    if n == 0:
        return {name: np.empty((0, *dtype[name].shape), dtype[name].base) for name in dtype.names}
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    cols, at = {}, 0
    for name in dtype.names:
        dt = dtype[name]  # a subarray field (probs) is a (rows × width) column
        cols[name] = mm[at:at + n * dt.itemsize].view(dt.base).reshape((n, *dt.shape))
        at += n * dt.itemsize
    return cols


class SegmentFiles:
    """The segments of one directory, in the order they were written (oldest first)."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)  # created with the first segment (the state dir is checked at start first)
        self.segments: list[Segment] = []
        self.next = 0
        """The counter that names files: never reused, so a checkpoint's files are never overwritten."""

    def of_kind(self, kind: str) -> list[Segment]:
        return [s for s in self.segments if s.kind == kind]

    def write(self, kind: str, cols: dict[str, np.ndarray], flags: np.ndarray, reason: str, models: dict[str, int],
              newest: int, at: int | None = None) -> Segment:
        """Write a segment and put it in the list (at position ``at``; default: last, the newest)."""
        self.next += 1
        name = f"{self.next:08d}-{reason or kind}"
        n = len(cols["id"])
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{name}.seg"
        width = width_of(cols) if kind == "pred" else 0
        dtype = pred_dtype(width) if kind == "pred" else DTYPES[kind]
        crc = _write_columns(path, cols, dtype)
        seg = Segment(name, kind, n, _open_columns(path, n, dtype), flags, crc=crc, reason=reason, width=width,
                      newest=max(models.values(), default=newest), models=models, dirty=bool(flags.any()))
        self.segments.insert(len(self.segments) if at is None else at, seg)
        return seg

    def replace(self, old: list[Segment], kind: str, cols: dict[str, np.ndarray], flags: np.ndarray, reason: str,
                models: dict[str, int], newest: int) -> None:
        """Write one segment in the place of ``old`` (adjacent ones); the old leave the list only once it is
        written (a failure leaves everything as it was)."""
        self.write(kind, cols, flags, reason, models, newest, at=self.segments.index(old[0]))
        for seg in old:
            self.segments.remove(seg)

    def merge_adjacent(self, cap: Callable[[str], int]) -> None:
        """Merge neighbours of one kind (and reason) while the merge stays within ``cap(kind)`` live rows: few
        segments, each kind still in arrival order (eviction takes the oldest). Neighbours of one kind, the others
        in between skipped: each seal writes several kinds, which must not keep each other's segments apart."""
        i = 0
        while i < len(self.segments):
            a = self.segments[i]
            b = next((s for s in self.segments[i + 1:] if s.kind == a.kind), None)
            # Prediction rows keep their width: one multiclass model must not widen every model's rows.
            if b is None or a.reason != b.reason or a.width != b.width or a.live + b.live > cap(a.kind):
                i += 1
                continue
            dtype = DTYPES[a.kind]
            if a.kind == "early":  # labels that left are dropped
                keep = [~a.flags, ~b.flags]
                cols = {c: np.concatenate([np.asarray(s.cols[c])[k] for s, k in zip((a, b), keep)])
                        for c in dtype.names}
                flags = np.zeros(len(cols["id"]), bool)
            else:
                cols = concat_rows([a.cols, b.cols])
                flags = np.concatenate([a.flags, b.flags]) if a.kind == "pred" else np.zeros(0, bool)
            order = np.argsort(cols["id"], kind="stable")
            cols = {c: v[order] for c, v in cols.items()}
            flags = flags[order] if len(flags) else flags
            models = {m: max(a.models.get(m, 0), b.models.get(m, 0)) for m in {*a.models, *b.models}}
            self.write(a.kind, cols, flags, a.reason, models, max(a.newest, b.newest), at=i)
            self.segments.remove(a)
            self.segments.remove(b)

    # --- durability ------------------------------------------------------------------------------------------
    def describe(self) -> list[dict]:
        """Write the flags that changed (new files: the checkpoint's stay as they are) and name every segment in
        use with its checksums: what a checkpoint commits."""
        for seg in self.segments:
            if seg.dirty and seg.kind not in UNFLAGGED:
                self.dir.mkdir(parents=True, exist_ok=True)
                self.next += 1
                name = f"{seg.name}.{self.next}.flags"
                packed = np.packbits(seg.flags).tobytes()
                write_sealed(self.dir / name, packed)
                seg.flags_file, seg.flags_crc, seg.dirty = name, zlib.crc32(packed), False
        return [{"name": s.name, "kind": s.kind, "n": s.n, "crc": s.crc, "flags": s.flags_file,
                 "flags_crc": s.flags_crc, "reason": s.reason, "newest": s.newest, "models": s.models,
                 **({"width": s.width} if s.width else {})} for s in self.segments]

    def delete_others(self, state: dict) -> None:
        """Delete every file that neither ``state`` (a committed checkpoint) nor the segments in use name."""
        keep = {f"{s['name']}.seg" for s in state.get("segments", [])} | {
            s["flags"] for s in state.get("segments", []) if s["flags"]}
        keep |= {f"{s.name}.seg" for s in self.segments} | {s.flags_file for s in self.segments if s.flags_file}
        if not self.dir.is_dir():
            return
        for path in self.dir.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def reopen(self, state: dict, clock: Callable[[str], int], quarantine_dir: Path | None = None) -> list[Loss]:
        """Open the segments ``state`` names, verifying each, and delete everything else. Returns what could not
        be used (each damaged file moved to ``quarantine_dir``, when given); ``clock(model)`` stamps the ids of
        predictions whose labelled flags were lost."""
        self.next = int(state.get("next", 0))
        self.segments = []
        losses = []
        for s in state.get("segments", []):
            loss = self._open(s, clock)
            if loss is not None:
                losses.append(loss)
                if quarantine_dir is not None:
                    for name in (f"{s['name']}.seg", s["flags"]):
                        if name:
                            quarantine(self.dir / name, quarantine_dir)
        self.delete_others(state)
        return losses

    def _open(self, s: dict, clock: Callable[[str], int]) -> Loss | None:
        """Open one segment; a Loss (and what is still usable of it) when it is damaged."""
        kind, n = s["kind"], int(s["n"])
        width = int(s.get("width", 0)) if kind == "pred" else 0
        dtype = pred_dtype(width) if kind == "pred" else DTYPES[kind]
        path = self.dir / f"{s['name']}.seg"
        what = WHAT[kind]
        try:
            length = check_sealed(path, f"{path.name} ({what})")
            if length != n * dtype.itemsize:
                raise Damaged(path.name, f"{length} bytes where the checkpoint says {n} rows of {dtype.itemsize}")
            cols = _open_columns(path, n, dtype)
            crc = zlib.crc32(np.asarray(np.memmap(path, dtype=np.uint8, mode="r")[:length]).tobytes())
            if crc != int(s["crc"]):
                raise Damaged(path.name, "another file than the checkpoint wrote (its checksum differs)")
        except Damaged as e:
            consequence = {"pred": "their labels will count as unknown", "early": "they will not be applied",
                           "gone": "late labels for them will count as unknown",
                           "spans": "their wrong predictions will not point at their spans"}[kind]
            return Loss(f"pending_{kind}", path.name, n, f"{e.why}: {n} {what} lost; {consequence}")
        flags = np.zeros(0 if kind in UNFLAGGED else n, bool)
        flags_file = s.get("flags") or ""
        if flags_file:
            try:
                packed = read_sealed(self.dir / flags_file, flags_file)
                if zlib.crc32(packed) != int(s["flags_crc"]) or len(packed) != (n + 7) // 8:
                    raise Damaged(flags_file, "another file than the checkpoint wrote")
                flags = np.unpackbits(np.frombuffer(packed, np.uint8), count=n).astype(bool)
            except Damaged as e:
                if kind == "early":  # which of them were applied is unknown: none is applied again
                    return Loss("pending_early", flags_file, n, f"{e.why}: {n} early labels dropped (which of them "
                                "were applied already is not known, and none may be applied twice)")
                # which predictions were labelled is unknown: none of them joins again (never twice)
                models = {m: clock(m) for m in s.get("models", {})}
                self.segments.append(Segment(s["name"], "gone", n, {"id": cols["id"]}, np.zeros(0, bool),
                                             crc=int(s["crc"]), reason="lost", newest=int(s["newest"]),
                                             models=models))
                return Loss("pending_flags", flags_file, n, f"{e.why}: which of {n} waiting predictions were labelled "
                            "is not known; their labels will count as lost (none is applied twice)")
        self.segments.append(Segment(s["name"], kind, n, cols, flags, crc=int(s["crc"]), flags_file=flags_file,
                                     flags_crc=int(s.get("flags_crc", 0)), reason=s.get("reason", ""), width=width,
                                     newest=int(s["newest"]), models=dict(s.get("models", {}))))
        return None

    def disk_bytes(self) -> int:
        return sum(self.disk_bytes_by_kind().values())

    def disk_bytes_by_kind(self) -> dict[str, int]:
        """Bytes on disk of every file in the directory (segments, flags, files a checkpoint still names), as
        ``predictions`` (prediction segments, ids of those that left) and ``labels`` (early labels)."""
        out = {"predictions": 0, "labels": 0}
        if not self.dir.is_dir():
            return out
        for entry in os.scandir(self.dir):
            if entry.is_file():
                out["labels" if "-early" in entry.name else "predictions"] += entry.stat().st_size
        return out
