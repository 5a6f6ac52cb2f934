"""Per-feature profiles: a sketch of the values plus the counts that data quality and decisions need.

Each profile follows one pattern: ``update(values)`` with a whole numpy array, read methods,
``merge(other)`` (exact for counts and moments; sketch merge for the distribution), and
``to_dict()``/``from_dict()`` for baselines and state.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datasketches as ds
import numpy as np

try:  # the compiled column pass (setup.py builds it; optional there, like the decoder): numpy without it
    from otel_ml.profile import _columns
except ImportError:  # pragma: no cover - without a C compiler at install
    _columns = None  # type: ignore[assignment]

NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass(frozen=True)
class SketchConfig:
    kll_k: int = 200
    """KLL accuracy parameter: normalized rank error ≈ 2.296 / k^0.9723 (k=200 → 1.33%, 99% confidence)."""
    frequent_items_lg_max_map_size: int = 10
    """log2 of the frequent-items map: counts are exact below 0.75 · 2^lg distinct categories (768)."""
    category_buckets: int = 2048
    """Exact counts per categorical feature in this many buckets of a hash of the category: the drift test of a
    feature with more categories than the frequent-items sketch holds exactly runs on them (docs/statistics.md).
    Kept sparse: 12 bytes per bucket in use, so a feature of 5 categories costs 60 bytes per window and one of
    thousands at most 24 KB (its frequent-items sketch takes more)."""


NUMERIC_GRID_BINS = 512
"""Bins of a numeric feature's grid: exact counts in them carry the KS test (docs/statistics.md)."""
_ASINH_SPAN = 16.0
"""The grid covers asinh((x - center) / scale) in [-16, 16]: |x - center| up to ~4·10^6 scales; beyond, the
outermost bins."""
GRID_MIN_VALUES = 10
"""Values a batch needs before the feature's grid is chosen from them (median and spread). A rough scale is
enough: the grid's resolution only has to be fine where the values are, and asinh keeps it fine over decades."""

Grid = tuple[float, float]
"""(center, scale) of a numeric feature's binning."""

EXEMPLAR_BAND_EDGES = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)
"""Where a numeric feature's example spans (profile/exemplars.py) are kept apart, in asinh(z) of its grid: z = ±0.52,
±1.18, ±3.63 (z in the grid's scale, about σ), 8 bands: the centre's four, then the shoulders and the tails."""
EXEMPLAR_SLOT_OF_BIN = np.searchsorted(
    np.array([(e + _ASINH_SPAN) * NUMERIC_GRID_BINS / (2 * _ASINH_SPAN) for e in EXEMPLAR_BAND_EDGES]),
    np.arange(NUMERIC_GRID_BINS), side="right").astype(np.int8)
"""The exemplar band (0-7) of each grid bin: bands are whole bins."""


def choose_grid(values: np.ndarray) -> Grid:
    """Center and scale for a feature's bins from a sample: the median, and the interquartile range over 1.349
    (σ for normal data), else the standard deviation, else 1% of the center (at least 0.001) for constant data.

    >>> choose_grid(np.arange(101.0))
    (50.0, 37.06449221645663)
    """
    values = values[np.isfinite(values)]
    q25, center, q75 = (float(v) for v in np.quantile(values, [0.25, 0.5, 0.75]))
    return grid_from_quantiles(q25, center, q75, float(np.std(values)))


def grid_from_quantiles(q25: float, median: float, q75: float, std: float) -> Grid:
    """``choose_grid`` from a summary (a sketch's quartiles and the exact standard deviation)."""
    scale = q75 / 1.349 - q25 / 1.349  # not (q75 - q25) / 1.349: that overflows for quartiles near ±1.7e308
    if not 0 < scale < math.inf:
        scale = std
    if not 0 < scale < math.inf:  # one value so far: bins log-spaced around it (consecutive integers up to ~15)
        scale = max(abs(median) * 0.01, 1e-3)
    return median, scale


