"""Per-feature profiles: a sketch of the values plus the counts that data quality and decisions need.

Each profile follows one pattern: ``update(values)`` with a whole numpy array, read methods,
``merge(other)`` (exact for counts and moments; sketch merge for the distribution), and
``to_dict()``/``from_dict()`` for baselines and state.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import datasketches as ds
import numpy as np

NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass(frozen=True)
class SketchConfig:
    kll_k: int = 200
    """KLL accuracy parameter: normalized rank error ≈ 2.296 / k^0.9723 (k=200 → 1.33%, 99% confidence)."""
    frequent_items_lg_max_map_size: int = 10
    """log2 of the frequent-items map: counts are exact below 0.75 · 2^lg distinct categories (768)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class NumericProfile:
    """A numeric feature: KLL sketch, exact moments, and counts of present / missing / mismatched values.

    >>> p = NumericProfile()
    >>> p.update(np.array([1.0, 2.0, np.nan, 4.0]))
    >>> p.count, p.missing, round(p.mean, 3), p.quantile(0.5)
    (3, 1, 2.333, 2.0)
    >>> q = NumericProfile(); q.update(np.array([10.0])); p.merge(q)
    >>> p.count, p.max
    (4, 10.0)
    """

    kind = NUMERIC
    # Tens of thousands of these live at once (features × windows): no per-instance __dict__.
    __slots__ = ("_items", "m2", "mean", "mismatch", "missing", "sketch")

    def __init__(self, config: SketchConfig | None = None) -> None:
        self._items: tuple[int, np.ndarray, np.ndarray] | None = None
        self.sketch = ds.kll_doubles_sketch((config or SketchConfig()).kll_k)
        self.missing = 0
        self.mismatch = 0
        # Exact moments (Chan et al. parallel update) so the Wasserstein normalization needs no sketch.
        self.mean = 0.0
        self.m2 = 0.0

    @property
    def count(self) -> int:
        """Values sketched (present and numeric)."""
        return int(self.sketch.n)

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

    def update(self, values: np.ndarray, mismatch: int = 0) -> None:
        """Add an array of values; NaN and ±inf count as missing. ``mismatch`` counts values of the wrong
        type (NaN in ``values``)."""
        present = values[np.isfinite(values)]
        self.missing += len(values) - len(present) - mismatch
        self.mismatch += mismatch
        if len(present):
            self._add_moments(len(present), float(present.mean()), float(((present - present.mean()) ** 2).sum()))
            self.sketch.update(np.ascontiguousarray(present, dtype=np.float64))

    def _add_moments(self, n_b: int, mean_b: float, m2_b: float) -> None:
        n_a = self.count  # sketch not yet updated with the new values
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * n_a * n_b / n

    def merge(self, other: NumericProfile) -> None:
        if other.count:
            self._add_moments(other.count, other.mean, other.m2)
            self.sketch.merge(other.sketch)
        self.missing += other.missing
        self.mismatch += other.mismatch

    def quantile(self, q: float) -> float:
        return float(self.sketch.get_quantile(q)) if self.count else math.nan

    def rank_error(self) -> float:
        """Bound on |sketch CDF − true CDF| at any single point (99% confidence); 0 when exact."""
        return float(self.sketch.normalized_rank_error(False)) if self.sketch.is_estimation_mode() else 0.0

    def weighted_items(self) -> tuple[np.ndarray, np.ndarray]:
        """The sketch's retained values and their weights, sorted by value: a weighted empirical distribution
        whose total weight is ``count``. When the sketch is not in estimation mode this is the exact data."""
        if not self.count:
            return np.empty(0), np.empty(0)
        cached = self._items
        if cached is not None and cached[0] == self.count:  # a reference is read at every evaluation
            return cached[1], cached[2]
        pairs = np.array(list(self.sketch), dtype=np.float64)  # one pass over the sketch's iterator
        order = np.argsort(pairs[:, 0], kind="stable")
        self._items = (self.count, pairs[order, 0], pairs[order, 1])
        return self._items[1], self._items[2]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": NUMERIC, "kll": _b64(self.sketch.serialize()), "missing": self.missing,
                "mismatch": self.mismatch, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumericProfile:
        p = cls.__new__(cls)
        p._items = None
        p.sketch = ds.kll_doubles_sketch.deserialize(base64.b64decode(d["kll"]))
        p.missing, p.mismatch = int(d["missing"]), int(d["mismatch"])
        p.mean, p.m2 = float(d["mean"]), float(d["m2"])
        return p

    def empty_like(self) -> NumericProfile:
        return NumericProfile(SketchConfig(kll_k=self.sketch.k))


class CategoricalProfile:
    """A categorical feature: frequent-items sketch and counts of present / missing / mismatched values.

    >>> p = CategoricalProfile()
    >>> p.update(np.array(["a", "b", "a", ""]))
    >>> p.count, p.missing, p.frequencies()
    (3, 1, {'a': 2, 'b': 1})
    """

    kind = CATEGORICAL
    __slots__ = ("lg_max_map_size", "mismatch", "missing", "sketch")

    def __init__(self, config: SketchConfig | None = None) -> None:
        self.lg_max_map_size = (config or SketchConfig()).frequent_items_lg_max_map_size
        self.sketch = ds.frequent_strings_sketch(self.lg_max_map_size)
        self.missing = 0
        self.mismatch = 0

    @property
    def count(self) -> int:
        return int(self.sketch.total_weight)

    @property
    def rows(self) -> int:
        return self.count + self.missing + self.mismatch

    def update(self, values: np.ndarray, mismatch: int = 0) -> None:
        """Add an array of strings; ``""`` counts as missing. Updates the sketch once per distinct value."""
        present = values[values != ""]
        self.missing += len(values) - len(present) - mismatch
        self.mismatch += mismatch
        if len(present):
            uniq, counts = np.unique(present, return_counts=True)
            for item, c in zip(uniq.tolist(), counts.tolist()):
                self.sketch.update(item, c)

    def merge(self, other: CategoricalProfile) -> None:
        self.sketch.merge(other.sketch)
        self.missing += other.missing
        self.mismatch += other.mismatch

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
        return {"kind": CATEGORICAL, "frequent_items": _b64(self.sketch.serialize()),
                "lg_max_map_size": self.lg_max_map_size, "missing": self.missing, "mismatch": self.mismatch}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CategoricalProfile:
        p = cls.__new__(cls)
        p.lg_max_map_size = int(d["lg_max_map_size"])
        p.sketch = ds.frequent_strings_sketch.deserialize(base64.b64decode(d["frequent_items"]))
        p.missing, p.mismatch = int(d["missing"]), int(d["mismatch"])
        return p

    def empty_like(self) -> CategoricalProfile:
        return CategoricalProfile(SketchConfig(frequent_items_lg_max_map_size=self.lg_max_map_size))


FeatureProfile = NumericProfile | CategoricalProfile


def new_profile(kind: str, config: SketchConfig) -> FeatureProfile:
    return NumericProfile(config) if kind == NUMERIC else CategoricalProfile(config)


def profile_from_dict(d: dict[str, Any]) -> FeatureProfile:
    return NumericProfile.from_dict(d) if d["kind"] == NUMERIC else CategoricalProfile.from_dict(d)
