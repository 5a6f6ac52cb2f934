"""Example spans of a window's features: from a drift to the requests that show it (issue 46).

Per feature, at most ``SLOTS`` examples, each the event time, value, trace id and span id of one row:

- a numeric feature keeps the last row seen in each of 8 bands of its grid (``sketch.EXEMPLAR_BAND_EDGES``: z below
  -3.6, -3.6 to -1.2, ..., above 3.6, z in the grid's scale), so wherever its distribution moves there is a row
  from there;
- a categorical feature keeps up to 8 categories, each request's most frequent first; a category not kept takes the
  slot refreshed longest ago.

Evaluation (analyze/exemplars.py) picks those where the distribution moved most against the reference. A window
keeps at most ``SLOTS`` × ``EXEMPLAR_BYTES`` = 320 bytes a feature, plus a categorical slot's category text;
merging windows keeps each slot's newest row, so a horizon holds no more than a window. Rows without span ids (a
baseline's file) keep nothing.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from otel_ml.decode.batch import SPAN_IDS_BYTES
from otel_ml.profile.sketch import _columns

SLOTS = 8
EXEMPLAR_DTYPE = np.dtype([("time_ns", "<i8"), ("value", "<f8"), ("ids", f"V{SPAN_IDS_BYTES}")])
"""One kept row: its event time (0: the slot is empty), its value (NaN for a category) and its span's trace id and
span id (``decode.batch.span_ids``)."""
EXEMPLAR_BYTES = EXEMPLAR_DTYPE.itemsize


class BatchRows:
    """What a batch's rows point at: each row's event time, its span (None: row i is span i) and the spans' ids."""

    __slots__ = ("ids", "span", "time_ns")

    def __init__(self, time_ns: np.ndarray, span: np.ndarray | None, span_ids: np.ndarray) -> None:
        self.time_ns = np.ascontiguousarray(time_ns, np.int64)
        self.span = None if span is None else np.ascontiguousarray(span, np.int64)
        self.ids = np.ascontiguousarray(span_ids, np.uint8)

    def of(self, rows: np.ndarray) -> tuple[list[int], list[bytes]]:
        """The event times and span ids (24 bytes each) of ``rows``."""
        spans = rows if self.span is None else self.span[rows]
        packed = self.ids[spans].tobytes()
        return self.time_ns[rows].tolist(), [packed[i:i + SPAN_IDS_BYTES]
                                             for i in range(0, len(packed), SPAN_IDS_BYTES)]