def grid_bins(values: np.ndarray, grid: Grid) -> np.ndarray:
    """The bin of each (finite) value: asinh((x - center) / scale) cut into NUMERIC_GRID_BINS equal parts of
    [-16, 16], so bins are about scale/16 wide near the center and grow logarithmically in the tails (a heavy
    tail or an offset feature keeps its resolution where its values are).

    >>> grid_bins(np.array([-1e9, 0.0, 0.05, 1.0, 1e9]), (0.0, 1.0)).tolist()
    [0, 256, 256, 270, 511]
    """
    center, scale = grid
    if _columns is not None:  # the same bins (_columns.c's tables reproduce this formula exactly), 4x faster
        values = np.ascontiguousarray(values, dtype=np.float64)
        ids = np.empty(len(values), np.int32)
        _columns.bins(values, center, scale, ids)
        return ids
    # In place, and np.minimum/np.maximum rather than np.clip: this runs once per feature and request, on arrays
    # of a few hundred values, where numpy's per-call overhead is most of the cost (11.8 -> 7.7 µs for 512).
    with np.errstate(over="ignore", invalid="ignore"):
        # With a finite center and 0 < scale < inf, z is finite or an overflow to ±inf of the right sign (values
        # and center near ±1.7e308 of opposite signs, or a tiny scale), never NaN; ±inf lands in an edge bin.
        z = np.subtract(values, center)
        z /= scale
        if not (math.isfinite(center) and 0 < scale < math.inf):  # a grid of overflowed quartiles: inf/inf is NaN
            far = ~np.isfinite(z)
            z[far] = np.where(values[far] > center, np.inf, -np.inf)
    np.arcsinh(z, out=z)
    z += _ASINH_SPAN
    z *= NUMERIC_GRID_BINS / (2 * _ASINH_SPAN)
    np.floor(z, out=z)
    np.minimum(z, NUMERIC_GRID_BINS - 1, out=z)
    np.maximum(z, 0, out=z)
    return z.astype(np.int32)


