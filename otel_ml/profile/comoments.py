"""Where correlations live: pairwise moments up to order four of a few numeric features, mergeable across windows.

A change in how features move together (a broken join pairing incomes with the wrong ages, a swapped sensor with
the same range) leaves every marginal distribution as it was, so no univariate test sees it. ``Comoments`` keeps,
for every pair (i, j) of a few numeric features, the sums of ``u_i^a u_j^b`` for ``a + b <= 4`` over the rows where
both are present: enough for each pair's Pearson correlation *and* the variance of its estimate whatever the
distribution (the delta method needs the fourth moments; the normal-theory ``(1 - r²)² / n`` is wrong by a factor
of several for skewed features, which would make a stationary model alarm).

What is correlated is ``t = asinh(x / s)``, ``s`` the power of ten at or below the feature's magnitude,
max(|median|, interquartile range), over its first 100 values or more: monotone, nearly linear up to ``s``,
logarithmic beyond. Incomes and other log-normal features have fourth moments so heavy that no sample of a few
thousand rows estimates them (the variance of r came out 40% low on a log-normal pair, so the test fired too
often); on ``t`` the estimate is within ~10% (tests/unit/test_multivariate_state.py). ``u = (t - shift) / scale``
on a fixed basis keeps the sums well conditioned. Sums add up, so windows merge into horizons and across Kafka
partitions; two moment sets on different bases are re-expressed on one by the binomial expansion before they add.
``s`` is coarse on purpose: Kafka partitions each choose it from their own first values and mostly agree. A feature
whose ``s`` differs between two sets (a magnitude within sampling error of a power of ten: a standard normal's
interquartile range, 1.35, is one) keeps the larger ``s``, and the rows of sets on a smaller one are left out of its
pairs. The rule is a maximum, so a merge is the same in any order and grouping: one replica merging six partitions,
or three replicas each merging two first, pin the same reference.

State per window: 9 matrices of ``p × p`` (p = ``drift.correlation_features``, 10 by default: 7.2 KB).

>>> rng = np.random.default_rng(1)
>>> x = rng.normal(0, 1, 20000)
>>> c = Comoments.on_basis(["x", "y"], np.zeros(2), np.ones(2), np.full(2, 100.0))  # asinh(x/100): ~linear
>>> c.update({"x": x[:10000], "y": x[:10000] + rng.normal(0, 1, 10000)}, 10000)
>>> later = Comoments.on_basis(["x", "y"], np.array([5.0, 5.0]), np.array([2.0, 2.0]), np.full(2, 100.0))
>>> later.update({"x": x[10000:], "y": x[10000:] + rng.normal(0, 1, 10000)}, 10000)
>>> c.merge(later)
>>> n, r, v = c.pair(0, 1)
>>> int(n), round(float(r), 2)  # ρ = 1/√2
(20000, 0.71)
>>> round(float(v), 2)  # n·var(r) for a bivariate normal: (1 - ρ²)² = 0.25
0.25
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from math import comb
from typing import Any

import numpy as np

ORDERS = ((0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (1, 1), (2, 1), (3, 1), (2, 2))
"""The stored (a, b) of ``Σ u_i^a u_j^b``; (b, a) is the transpose of (a, b). ``u_i^0`` is 1 where feature i is
present, so (0, 0) counts the rows where both are, and (1, 0) sums ``u_i`` over the rows where ``j`` is present."""
_INDEX = {ab: k for k, ab in enumerate(ORDERS)}
BASIS_MIN_VALUES = 100
"""Values a feature needs before its ``s`` is chosen from them (and before it can be one of the correlated)."""
MAX_FEATURES = 64
"""A state larger than this is refused on load (a damaged or hostile file; the configured bound is far lower)."""


@dataclass
class Comoments:
    """Pairwise moment sums of ``features`` on the basis ``shift``/``scale`` (module docstring)."""

    features: list[str]
    shift: np.ndarray
    scale: np.ndarray
    sums: np.ndarray
    """Shape (len(ORDERS), p, p)."""
    tscale: np.ndarray
    """Per feature, the ``s`` of ``t = asinh(x / s)`` (module docstring)."""

    @classmethod
    def on_basis(cls, features: list[str], shift: np.ndarray, scale: np.ndarray, tscale: np.ndarray) -> Comoments:
        p = len(features)
        return cls(list(features), np.asarray(shift, np.float64).copy(), np.asarray(scale, np.float64).copy(),
                   np.zeros((len(ORDERS), p, p)), np.asarray(tscale, np.float64).copy())

    @classmethod
    def choose(cls, summaries: dict[str, tuple[int, float, float, float]], limit: int) -> Comoments | None:
        """The rule for which features and on what basis, from each candidate's (values, q25, median, q75): the
        ``limit`` with the most values (at least ``BASIS_MIN_VALUES``), then by name; ``s`` from the quartiles, the
        basis ``t``'s median and interquartile range / 1.349 (any affine basis is exact; this one keeps the sums
        near 1). None when fewer than two qualify."""
        names = sorted((k for k, v in summaries.items() if v[0] >= BASIS_MIN_VALUES),
                       key=lambda k: (-summaries[k][0], k))[:limit]
        if len(names) < 2 or limit < 2:
            return None
        shift, scale, tscale = np.zeros(len(names)), np.ones(len(names)), np.ones(len(names))
        for k, name in enumerate(names):
            _, q25, q50, q75 = summaries[name]
            magnitude = max(abs(q50), q75 - q25)
            if 0 < magnitude < math.inf:
                tscale[k] = 10.0 ** math.floor(math.log10(magnitude))
            t25, t50, t75 = np.arcsinh(np.array([q25, q50, q75]) / tscale[k])
            shift[k] = t50 if math.isfinite(t50) else 0.0
            spread = (t75 - t25) / 1.349
            scale[k] = spread if 0 < spread < math.inf else 1.0
        return cls.on_basis(names, shift, scale, tscale)

    def empty_like(self) -> Comoments:
        return Comoments.on_basis(self.features, self.shift, self.scale, self.tscale)

    @classmethod
    def chosen(cls, columns: dict[str, np.ndarray], limit: int) -> Comoments | None:
        """``choose`` from raw numeric columns (a baseline's first chunk)."""
        summaries = {}
        for name, v in columns.items():
            if v.dtype.kind not in "fiub":
                continue
            v = v[np.isfinite(v)]
            if len(v) >= BASIS_MIN_VALUES:
                q25, q50, q75 = (float(q) for q in np.quantile(v, [0.25, 0.5, 0.75]))
                summaries[name] = (len(v), q25, q50, q75)
        return cls.choose(summaries, limit)

    @property
    def rows(self) -> int:
        """Rows with at least two of the features (the largest pairwise count)."""
        n = self.sums[0].copy()
        np.fill_diagonal(n, 0)
        return int(n.max()) if n.size else 0

    def update(self, columns: dict[str, np.ndarray], n: int) -> None:
        """Add ``n`` rows; a feature absent from ``columns`` is missing in every row, NaN and ±inf are missing."""
        # The features side by side, then each step once over all of them: a step per feature was 60 NumPy calls
        # on 512 values a batch, and NumPy's cost per call most of a multivariate model's extra ingest (issue 48).
        values = np.empty((n, len(self.features)))
        for k, name in enumerate(self.features):
            v = columns.get(name)
            values[:, k] = v if v is not None and v.dtype.kind in "fiub" else np.nan
        present = np.isfinite(values)
        # Clipped a million basis deviations out: one absurd value would otherwise make the sums inf for good.
        t = np.arcsinh(np.where(present, values, 0.0) / self.tscale)
        u = np.where(present, np.clip((t - self.shift) / self.scale, -1e6, 1e6), 0.0)
        powers = [present.astype(np.float64), u, u * u]
        powers += [powers[2] * u, powers[2] * powers[2]]
        for k, (a, b) in enumerate(ORDERS):
            self.sums[k] += powers[a].T @ powers[b]

    def _get(self, a: int, b: int) -> np.ndarray:
        return self.sums[_INDEX[(a, b)]] if (a, b) in _INDEX else self.sums[_INDEX[(b, a)]].T

    def rebased(self, shift: np.ndarray, scale: np.ndarray) -> Comoments:
        """The same moments on another basis: ``u' = α u + β`` with ``α = scale / scale'`` and ``β = (shift -
        shift') / scale'``, and ``Σ u'_i^a u'_j^b`` expands binomially into the stored lower-order sums."""
        alpha, beta = self.scale / scale, (self.shift - shift) / scale
        out = Comoments.on_basis(self.features, shift, scale, self.tscale)
        for k, (a, b) in enumerate(ORDERS):
            total = np.zeros_like(self.sums[0])
            for i in range(a + 1):
                left = comb(a, i) * alpha ** i * beta ** (a - i)
                for j in range(b + 1):
                    right = comb(b, j) * alpha ** j * beta ** (b - j)
                    total += left[:, None] * right[None, :] * self._get(i, j)
            out.sums[k] = total
        return out

    def merge(self, other: Comoments) -> None:
        """Add another set's sums (features it has that this one lacks join, on its own basis)."""
        if self.features == other.features and np.array_equal(self.shift, other.shift) and \
                np.array_equal(self.scale, other.scale) and np.array_equal(self.tscale, other.tscale):
            self.sums += other.sums
            return
        # A feature on two transforms: its sums cannot be re-expressed on the other's, so the larger s is kept, and the
        # rows of the set on the smaller one are left out of that feature's pairs (module docstring).
        mine = dict(zip(self.features, self.tscale))
        theirs = dict(zip(other.features, other.tscale))
        if any(theirs[f] > s for f, s in mine.items() if f in theirs):
            kept = self._keeping({f for f, s in mine.items() if not (f in theirs and theirs[f] > s)})
            self.features, self.shift, self.scale, self.sums, self.tscale = (kept.features, kept.shift, kept.scale,
                                                                             kept.sums, kept.tscale)
        if any(mine[f] > s for f, s in theirs.items() if f in mine):
            other = other._keeping({f for f, s in theirs.items() if not (f in mine and mine[f] > s)})
        if not other.features:
            return
        names = self.features + [f for f in other.features if f not in self.features]
        if len(names) > len(self.features):
            new = [other.features.index(f) for f in names[len(self.features):]]
            grown = Comoments.on_basis(names, np.concatenate([self.shift, other.shift[new]]),
                                       np.concatenate([self.scale, other.scale[new]]),
                                       np.concatenate([self.tscale, other.tscale[new]]))
            p = len(self.features)
            grown.sums[:, :p, :p] = self.sums
            self.features, self.shift, self.scale, self.sums, self.tscale = (grown.features, grown.shift, grown.scale,
                                                                             grown.sums, grown.tscale)
        at = np.array([names.index(f) for f in other.features])
        theirs = other.rebased(self.shift[at], self.scale[at])
        self.sums[:, at[:, None], at[None, :]] += theirs.sums

    def pair(self, i: int, j: int) -> tuple[float, float, float]:
        """(rows, Pearson r, n·var(r)) of features i and j over the rows where both are present (``pairs``)."""
        n, r, v = self.pairs()
        return float(n[i, j]), float(r[i, j]), float(v[i, j])

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, Pearson r, n·var(r)) of every pair at once, as ``p × p`` matrices.

        ``n·var(r) = μ22 + r²/4 (μ40 + μ04 + 2 μ22) - r (μ31 + μ13)`` with the standardised central moments μ_ab of
        the pair: the delta method's asymptotic variance, valid for any distribution with a finite fourth moment
        (it is ``(1 - ρ²)²`` for a bivariate normal). NaN where a pair has fewer than 2 rows or a feature is
        constant on them. One pass of array arithmetic over all pairs: an evaluation of 100 models tests 4,500."""
        n = self.sums[0]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            raw = {(a, b): self._get(a, b) / n for a in range(5) for b in range(5 - a)}
            mx, my = -raw[(1, 0)], -raw[(0, 1)]
            powers_x = [np.ones_like(mx), mx, mx * mx, mx * mx * mx, mx * mx * mx * mx]
            powers_y = [np.ones_like(my), my, my * my, my * my * my, my * my * my * my]

            def central(a: int, b: int) -> np.ndarray:
                total = np.zeros_like(n)
                for k in range(a + 1):
                    for m in range(b + 1):
                        total = total + comb(a, k) * comb(b, m) * powers_x[a - k] * powers_y[b - m] * raw[(k, m)]
                return total

            vx, vy = central(2, 0), central(0, 2)
            ok = (n >= 2) & (vx > 1e-12 * np.maximum(1.0, raw[(2, 0)])) & (vy > 1e-12 * np.maximum(1.0, raw[(0, 2)]))
            sx, sy = np.sqrt(vx), np.sqrt(vy)
            r = central(1, 1) / (sx * sy)

            def mu(a: int, b: int) -> np.ndarray:
                return central(a, b) / (sx ** a * sy ** b)

            m22 = mu(2, 2)
            v = m22 + r * r / 4 * (mu(4, 0) + mu(0, 4) + 2 * m22) - r * (mu(3, 1) + mu(1, 3))
        nan = np.full_like(n, np.nan)
        return n.copy(), np.where(ok, np.clip(r, -1.0, 1.0), nan), np.where(ok, np.maximum(v, 0.0), nan)

    # --- state ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features, "shift": self.shift.tolist(), "scale": self.scale.tolist(),
                "tscale": self.tscale.tolist(),
                "sums": base64.b64encode(np.ascontiguousarray(self.sums, "<f8").tobytes()).decode("ascii")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Comoments:
        """Checked for shape: a damaged state fails here."""
        features = [str(f) for f in d["features"]]
        p = len(features)
        shift, scale = np.asarray(d["shift"], np.float64), np.asarray(d["scale"], np.float64)
        tscale = np.asarray(d["tscale"], np.float64)
        sums = np.frombuffer(base64.b64decode(d["sums"]), "<f8")
        if p > MAX_FEATURES or len(shift) != p or len(scale) != p or len(tscale) != p or \
                len(sums) != len(ORDERS) * p * p or not (scale > 0).all() or not (tscale > 0).all():
            raise ValueError("comoments: arrays do not match the features they name")
        return cls(features, shift, scale, sums.reshape(len(ORDERS), p, p).copy(), tscale)

    def without(self, names: set[str]) -> Comoments | None:
        """These moments less some features (None when fewer than two are left)."""
        kept = self._keeping(set(self.features) - names)
        return kept if len(kept.features) >= 2 else None

    def _keeping(self, names: set[str]) -> Comoments:
        """These moments of ``names`` only, however few: in a merge, a lone feature still carries its ``s``."""
        at = np.array([k for k, f in enumerate(self.features) if f in names], dtype=np.intp)
        return Comoments([self.features[k] for k in at], self.shift[at], self.scale[at],
                         self.sums[:, at[:, None], at[None, :]].copy(), self.tscale[at])

    def copy(self) -> Comoments:
        return Comoments(list(self.features), self.shift.copy(), self.scale.copy(), self.sums.copy(),
                         self.tscale.copy())
