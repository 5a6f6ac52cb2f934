"""Multivariate drift by PCA reconstruction error, as NannyML's data reconstruction drift, on a stream.

At ``baseline build`` a ``Reconstruction`` is fitted on the reference's features (its first chunk, at most 100,000
rows): missing numbers imputed with the mean and missing categories with the most frequent one, each category
encoded as its share of the reference (unseen ones: 0), every input standardised, and a PCA keeping the smallest
number of components that explains more than ``variance`` (65%) of the variance. Stored in the baseline file as
plain numbers. Each row's reconstruction error is the Euclidean distance between its standardised inputs and their
projection back from the components: rows whose features move together as in the reference reconstruct well, a
change in how they move together (a broken join, a swapped sensor, a re-scaling that keeps each marginal) does not.

The processor adds each row's error to its batch as the numeric column ``(multivariate)`` (``semconv.
MULTIVARIATE_FEATURE``) before the windows see it, and the baseline profiles the reference's errors under the same
name: so the error's distribution is sketched, windowed, checkpointed, merged in shared mode, archived and tested
against the reference exactly like a feature's, with the same calibrated decision rule.

>>> rng = np.random.default_rng(0)
>>> a = rng.normal(0, 1, 5000)
>>> numeric = {"a": a, "b": a + rng.normal(0, 0.1, 5000), "c": rng.normal(0, 1, 5000)}
>>> r = Reconstruction.fit(numeric, {})
>>> r.components.shape[0]  # a and b move together: their component alone holds 2/3 of the variance
1
>>> same = r.errors({"a": a[:1000], "b": numeric["b"][:1000], "c": numeric["c"][:1000]}, {}, 1000).mean()
>>> broken = r.errors({"a": a[:1000], "b": rng.permutation(numeric["b"][:1000]), "c": numeric["c"][:1000]},
...                   {}, 1000).mean()
>>> round(float(same), 2), round(float(broken), 2)  # the same marginals, paired differently
(0.81, 1.23)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from otel_ml.profile.values import categorical_values, numeric_values

VARIANCE = 0.65
"""Share of the reference's variance the kept components explain (NannyML's default ``n_components``)."""
FIT_ROWS = 100_000


@dataclass
class Reconstruction:
    """The encoding, standardisation and principal components of a reference's features (module docstring)."""

    numeric: list[str]
    numeric_fill: np.ndarray
    categorical: dict[str, dict[str, float]]
    """Per categorical feature: category → its share of the reference (the encoding)."""
    categorical_fill: dict[str, float]
    """Per categorical feature: the encoding of a missing value (the most frequent category's share)."""
    center: np.ndarray
    scale: np.ndarray
    mean: np.ndarray
    components: np.ndarray

    @classmethod
    def fit(cls, numeric: dict[str, np.ndarray], categorical: dict[str, np.ndarray],
            variance: float = VARIANCE) -> Reconstruction:
        """Fit on reference columns (numeric: NaN missing; categorical: "" missing)."""
        names = [k for k, v in numeric.items() if np.isfinite(v).any()]
        fill = np.array([float(np.nanmean(numeric[k])) for k in names])
        shares, fills = {}, {}
        for name, values in categorical.items():
            v = values.astype(str)
            uniq, counts = np.unique(v[v != ""], return_counts=True)
            if not len(uniq):
                continue
            mode = uniq[np.argmax(counts)]
            counts = counts + np.where(uniq == mode, int((v == "").sum()), 0)  # missing values are the mode
            shares[name] = {str(c): float(n / len(v)) for c, n in zip(uniq, counts)}
            fills[name] = shares[name][str(mode)]
        shell = cls(names, fill, shares, fills, np.zeros(0), np.ones(0), np.zeros(0), np.zeros((0, 0)))
        n = len(next(iter([*numeric.values(), *categorical.values()])))
        x = shell._encoded(numeric, categorical, n)
        center = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0  # a constant input stays 0, as scikit-learn's StandardScaler leaves it
        z = (x - center) / scale
        mean = z.mean(axis=0)
        _, s, vt = np.linalg.svd(z - mean, full_matrices=False)
        explained = s ** 2 / max(s @ s, 1e-300)
        k = int(np.searchsorted(np.cumsum(explained), variance, side="right")) + 1  # as scikit-learn's PCA
        return cls(names, fill, shares, fills, center, scale, mean, vt[:min(k, len(s))])

    def _encoded(self, numeric: dict[str, np.ndarray], categorical: dict[str, np.ndarray], n: int) -> np.ndarray:
        x = np.empty((n, len(self.numeric) + len(self.categorical)))
        # Each feature read as its kind, whatever type the sender gave it (profile/values.py): "16" sent for a
        # numeric feature is 16 here as in its profile, not an absent value imputed with the reference's mean.
        for j, name in enumerate(self.numeric):
            if name not in numeric and name not in categorical:
                x[:, j] = self.numeric_fill[j]
                continue
            v = numeric_values(numeric.get(name), categorical.get(name), n)[0]
            x[:, j] = np.where(np.isfinite(v), v, self.numeric_fill[j])
        for j, (name, shares) in enumerate(self.categorical.items(), start=len(self.numeric)):
            if name not in numeric and name not in categorical:
                x[:, j] = self.categorical_fill[name]
                continue
            v = categorical_values(numeric.get(name), categorical.get(name), n)
            uniq, inv = np.unique(v.astype(str), return_inverse=True)
            codes = np.array([self.categorical_fill[name] if c == "" else shares.get(c, 0.0) for c in uniq.tolist()])
            x[:, j] = codes[inv]
        return x

    def errors(self, numeric: dict[str, np.ndarray], categorical: dict[str, np.ndarray], n: int) -> np.ndarray:
        """Each row's reconstruction error (an absent feature is missing for every row: imputed)."""
        z = (self._encoded(numeric, categorical, n) - self.center) / self.scale - self.mean
        return np.linalg.norm(z - (z @ self.components.T) @ self.components, axis=1)

    # --- state ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"numeric": self.numeric, "numeric_fill": self.numeric_fill.tolist(), "categorical": self.categorical,
                "categorical_fill": self.categorical_fill, "center": self.center.tolist(),
                "scale": self.scale.tolist(), "mean": self.mean.tolist(), "components": self.components.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reconstruction:
        """Plain numbers in, checked for shape: a damaged baseline fails here, not at ingest."""
        numeric = [str(c) for c in d["numeric"]]
        categorical = {str(k): {str(c): float(s) for c, s in v.items()} for k, v in d["categorical"].items()}
        fills = {str(k): float(v) for k, v in d["categorical_fill"].items()}
        width = len(numeric) + len(categorical)
        arrays = [np.asarray(d[k], np.float64) for k in ("numeric_fill", "center", "scale", "mean")]
        components = np.asarray(d["components"], np.float64).reshape(-1, width)
        if len(arrays[0]) != len(numeric) or any(len(a) != width for a in arrays[1:]) or set(fills) != set(
                categorical) or (arrays[2] == 0).any():
            raise ValueError("reconstruction: arrays do not match the features they name")
        return cls(numeric, arrays[0], categorical, fills, arrays[1], arrays[2], arrays[3], components)