def cell_sums(ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct cells of ``ids`` (int64, not sorted) and the sums of their ``weights`` (cells summing to 0 left
    out), for segments' exact counts: compiled (``_columns.c``, a scratch table kept between calls), else bincount
    over every possible cell, then the cells hit.

    >>> ids, sums = cell_sums(np.array([7, 2, 7]), np.array([1.0, 0.5, 2.0]))
    >>> sorted(zip(ids.tolist(), sums.tolist()))
    [(2, 0.5), (7, 3.0)]
    """
    if _columns is None:
        dense = np.bincount(ids, weights=weights)
        unique = np.flatnonzero(dense)
        return unique, dense[unique]
    unique, sums = np.empty(len(ids), np.int64), np.empty(len(ids), np.float64)
    k = _columns.cell_sums(np.ascontiguousarray(ids, np.int64), np.ascontiguousarray(weights, np.float64), unique,
                           sums)
    return unique[:k], sums[:k]


def category_bucket(category: str, buckets: int) -> int:
    """The bucket of a category: CRC-32 of its UTF-8 text, modulo ``buckets``; the same in every process and
    version, so windows, baselines and checkpoints agree.

    >>> category_bucket("north", 2048), category_bucket("north", 2048) == category_bucket("north", 2048)
    (194, True)
    """
    return zlib.crc32(category.encode("utf-8", "surrogatepass")) % buckets

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kll_items(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The retained values of a serialized KLL doubles sketch and their weights (2^level).

    The same pairs as iterating the sketch, ~10× faster (docs/benchmarks.md): iteration builds a Python tuple
    per item, and drift evaluation reads every numeric sketch of the horizon. The
    layout is DataSketches' documented KLL format (serial versions 1 and 2): an 8-byte preamble; then, unless
    the sketch is empty or holds one item, n (u64), min_k (u16), the level count (u8), a spare byte, the start
    of each level (u32) and min and max; then the retained items, level by level from level 0.

    >>> s = ds.kll_doubles_sketch(200); s.update(np.array([3.0, 1.0, 2.0]))
    >>> v, w = kll_items(s.serialize()); sorted(v.tolist()), w.tolist()
    ([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    """
    if len(data) <= 8:  # empty
        return np.empty(0), np.empty(0)
    if len(data) == 16:  # one item, no levels
        return np.frombuffer(data, dtype="<f8", offset=8).copy(), np.ones(1)
    num_levels = data[18]
    levels = np.frombuffer(data, dtype="<u4", count=num_levels, offset=20).astype(np.int64)
    values = np.frombuffer(data, dtype="<f8", offset=20 + 4 * num_levels + 16)
    bounds = np.append(levels - levels[0], len(values))
    weights = np.repeat(2.0 ** np.arange(num_levels), np.diff(bounds))
    return values.copy(), weights


def _kll_n(data: bytes) -> int:
    """Values a serialized KLL sketch has seen (same layout as ``kll_items``)."""
    return 0 if len(data) <= 8 else 1 if len(data) == 16 else int.from_bytes(data[8:16], "little")


_BIN_BITS = 9  # NUMERIC_GRID_BINS = 512 bins: an id fits in 9 bits


def _pack(ids: np.ndarray, counts: np.ndarray) -> bytes:
    """Bins in use as one word each, count << 9 | id: 4 bytes per bin while every count is below 2^23 (a bytes
    object, not two arrays: the arrays' headers cost more than the tens of bins a settled window holds), else 8.

    >>> _unpack(_pack(np.array([3, 500]), np.array([7, 2**40])))
    (array([  3, 500]), array([            7, 1099511627776]))
    """
    words = (counts.astype(np.uint64) << np.uint64(_BIN_BITS)) | ids.astype(np.uint64)
    small = not len(counts) or int(counts.max()) < 2**(32 - _BIN_BITS)
    return (b"\x04" + words.astype("<u4").tobytes()) if small else (b"\x08" + words.astype("<u8").tobytes())


def _unpack(packed: bytes) -> tuple[np.ndarray, np.ndarray]:
    if not packed:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    words = np.frombuffer(packed, "<u4" if packed[0] == 4 else "<u8", offset=1).astype(np.int64)
    return words & (NUMERIC_GRID_BINS - 1), words >> _BIN_BITS


def _summarize(values: np.ndarray, grid: Grid | None, bins: np.ndarray | None,
               last: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[int, float, float]:
    """Count, mean and sum of squared deviations of the finite ``values`` (float64, contiguous), each counted
    into ``bins`` (dense counts on ``grid``) when given: one compiled pass (``_columns.c``), else numpy. ``last``
    (with a grid): int32 and float64 arrays of the 8 exemplar bands (``EXEMPLAR_SLOT_OF_BIN``), which receive the
    index and value of the last value in each band (the index stays -1 where none fell).

    >>> b, last = np.zeros(NUMERIC_GRID_BINS, np.uint16), (np.full(8, -1, np.int32), np.zeros(8))
    >>> _summarize(np.array([1.0, 3.0, np.nan, np.inf, 3.5]), (2.0, 1.0), b, last), np.flatnonzero(b).tolist()
    ((3, 2.5, 3.5), [241, 270, 275])
    >>> last[0].tolist(), last[1][[2, 6]].tolist()
    ([-1, -1, 0, -1, -1, 1, 4, -1], [1.0, 3.5])
    """
    if _columns is not None:
        center, scale = grid if grid is not None else (0.0, 1.0)
        if last is not None and grid is not None:
            return _columns.summarize(values, center, scale, bins, EXEMPLAR_SLOT_OF_BIN, *last)
        return _columns.summarize(values, center, scale, bins)
    finite = np.isfinite(values)
    present = values[finite]
    if not len(present):
        return 0, 0.0, 0.0
    mean = float(present.mean())
    if grid is not None and (bins is not None or last is not None):
        ids = grid_bins(present, grid)
        if bins is not None:
            bins += np.bincount(ids, minlength=NUMERIC_GRID_BINS).astype(bins.dtype)
        if last is not None:  # the first of the reversed order is the last
            bands, at = np.unique(EXEMPLAR_SLOT_OF_BIN[ids][::-1], return_index=True)
            rows = np.flatnonzero(finite)[::-1][at]
            last[0][bands], last[1][bands] = rows, values[rows]
    return len(present), mean, float(np.square(present - mean).sum())


class NumericProfile:
    """A numeric feature: KLL sketch, exact moments, and counts of present / missing / mismatched values.

    >>> p = NumericProfile()
    >>> p.update(np.array([1.0, 2.0, np.nan, 4.0]))
    >>> p.count, p.missing, round(p.mean, 3), p.quantile(0.5)
    (3, 1, 2.333, 2.0)
    >>> q = NumericProfile(); q.update(np.array([10.0])); p.merge(q)
    >>> p.count, p.max
    (4, 10.0)

    ``compact()`` keeps the sketch serialized (2.6 KB instead of ~5 KB for a 1,000-row window at k=200: the
    live sketch allocates its full capacity). Windows that no longer fill are compacted; reading them
    deserializes a transient copy, and updating one makes it live again.

    >>> median = p.quantile(0.5); p.compact()
    >>> p.count, p.quantile(0.5) == median, p.is_compact
    (4, True, True)
    """

    kind = NUMERIC
    # Tens of thousands of these live at once (features × windows): no per-instance __dict__.
    __slots__ = ("_bins", "_blob", "_items", "_live", "_n", "_packed", "grid", "m2", "mean", "mismatch", "missing")

    def __init__(self, config: SketchConfig | None = None, grid: Grid | None = None) -> None:
        self._items: tuple[int, np.ndarray, np.ndarray, dict[Any, Any]] | None = None
        self._live: ds.kll_doubles_sketch | None = ds.kll_doubles_sketch((config or SketchConfig()).kll_k)
        self._blob = b""
        self._n = 0
        self.missing = 0
        self.mismatch = 0
        # Exact moments (Chan et al. parallel update) so the Wasserstein normalization needs no sketch.
        self.mean = 0.0
        self.m2 = 0.0
        self.grid = grid
        """The feature's binning when every value of this profile was counted in it (``grid_bins``), else None: a
        profile made before the feature had a grid, or merged with one on another grid."""
        self._packed = b""
        """While compact: the exact count of each bin in use, one word per bin (``_pack``): tens of thousands of
        settled windows hold these, and a settled window of a thousand values uses tens of bins."""
        self._bins: np.ndarray | None = None
        """The counts as one array of NUMERIC_GRID_BINS while the profile is written to (a filling window, a
        horizon being merged): a bincount per batch instead of a sparse merge. ``compact()`` packs them."""

    def _dense_bins(self, adding: int) -> np.ndarray:
        """The dense counts, about to receive ``adding`` more values, in the smallest type no bin can overflow
        (no bin exceeds the total count): uint16 (1 KB) for a window of up to 65,535 values, then int32, int64."""
        total = self.count + adding
        dtype = np.uint16 if total < 2**16 else np.int32 if total < 2**31 else np.int64
        if self._bins is None:
            self._bins = np.zeros(NUMERIC_GRID_BINS, dtype)
            ids, counts = _unpack(self._packed)
            self._bins[ids] = counts
            self._packed = b""
        elif np.dtype(dtype).itemsize > self._bins.dtype.itemsize:
            self._bins = self._bins.astype(dtype)
        return self._bins

    def _sparse_bins(self) -> tuple[np.ndarray, np.ndarray]:
        """(bin ids, counts) of the bins in use, ids sorted."""
        if self._bins is None:
            return _unpack(self._packed)
        ids = np.flatnonzero(self._bins)
        return ids, self._bins[ids].astype(np.int64)

    def bin_table(self) -> np.ndarray | None:
        """Count per grid bin (dense), or None without a grid."""
        if self.grid is None:
            return None
        if self._bins is not None:
            return self._bins.astype(np.float64)
        dense = np.zeros(NUMERIC_GRID_BINS, np.float64)
        ids, counts = _unpack(self._packed)
        dense[ids] = counts
        return dense

    def _drop_grid(self) -> None:
        self.grid, self._bins, self._packed = None, None, b""

    @property
    def sketch(self) -> ds.kll_doubles_sketch:
        """The KLL sketch, for reading (a transient copy when compact)."""
        return self._live if self._live is not None else ds.kll_doubles_sketch.deserialize(self._blob)

    def _own(self) -> ds.kll_doubles_sketch:
        """The live sketch, for writing: a compact profile becomes live again."""
        if self._live is None:
            self._live = ds.kll_doubles_sketch.deserialize(self._blob)
            self._blob = b""
        return self._live

    @property
    def is_compact(self) -> bool:
        return self._live is None

    def compact(self) -> None:
        if self._bins is not None:
            self._packed = _pack(*self._sparse_bins())
            self._bins = None
        if self._live is not None:
            self._blob = self._live.serialize()
            self._n = int(self._live.n)
            self._live = None

    def serialized(self) -> bytes:
        return self._blob if self._live is None else self._live.serialize()

    @property
    def count(self) -> int:
        """Values sketched (present and numeric)."""
        return self._n if self._live is None else int(self._live.n)

    @property
    def rows(self) -> int:
        return self.count + self.missing + self.mismatch

    @property
    def std(self) -> float:
        n = self.count
        return math.sqrt(self.m2 / (n - 1)) if n > 1 else 0.0

    @property
    def min(self) -> float:
        return float(self.sketch.get_min_value()) if self.count else math.nan

    @property
    def max(self) -> float:
        return float(self.sketch.get_max_value()) if self.count else math.nan

    def update(self, values: np.ndarray, mismatch: int = 0, last: tuple[np.ndarray, np.ndarray] | None = None
               ) -> None:
        """Add an array of values; NaN and ±inf count as missing. ``mismatch`` counts values of the wrong
        type (NaN in ``values``). ``last``: where each exemplar band's last value is written (``_summarize``; only
        with a grid)."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        bins = self._dense_bins(len(values)) if self.grid is not None and len(values) else None
        finite, mean, m2 = _summarize(values, self.grid, bins, last)
        self.missing += len(values) - finite - mismatch
        self.mismatch += mismatch
        if finite:
            self._add_moments(finite, mean, m2)
            # The usual case needs no copy; the sketch's binding takes writable arrays only (a file's are read-only).
            whole = finite == len(values) and values.flags.writeable
            self._own().update(values if whole else values[np.isfinite(values)])

    def _add_moments(self, n_b: int, mean_b: float, m2_b: float) -> None:
        n_a = self.count  # sketch not yet updated with the new values
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * n_a * n_b / n

    def merge(self, other: NumericProfile) -> None:
        if self.count == 0 and self.grid is None:
            self.grid = other.grid  # an empty profile takes the other's binning (a horizon built by merging)
        n = other.count
        if self.grid is not None and self.grid == other.grid:
            bins = self._dense_bins(n)  # a type that holds the sum: the other's counts fit it too
            if other._bins is not None:  # dense (a horizon's merge, a filling window): added as they are
                bins += other._bins.astype(bins.dtype, copy=False)
            else:
                ids, counts = _unpack(other._packed)
                bins[ids] += counts.astype(bins.dtype)  # ids are distinct: no np.add.at (several times slower)
        elif n or self.grid != other.grid:
            self._drop_grid()
        if n:
            self._add_moments(n, other.mean, other.m2)
            self._own().merge(other.sketch)
        self.missing += other.missing
        self.mismatch += other.mismatch

    def quantile(self, q: float) -> float:
        return float(self.sketch.get_quantile(q)) if self.count else math.nan

    def rank_error(self) -> float:
        """Bound on |sketch CDF − true CDF| at any single point (99% confidence); 0 when exact."""
        sketch = self.sketch
        return float(sketch.normalized_rank_error(False)) if sketch.is_estimation_mode() else 0.0

    def weighted_items(self) -> tuple[np.ndarray, np.ndarray]:
        """The sketch's retained values and their weights, sorted by value: a weighted empirical distribution
        whose total weight is ``count``. When the sketch is not in estimation mode this is the exact data."""
        if not self.count:
            return np.empty(0), np.empty(0)
        cached = self._items
        if cached is not None and cached[0] == self.count:  # a reference is read at every evaluation
            return cached[1], cached[2]
        values, weights = kll_items(self.serialized())
        order = np.argsort(values, kind="stable")
        self._items = (self.count, values[order], weights[order], {})
        return self._items[1], self._items[2]

    def derived(self, key: Any, compute: Callable[[tuple[np.ndarray, np.ndarray]], Any]) -> Any:
        """``compute(weighted_items())``, kept with them until the profile changes: what a comparison derives from
        a reference (its quantile bin edges and shares) is computed once, not at every evaluation."""
        items = self.weighted_items()
        if self._items is None:  # empty
            return compute(items)
        kept = self._items[3]
        if key not in kept:
            kept[key] = compute(items)
        return kept[key]

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": NUMERIC, "kll": _b64(self.serialized()), "missing": self.missing,
             "mismatch": self.mismatch, "mean": self.mean, "m2": self.m2}
        if self.grid is not None:
            ids, counts = self._sparse_bins()
            d["grid"] = {"center": self.grid[0], "scale": self.grid[1], "ids": _b64(ids.astype("<i4").tobytes()),
                         "counts": _b64(counts.astype("<i8").tobytes())}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumericProfile:
        """Read back ``to_dict``; the profile stays compact until it is updated or merged into."""
        p = cls.__new__(cls)
        p._items = None
        p._live = None
        p._blob = base64.b64decode(d["kll"])
        ds.kll_doubles_sketch.deserialize(p._blob)  # validates: a corrupt file fails here, not later
        p._n = _kll_n(p._blob)
        p.missing, p.mismatch = int(d["missing"]), int(d["mismatch"])
        p.mean, p.m2 = float(d["mean"]), float(d["m2"])
        g = d.get("grid")
        p.grid = (float(g["center"]), float(g["scale"])) if g else None
        p._bins = None
        p._packed = _pack(np.frombuffer(base64.b64decode(g["ids"]), "<i4"),
                          np.frombuffer(base64.b64decode(g["counts"]), "<i8")) if g else b""
        return p

    def empty_like(self) -> NumericProfile:
        k = self._live.k if self._live is not None else int.from_bytes(self._blob[4:6], "little")
        return NumericProfile(SketchConfig(kll_k=k), self.grid)


def _count_categories(values: np.ndarray) -> tuple[list[str], list[int], int, list[int]]:
    """The distinct non-empty strings of ``values`` (sorted), how often each occurs, how many are ``""``, and the
    index of each one's first occurrence: one compiled pass over a str array (``_columns.c``: a hash table, where
    ``np.unique`` sorted), else numpy.

    >>> _count_categories(np.array(["b", "", "a", "b"]))
    (['a', 'b'], [1, 2], 1, [2, 0])
    """
    if _columns is not None and values.dtype.kind == "U" and values.dtype.itemsize and values.flags.c_contiguous:
        distinct, counts, missing, first = _columns.count_categories(values, values.dtype.itemsize // 4)
        if len(distinct) > 1:  # the sketch's updates in one order whichever path ran: the state is the same
            distinct, counts, first = (list(t) for t in zip(*sorted(zip(distinct, counts, first))))
        return distinct, counts, missing, first
    where = np.flatnonzero(values != "")
    uniq, at, counts = np.unique(values[where], return_index=True, return_counts=True)
    return uniq.tolist(), counts.tolist(), len(values) - len(where), where[at].tolist()


class CategoricalProfile:
    """A categorical feature: frequent-items sketch and counts of present / missing / mismatched values.

    >>> p = CategoricalProfile()
    >>> p.update(np.array(["a", "b", "a", ""]))  # distinct values, their counts, each one's first index
    (['a', 'b'], [2, 1], [0, 1])
    >>> p.count, p.missing, p.frequencies()
    (3, 1, {'a': 2, 'b': 1})
    """

    kind = CATEGORICAL
    __slots__ = ("bucket_counts", "bucket_ids", "buckets", "lg_max_map_size", "mismatch", "missing", "sketch")

    def __init__(self, config: SketchConfig | None = None) -> None:
        config = config or SketchConfig()
        self.lg_max_map_size = config.frequent_items_lg_max_map_size
        self.sketch = ds.frequent_strings_sketch(self.lg_max_map_size)
        self.missing = 0
        self.mismatch = 0
        self.buckets: int | None = config.category_buckets
        """How many hash buckets (``category_bucket``) the exact counts use; None for a profile written before
        buckets existed, and after any merge with one (the counts would be incomplete)."""
        self.bucket_ids = np.empty(0, np.int32)
        """Buckets in use, sorted."""
        self.bucket_counts = np.empty(0, np.int64)
        """Exact count of each bucket in ``bucket_ids``."""

    def _add_buckets(self, ids: np.ndarray, counts: np.ndarray) -> None:
        at = np.searchsorted(self.bucket_ids, ids)
        if len(self.bucket_ids) and (at < len(self.bucket_ids)).all() and (self.bucket_ids[at] == ids).all():
            np.add.at(self.bucket_counts, at, counts)  # the usual batch: categories seen before, buckets in use
            return
        all_ids = np.concatenate([self.bucket_ids, ids.astype(np.int32)])
        all_counts = np.concatenate([self.bucket_counts, counts.astype(np.int64)])
        self.bucket_ids, inverse = np.unique(all_ids, return_inverse=True)
        self.bucket_counts = np.zeros(len(self.bucket_ids), np.int64)
        np.add.at(self.bucket_counts, inverse, all_counts)

    def bucket_table(self) -> np.ndarray | None:
        """Count per bucket (dense, ``buckets`` long), or None without buckets."""
        if self.buckets is None:
            return None
        dense = np.zeros(self.buckets, np.float64)
        dense[self.bucket_ids] = self.bucket_counts
        return dense

    @property
    def count(self) -> int:
        return int(self.sketch.total_weight)

    @property
    def rows(self) -> int:
        return self.count + self.missing + self.mismatch

    def update(self, values: np.ndarray, mismatch: int = 0) -> tuple[list[str], list[int], list[int]]:
        """Add an array of strings; ``""`` counts as missing. Updates the sketch once per distinct value. Returns
        the distinct values, their counts and each one's first index (what exemplars are taken from)."""
        distinct, counts, missing, first = _count_categories(values)
        self.missing += missing - mismatch
        self.mismatch += mismatch
        for item, c in zip(distinct, counts):
            self.sketch.update(item, c)
        if distinct and self.buckets is not None:
            b = self.buckets
            self._add_buckets(np.fromiter((category_bucket(u, b) for u in distinct), np.int32, len(distinct)),
                              np.asarray(counts, np.int64))
        return distinct, counts, first

    def merge(self, other: CategoricalProfile) -> None:
        self.sketch.merge(other.sketch)
        self.missing += other.missing
        self.mismatch += other.mismatch
        if self.buckets is not None and self.buckets == other.buckets:
            self._add_buckets(other.bucket_ids, other.bucket_counts)
        else:
            self.buckets, self.bucket_ids, self.bucket_counts = None, np.empty(0, np.int32), np.empty(0, np.int64)

    def is_exact(self) -> bool:
        """True while counts are exact (the sketch has never purged: max error 0)."""
        return self.max_error() == 0

    def max_error(self) -> int:
        """Largest possible error of any count (0 while exact)."""
        items = self.sketch.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        return max((ub - lb for _, _, lb, ub in items), default=0)

    def frequencies(self) -> dict[str, int]:
        """Estimated count per category (exact while ``is_exact()``); categories the sketch dropped are absent
        and their weight is ``count - sum(frequencies)``."""
        items = self.sketch.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        return {item: int(est) for item, est, _, _ in sorted(items)}

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": CATEGORICAL, "frequent_items": _b64(self.sketch.serialize()),
             "lg_max_map_size": self.lg_max_map_size, "missing": self.missing, "mismatch": self.mismatch}
        if self.buckets is not None:
            d["buckets"] = {"size": self.buckets, "ids": _b64(self.bucket_ids.astype("<i4").tobytes()),
                            "counts": _b64(self.bucket_counts.astype("<i8").tobytes())}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CategoricalProfile:
        p = cls.__new__(cls)
        p.lg_max_map_size = int(d["lg_max_map_size"])
        p.sketch = ds.frequent_strings_sketch.deserialize(base64.b64decode(d["frequent_items"]))
        p.missing, p.mismatch = int(d["missing"]), int(d["mismatch"])
        b = d.get("buckets")
        p.buckets = int(b["size"]) if b else None
        p.bucket_ids = np.frombuffer(base64.b64decode(b["ids"]), "<i4").astype(np.int32) if b else np.empty(0, np.int32)
        p.bucket_counts = (np.frombuffer(base64.b64decode(b["counts"]), "<i8").astype(np.int64) if b
                           else np.empty(0, np.int64))
        return p

    def empty_like(self) -> CategoricalProfile:
        return CategoricalProfile(SketchConfig(
            frequent_items_lg_max_map_size=self.lg_max_map_size,
            category_buckets=self.buckets or SketchConfig.category_buckets))


FeatureProfile = NumericProfile | CategoricalProfile


def new_profile(kind: str, config: SketchConfig, grid: Grid | None = None) -> FeatureProfile:
    return NumericProfile(config, grid) if kind == NUMERIC else CategoricalProfile(config)


def profile_from_dict(d: dict[str, Any]) -> FeatureProfile:
    return NumericProfile.from_dict(d) if d["kind"] == NUMERIC else CategoricalProfile.from_dict(d)