class Exemplars:
    """The kept rows of one profile's features.

    >>> ids = np.arange(48, dtype=np.uint8).reshape(2, 24)  # two spans' trace and span ids
    >>> rows = BatchRows(np.array([10, 20, 20]), np.array([0, 1, 1]), ids)
    >>> e = Exemplars()
    >>> last = np.full((1, SLOTS), -1, np.int32); last[0, [2, 5]] = [0, 2]    # band 2: row 0, band 5: row 2
    >>> e.add_numeric(["x"], last, np.full((1, SLOTS), 4.5), rows)
    >>> e.add_categories("c", ["a", "b"], [1, 2], [0, 1], rows)
    >>> [(k, t, v, trace[:4], span) for k, t, v, trace, span in e.of("x")]
    [(5, 20, 4.5, '1819', '28292a2b2c2d2e2f'), (2, 10, 4.5, '0001', '1011121314151617')]
    >>> [k for k, *_ in e.of("c")]
    ['b', 'a']
    >>> other = Exemplars(); other.add_categories("c", ["a"], [1], [2], rows)
    >>> e.merge(other); [(k, t) for k, t, *_ in e.of("c")]
    [('a', 20), ('b', 20)]
    >>> Exemplars.from_dict(e.to_dict()).of("x") == e.of("x")
    True
    """

    __slots__ = ("categories", "ids", "index", "time_ns", "values")

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        """Numeric feature → its row of the arrays below (slot k: its band k)."""
        self.time_ns = np.zeros((0, SLOTS), np.int64)
        """0: the slot is empty."""
        self.values = np.zeros((0, SLOTS), np.float64)
        self.ids = np.zeros((0, SLOTS, SPAN_IDS_BYTES), np.uint8)
        self.categories: dict[str, dict[str, tuple[int, bytes]]] = {}
        """Categorical feature → up to ``SLOTS`` categories → (time_ns, ids)."""

    def __bool__(self) -> bool:
        return bool(self.index or self.categories)

    @property
    def nbytes(self) -> int:
        """Bytes of the kept rows (category texts as UTF-8): what docs/state.md bounds."""
        return len(self.index) * SLOTS * EXEMPLAR_BYTES + sum(
            EXEMPLAR_BYTES + len(c.encode()) for kept in self.categories.values() for c in kept)

    def _rows(self, names: list[str]) -> np.ndarray:
        at = np.empty(len(names), np.int64)
        for i, name in enumerate(names):
            k = self.index.get(name)
            if k is None:
                k = self.index[name] = len(self.index)
                if k >= len(self.time_ns):  # doubling: a window meets its features in its first requests
                    self._resize(max(8, 2 * len(self.time_ns)))
            at[i] = k
        return at

    def _resize(self, capacity: int) -> None:
        used = min(capacity, len(self.time_ns))
        for field, shape in (("time_ns", (SLOTS,)), ("values", (SLOTS,)), ("ids", (SLOTS, SPAN_IDS_BYTES))):
            old = getattr(self, field)
            new = np.zeros((capacity, *shape), old.dtype)
            new[:used] = old[:used]
            setattr(self, field, new)

    def add_numeric(self, names: list[str], last: np.ndarray, values: np.ndarray, rows: BatchRows) -> None:
        """Keep, for feature ``names[f]`` and band k, row ``last[f, k]`` (-1: none) whose value is ``values[f, k]``
        (``NumericProfile.update``'s ``last``), unless the slot holds a later row."""
        at = self._rows(names)
        if _columns is not None:  # one call instead of a dozen numpy ones: this runs for every request
            _columns.keep_exemplars(at, np.ascontiguousarray(last, np.int32), np.ascontiguousarray(values, np.float64),
                                    rows.time_ns, rows.span, rows.ids, self.time_ns, self.values, self.ids)
            return
        f, k = np.nonzero(last >= 0)
        row = last[f, k]
        times = rows.time_ns[row]
        later = times >= self.time_ns[at[f], k]
        f, k, row = f[later], k[later], row[later]
        self.time_ns[at[f], k] = times[later]
        self.values[at[f], k] = values[f, k]
        self.ids[at[f], k] = rows.ids[row if rows.span is None else rows.span[row]]

    def add_categories(self, name: str, categories: list[str], counts: list[int], first: list[int],
                       rows: BatchRows) -> None:
        """Keep row ``first[i]`` for ``categories[i]`` (``CategoricalProfile.update``'s result), the most frequent
        ``SLOTS`` of them when there are more."""
        chosen = range(len(categories))
        if len(categories) > SLOTS:
            chosen = sorted(chosen, key=counts.__getitem__, reverse=True)[:SLOTS]
        times, ids = rows.of(np.fromiter((first[i] for i in chosen), np.int64, len(chosen)))
        kept = self.categories.setdefault(name, {})
        for i, time_ns, span_ids in zip(chosen, times, ids):
            _keep(kept, categories[i], time_ns, span_ids)

    def merge(self, other: Exemplars) -> None:
        """Each slot's later row of the two."""
        if other.index:
            mine = self._rows(list(other.index))
            theirs = np.fromiter(other.index.values(), np.int64, len(other.index))
            later = other.time_ns[theirs] > self.time_ns[mine]
            f, k = np.nonzero(later)
            self.time_ns[mine[f], k] = other.time_ns[theirs[f], k]
            self.values[mine[f], k] = other.values[theirs[f], k]
            self.ids[mine[f], k] = other.ids[theirs[f], k]
        for name, slots in other.categories.items():
            kept = self.categories.setdefault(name, {})
            for category, (time_ns, ids) in slots.items():
                _keep(kept, category, time_ns, ids)

    def drop(self, names: set[str]) -> None:
        for name in names:
            self.categories.pop(name, None)
            k = self.index.pop(name, None)
            if k is not None:  # the row stays, empty and unnamed, until the next compact
                self.time_ns[k] = 0
        if len(self.index) < len(self.time_ns):
            self.compact()

    def compact(self) -> None:
        """Give back the doubling's spare rows (a window that stopped filling), and rows of dropped features."""
        if list(self.index.values()) != list(range(len(self.index))):
            order = np.fromiter(self.index.values(), np.int64, len(self.index))
            self.time_ns, self.values, self.ids = self.time_ns[order], self.values[order], self.ids[order]
            self.index = {name: i for i, name in enumerate(self.index)}
        if len(self.time_ns) > len(self.index):
            self._resize(len(self.index))

    def of(self, name: str) -> list[tuple[int | str, int, float | str, str, str]]:
        """A feature's kept rows, newest first: (band or category, time_ns, value or category, trace id, span id)
        with the ids in hex; a row of a span without a trace id (all zeros, invalid in OTLP) is not one."""
        out: list[tuple[int | str, int, float | str, str, str]] = []
        k = self.index.get(name)
        if k is not None:
            for band in range(SLOTS):
                ids = self.ids[k, band].tobytes()
                if self.time_ns[k, band] and any(ids[:16]):
                    out.append((band, int(self.time_ns[k, band]), float(self.values[k, band]), ids[:16].hex(),
                                ids[16:].hex()))
        for category, (time_ns, ids) in self.categories.get(name, {}).items():
            if any(ids[:16]):
                out.append((category, time_ns, category, ids[:16].hex(), ids[16:].hex()))
        out.sort(key=lambda e: -e[1])
        return out

    def to_dict(self) -> dict[str, Any]:
        used = np.fromiter(self.index.values(), np.int64, len(self.index))
        records = np.zeros((len(used), SLOTS), EXEMPLAR_DTYPE)
        records["time_ns"], records["value"] = self.time_ns[used], self.values[used]
        records["ids"] = np.ascontiguousarray(self.ids[used]).view(f"V{SPAN_IDS_BYTES}")[..., 0]
        return {"numeric": list(self.index), "records": base64.b64encode(records.tobytes()).decode("ascii"),
                "categorical": {name: [[c, t, ids.hex()] for c, (t, ids) in kept.items()]
                                for name, kept in self.categories.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Exemplars:
        e = cls()
        names = [str(n) for n in d.get("numeric", [])]
        records = np.frombuffer(base64.b64decode(d.get("records", "")), EXEMPLAR_DTYPE)
        if len(records) != len(names) * SLOTS:
            raise ValueError(f"exemplars: {len(records)} records for {len(names)} features of {SLOTS}")
        records = records.reshape(len(names), SLOTS)
        e.index = {name: i for i, name in enumerate(names)}
        e.time_ns, e.values = records["time_ns"].copy(), records["value"].copy()
        e.ids = np.frombuffer(records["ids"].tobytes(), np.uint8).reshape(len(names), SLOTS, SPAN_IDS_BYTES).copy()
        e.categories = {str(name): {str(c): (int(t), bytes.fromhex(ids)) for c, t, ids in slots[:SLOTS]}
                        for name, slots in d.get("categorical", {}).items()}
        return e


def _keep(kept: dict[str, tuple[int, bytes]], category: str, time_ns: int, ids: bytes) -> None:
    """Keep ``category``'s row in ``kept`` if later than its own; a new category takes a free slot, else the one
    refreshed longest ago, if it is later."""
    old = kept.get(category)
    if old is not None:
        if time_ns >= old[0]:
            kept[category] = (time_ns, ids)
        return
    if len(kept) >= SLOTS:
        oldest = min(kept, key=lambda c: kept[c][0])
        if time_ns < kept[oldest][0]:
            return
        del kept[oldest]
    kept[category] = (time_ns, ids)


__all__ = ["EXEMPLAR_BYTES", "SLOTS", "BatchRows", "Exemplars"]
