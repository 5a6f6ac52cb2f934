"""Per-segment exact counts inside a window (issue 33): what a model's rows look like in each slice (a region, a
customer tier), kept so that each slice's drift can be tested and a model-level change attributed to slices.

Why counts and not a window set per segment: a full profile per segment (KLL and frequent-items sketches per
feature) costs one sketch update per feature, window and segment; with 10 segments that measured 6.25× the model's
own window update per request. Exact counts on the grid bins every window already uses (numeric) and on the
category buckets (categorical) cost one ``bincount`` per feature for all segments: 0.34 ms per 512-row request of
20 features and 10 segments, against 0.94 ms for the model's window update. Kept inside each window's
``ModelProfile`` (as the correlation moments are), they are checkpointed, archived, merged across Kafka
partitions and pinned into references with the window, with no path of their own.

A segment is the value of the ``by`` keys (``region=north``, ``region=north,tier=gold``; a numeric key with declared
``bins``, its interval: ``age=[18..30)``): a span's ``ml.segment.<key>`` attribute, else its feature ``<key>``; a row
without one is
``(missing)``; past ``max_segments`` labels, further ones pool as ``(other)``: a new window admits the previous
window's segments by volume first, then newcomers as they come (in each batch in label order, so a replay admits
the same ones).

>>> import numpy as np
>>> from otel_ml.decode.batch import ColumnarBatch
>>> b = ColumnarBatch("m", "", 4, np.zeros(4, np.int64), np.ones(4), numeric={"x": np.array([0.0, 1, 2, 3])},
...                   categorical={"region": np.array(["n", "s", "n", ""])})
>>> s = SegmentCounts(("region",))
>>> s.update(b, {"x": "numeric", "region": "categorical"}, {"x": (0.0, 1.0)})
>>> s.labels, s.weights.tolist(), s.means("x").round(2).tolist()
(['(missing)', 'region=n', 'region=s'], [1.0, 2.0, 1.0], [3.0, 1.0, 1.0])
>>> t = SegmentCounts.from_dict(s.to_dict()); t.merge(s); t.weights.tolist(), t.table("x", 1)[256:258].tolist()
([2.0, 4.0, 2.0], [2.0, 0.0])
>>> u = SegmentCounts.merged([s, s]); u.weights.tolist(), u.table("x", 1)[256:258].tolist(), u.means("x").tolist()
([2.0, 4.0, 2.0], [2.0, 0.0], [3.0, 1.0, 1.0])
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

import numpy as np

from otel_ml.decode.batch import ColumnarBatch
from otel_ml.profile.sketch import CATEGORICAL, NUMERIC, NUMERIC_GRID_BINS, Grid, category_bucket, cell_sums, grid_bins
from otel_ml.semconv import SEGMENT_COLUMN_PREFIX

OTHER = "(other)"
MISSING = "(missing)"
DEFAULT_MAX_SEGMENTS = 20
DEFAULT_BUCKETS = 2048


def interval_labels(edges: list[float]) -> list[str]:
    """The segment texts of a numeric key binned at ``edges``: "" (no value), below the first, each interval, from
    the last on (``searchsorted(edges, x, side="right") + 1`` indexes them).

    >>> interval_labels([18, 30])
    ['', '<18', '[18..30)', '>=30']
    """
    # ".." not ",": a label joins keys with commas (age=[18..30),tier=gold)
    inner = ["[" + format(a, "g") + ".." + format(b, "g") + ")" for a, b in itertools.pairwise(edges)]
    return ["", "<" + format(edges[0], "g"), *inner, ">=" + format(edges[-1], "g")]


def segment_label(keys: tuple[str, ...], values: tuple[str, ...]) -> str:
    r"""A segment's label: ``key=value`` pairs joined by commas, with a backslash before every ``\`` and ``,`` of a
    key or value and every ``=`` of a key, so that no two segments share a label (a pair is split at its first
    unescaped ``=``: a value may hold ``=``, as a numeric key's ``>=50`` does).

    >>> print(segment_label(("re=g,ion",), ("a=b,c=d",)), segment_label(("age", "tier"), (">=50", "gold")))
    re\=g\,ion=a=b\,c=d age=>=50,tier=gold
    """
    def escaped(text: str, equals: bool) -> str:
        text = text.replace("\\", "\\\\").replace(",", "\\,")
        return text.replace("=", "\\=") if equals else text

    return ",".join(f"{escaped(k, True)}={escaped(v, False)}" for k, v in zip(keys, values))


def segment_values(label: str) -> dict[str, str] | None:
    r"""The ``key: value`` pairs of a label ``segment_label`` made; None for ``(missing)`` and ``(other)``, which
    stand for rows of no one combination.

    >>> segment_values(segment_label(("re=g,ion", "age"), ("a=b,c=d", ">=50")))
    {'re=g,ion': 'a=b,c=d', 'age': '>=50'}
    >>> segment_values(OTHER) is None
    True
    """
    if label in (OTHER, MISSING):
        return None
    out: dict[str, str] = {}
    key, text, in_key, escaped = None, [], True, False
    for ch in label + ",":
        if escaped:
            text.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "=" and in_key:
            key, text, in_key = "".join(text), [], False
        elif ch == ",":
            if key is None:
                return None  # not a label segment_label made
            out[key] = "".join(text)
            key, text, in_key = None, [], True
        else:
            text.append(ch)
    return out


class SegmentCounts:
    """Per segment: predictions (row weights), and per feature the weighted count of each grid bin (numeric) or
    category bucket (categorical), and a numeric feature's Σw and Σw·x (its mean, for attribution)."""

    def __init__(self, by: tuple[str, ...], max_segments: int = DEFAULT_MAX_SEGMENTS,
                 buckets: int = DEFAULT_BUCKETS, bins: dict[str, list[float]] | None = None) -> None:
        self.by = tuple(by)
        self.bins = {k: sorted(float(e) for e in v) for k, v in (bins or {}).items() if k in self.by and v}
        """A numeric key → its declared edges: its segments are the intervals (``age=[18..30)``), not its values."""
        self.max_segments = max(2, max_segments)
        self.buckets = buckets
        self.labels: list[str] = []
        self._index: dict[str, int] = {}
        self._seen: dict[tuple[str, ...], tuple[int, str]] = {}
        """Combinations of ``by`` values met → their segment and label (a cache: labels are built once; a pooled
        combination's label is what its volume is kept under)."""
        self.weights = np.zeros(0)
        self.kinds: dict[str, str] = {}
        self.cells: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        """Feature → (sorted ids ``segment * width + cell``, their weighted counts)."""
        self.moments: dict[str, np.ndarray] = {}
        """Numeric feature → per segment [Σw, Σw·x] over its finite values."""
        self.ranked: list[str] = []
        """A window set's template: the labels a new window admits first (``rank_from``)."""
        self.pooled: dict[str, float] = {}
        """Labels pooled as ``(other)`` → their volume (bounded): ``rank_from`` ranks them with the admitted ones."""

    def empty_like(self) -> SegmentCounts:
        """Empty counts segmented alike; the ``ranked`` labels (a window set's) admitted first, in that order."""
        out = SegmentCounts(self.by, self.max_segments, self.buckets, self.bins)
        for label in self.ranked:
            out._admit(label)
        return out

    def rank_from(self, window: SegmentCounts) -> None:
        """Rank segments by ``window``'s volume (the newest window, when a new one starts): the new window admits
        those first, so past ``max_segments`` the busiest keep their own place and the rest pool as ``(other)``,
        re-evaluated every window; a segment idle for a whole window is not carried on.

        >>> a = SegmentCounts(("r",), max_segments=3)
        >>> a.labels, a.weights, a.pooled = ["x", "y", OTHER], np.array([1.0, 9.0, 6.0]), {"z": 5.0, "w": 1.0}
        >>> t = SegmentCounts(("r",), max_segments=3); t.rank_from(a); t.empty_like().labels
        ['y', 'z']
        """
        volume = {label: float(w) for label, w in zip(window.labels, window.weights) if w > 0 and label != OTHER}
        volume.update(window.pooled)
        self.ranked = sorted(volume, key=lambda label: -volume[label])[:self.max_segments - 1]

    def width(self, name: str) -> int:
        return NUMERIC_GRID_BINS if self.kinds.get(name) == NUMERIC else self.buckets

    # --- segments --------------------------------------------------------------------------------------
    def _admit(self, label: str) -> int:
        i = self._index.get(label)
        if i is not None:
            return i
        if label != OTHER and len(self.labels) >= self.max_segments - 1:
            return self._admit(OTHER)  # the last place is kept for everything beyond
        i = self._index[label] = len(self.labels)
        self.labels.append(label)
        self.weights = np.append(self.weights, 0.0)
        for name, m in self.moments.items():
            self.moments[name] = np.vstack([m, np.zeros((1, 2))])
        return i

    def segment_of(self, batch: ColumnarBatch) -> np.ndarray:
        """Each row's segment index (new labels admitted). Vectorized over rows: each ``by`` column's distinct
        values are found once, combined as codes, and only the distinct combinations become labels."""
        n = batch.n_rows
        code = np.zeros(n, np.int64)
        columns: list[list[str]] = []
        for key in self.by:
            # The span's own segment attribute (ml.segment.<key>) if it has one, else the feature of that name.
            name = SEGMENT_COLUMN_PREFIX + key
            if name not in batch.categorical and name not in batch.numeric:
                name = key
            if name in batch.categorical:
                unique, inverse = np.unique(batch.categorical[name], return_inverse=True)
                texts = [str(u) for u in unique]
            elif name in batch.numeric and key in self.bins:  # declared bins: the interval each value is in
                values, edges = batch.numeric[name], self.bins[key]
                inverse = np.where(np.isfinite(values), np.searchsorted(edges, values, side="right") + 1, 0)
                texts = interval_labels(edges)
            elif name in batch.numeric:
                unique, inverse = np.unique(batch.numeric[name], return_inverse=True)
                texts = [f"{u:g}" if np.isfinite(u) else "" for u in unique.tolist()]
            else:
                inverse, texts = np.zeros(n, np.int64), [""]
            code = code * len(texts) + inverse
            columns.append(texts)
        combos, rows = np.unique(code, return_inverse=True)
        index, pooled = [], []
        for k, c in enumerate(combos.tolist()):
            parts = []
            for texts in reversed(columns):
                c, at = divmod(c, len(texts))
                parts.append(texts[at])
            key = tuple(reversed(parts))
            seen = self._seen.get(key)
            if seen is None:  # a combination not met before: its label, admitted (or pooled) once
                label = MISSING if any(v == "" for v in key) else segment_label(self.by, key)
                seen = self._seen[key] = (self._admit(label), label)
            i, label = seen
            if self.labels[i] == OTHER:
                pooled.append((k, label))
            index.append(i)
        if pooled:  # the volume of what is pooled, so that a busy newcomer gets its own place next window
            volume = np.bincount(rows, weights=batch.row_weight, minlength=len(combos))
            for k, label in pooled:
                self.pooled[label] = self.pooled.get(label, 0.0) + float(volume[k])
            if len(self.pooled) > 4 * self.max_segments:  # bounded: the busiest kept
                self.pooled = dict(sorted(self.pooled.items(), key=lambda kv: -kv[1])[:2 * self.max_segments])
        return np.array(index, dtype=np.int64)[rows]

    def row_labels(self, batch: ColumnarBatch) -> np.ndarray:
        """Each row's segment label (new labels admitted): what the label join keeps with a waiting prediction, so
        that its outcome counts in its segment's performance too.

        >>> import numpy as np
        >>> from otel_ml.decode.batch import ColumnarBatch
        >>> t = np.array(["a", "b", "a"])
        >>> b = ColumnarBatch("m", "", 3, np.zeros(3, np.int64), np.ones(3), categorical={"t": t})
        >>> SegmentCounts(("t",)).row_labels(b).tolist()
        ['t=a', 't=b', 't=a']
        """
        index = self.segment_of(batch)  # first: it may admit labels
        return np.asarray(self.labels, dtype=str)[index]  # fixed-width text: no Python object per row

    # --- update and merge ------------------------------------------------------------------------------
    def update(self, batch: ColumnarBatch, kinds: dict[str, str], grids: dict[str, Grid]) -> None:
        """Add a batch: its rows' segments, and each feature's values in the window's grid bins or buckets (a
        numeric feature without a grid yet is left out, as it is from the window's exact counts)."""
        if not batch.n_rows:
            return
        seg = self.segment_of(batch)
        weight = batch.row_weight
        per_segment = np.bincount(seg, weights=weight, minlength=len(self.labels))
        self.weights += per_segment
        for name, kind in kinds.items():
            if name in self.by:
                continue
            if kind == NUMERIC:
                values, grid = batch.numeric.get(name), grids.get(name)
                if values is None or grid is None:
                    continue
                ok = np.isfinite(values)
                every = bool(ok.all())  # the usual batch: no value missing, no masks to apply
                v, s, w = (values, seg, weight) if every else (values[ok], seg[ok], weight[ok])
                self._add(name, NUMERIC, s * NUMERIC_GRID_BINS + grid_bins(v, grid), w)
                moments = self.moments.setdefault(name, np.zeros((len(self.labels), 2)))
                moments[:, 0] += per_segment if every else np.bincount(s, weights=w, minlength=len(self.labels))
                moments[:, 1] += np.bincount(s, weights=w * v, minlength=len(self.labels))
            elif kind == CATEGORICAL:
                values = batch.categorical.get(name)
                if values is None:
                    continue
                ok = values != ""
                unique, inverse = np.unique(values[ok], return_inverse=True)
                buckets = np.array([category_bucket(str(u), self.buckets) for u in unique], dtype=np.int64)
                self._add(name, CATEGORICAL, seg[ok] * self.buckets + buckets[inverse], weight[ok])

    def _add(self, name: str, kind: str, ids: np.ndarray, weights: np.ndarray) -> None:
        self.kinds.setdefault(name, kind)
        unique, counts = cell_sums(ids, weights)
        old = self.cells.get(name)
        if old is None:
            order = np.argsort(unique)
            self.cells[name] = (unique[order], counts[order])
            return
        at = np.searchsorted(old[0], unique)
        if len(old[0]) and (at < len(old[0])).all() and (old[0][at] == unique).all():
            old[1][at] += counts  # the usual batch: cells seen before (unique, so no repeated index)
            return
        both, where = np.unique(np.concatenate([old[0], unique]), return_inverse=True)
        self.cells[name] = (both, np.bincount(where, weights=np.concatenate([old[1], counts]),
                                              minlength=len(both)))

    def merge(self, other: SegmentCounts) -> None:
        """Add ``other`` (another window, partition or chunk of the same model), its segments matched by label."""
        self._absorb([other])

    @staticmethod
    def merged(parts: list[SegmentCounts]) -> SegmentCounts:
        """The merge of many (a horizon's windows) in one pass per feature, instead of ``merge`` window after
        window (measured 10× faster for 15 windows of 10 segments × 50 features, bench.segment_cost)."""
        out = parts[0].empty_like()
        out._absorb(parts)
        return out

    def _absorb(self, parts: list[SegmentCounts]) -> None:
        """Add every part: its segments matched by label, each feature's cells remapped and counted with one
        ``bincount`` for all parts (a part where the feature has another kind than here is left out: its counts do
        not add up)."""
        remaps = [np.array([self._admit(label) for label in p.labels], dtype=np.int64) for p in parts]
        for p, remap in zip(parts, remaps):
            if len(remap):
                np.add.at(self.weights, remap, p.weights)
        for name in dict.fromkeys(name for p in parts for name in p.cells):
            kind = self.kinds.get(name) or next(p.kinds[name] for p in parts if name in p.cells)
            ids, counts = [], []
            for p, remap in zip(parts, remaps):
                if name in p.cells and p.kinds[name] == kind:
                    width = p.width(name)
                    ids.append(remap[p.cells[name][0] // width] * width + p.cells[name][0] % width)
                    counts.append(p.cells[name][1])
            if ids:
                self._add(name, kind, np.concatenate(ids), np.concatenate(counts))
        for name in dict.fromkeys(name for p in parts for name in p.moments):
            mine = self.moments.setdefault(name, np.zeros((len(self.labels), 2)))
            for p, remap in zip(parts, remaps):
                if name in p.moments:
                    np.add.at(mine, remap, p.moments[name])
        for p in parts:
            for label, volume in p.pooled.items():
                self.pooled[label] = self.pooled.get(label, 0.0) + volume

    # --- reading ----------------------------------------------------------------------------------------
    def table(self, name: str, segment: int) -> np.ndarray:
        """Dense counts of ``name``'s cells in ``segment`` (zeros when none)."""
        width = self.width(name)
        out = np.zeros(width)
        found = self.cells.get(name)
        if found is not None:
            ids, counts = found
            lo, hi = np.searchsorted(ids, [segment * width, (segment + 1) * width])
            out[ids[lo:hi] - segment * width] = counts[lo:hi]
        return out

    def tables(self, name: str) -> np.ndarray:
        """Dense counts of ``name``'s cells in every segment: segments × width (``table`` of each)."""
        width = self.width(name)
        out = np.zeros(len(self.labels) * width)
        found = self.cells.get(name)
        if found is not None:
            out[found[0]] = found[1]
        return out.reshape(len(self.labels), width)

    def means(self, name: str) -> np.ndarray:
        """Each segment's weighted mean of a numeric feature (NaN without values)."""
        m = self.moments.get(name)
        if m is None:
            return np.full(len(self.labels), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            return m[:, 1] / m[:, 0]

    # --- serialization -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def b64(a: np.ndarray) -> str:
            return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")

        return {"by": list(self.by), "max_segments": self.max_segments, "buckets": self.buckets,
                **({"bins": self.bins} if self.bins else {}),
                "labels": list(self.labels), "weights": self.weights.tolist(), "kinds": dict(self.kinds),
                "cells": {name: [b64(ids.astype("<i8")), b64(counts.astype("<f8"))]
                          for name, (ids, counts) in self.cells.items()},
                "moments": {name: m.tolist() for name, m in self.moments.items()},
                **({"pooled": dict(self.pooled)} if self.pooled else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmentCounts:
        s = cls(tuple(d["by"]), int(d["max_segments"]), int(d["buckets"]), d.get("bins"))
        s.labels = [str(label) for label in d["labels"]]
        s._index = {label: i for i, label in enumerate(s.labels)}
        s.weights = np.array(d["weights"], dtype=np.float64).reshape(len(s.labels))
        s.kinds = {str(k): str(v) for k, v in d.get("kinds", {}).items()}
        for name, (ids, counts) in d.get("cells", {}).items():
            s.cells[name] = (np.frombuffer(base64.b64decode(ids), "<i8").astype(np.int64),
                             np.frombuffer(base64.b64decode(counts), "<f8").astype(np.float64))
        s.moments = {name: np.array(m, dtype=np.float64).reshape(len(s.labels), 2)
                     for name, m in d.get("moments", {}).items()}
        s.pooled = {str(k): float(v) for k, v in d.get("pooled", {}).items()}
        return s
