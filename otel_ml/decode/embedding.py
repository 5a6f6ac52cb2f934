"""``ml.embedding`` → a few numeric columns: a fixed random projection of each vector, and its norm.

An embedding (a sentence's, an image's: hundreds of dimensions) is too wide to sketch dimension by dimension and
must not be kept raw. Each vector is projected on ``COMPONENTS`` fixed random directions (Achlioptas' ±1 signs,
scaled by 1/√d: a Johnson–Lindenstrauss projection) and becomes the numeric columns ``(embedding).0`` …
``(embedding).15`` and ``(embedding).norm`` before anything else sees it. From there everything is a feature: each
component is sketched, windowed and tested like one (a shift of the topic mix moves the vectors' mean and the
components' distributions, even when every norm stays the same); the components' correlations go into the
correlation test (profile/comoments.py), and ``baseline build --multivariate`` fits its PCA on them.

The directions depend only on the dimension, through a counter-based hash (SplitMix64) rather than a seeded
generator, so every processor, every decoder and every version of numpy projects a vector the same way, and a
baseline built from a file compares with live traffic.

>>> v = np.array([[3.0, 4.0], [0.0, 0.0]])
>>> cols = embedding_columns(v)
>>> cols["(embedding).norm"].tolist(), len(cols)
([5.0, 0.0], 17)
>>> np.allclose(cols["(embedding).0"], v @ projection(2)[:, 0])
True
"""

from __future__ import annotations

import functools

import numpy as np

from otel_ml import semconv

COMPONENTS = 16
"""Random directions per embedding (each a column; their 120 pairs' correlations fit the correlation test's bound
when ``drift.correlation_features`` covers them)."""
_SEED = 0x6F74656C2D6D6C  # "otel-ml"
COLUMNS = [f"{semconv.EMBEDDING_COLUMN_PREFIX}{j}" for j in range(COMPONENTS)]
NORM_COLUMN = f"{semconv.EMBEDDING_COLUMN_PREFIX}norm"


@functools.lru_cache(maxsize=16)
def projection(dimension: int) -> np.ndarray:
    """The ``dimension × COMPONENTS`` matrix of ±1/√dimension every processor projects with (read-only)."""
    i = np.arange(dimension * COMPONENTS, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (i + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(_SEED)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    signs = np.where((z >> np.uint64(63)) == 1, -1.0, 1.0).reshape(dimension, COMPONENTS)
    out = signs / np.sqrt(dimension)
    out.setflags(write=False)
    return out


def embedding_columns(vectors: np.ndarray) -> dict[str, np.ndarray]:
    """The columns of an ``n × d`` array of vectors (a row of NaN: no embedding, every column missing there)."""
    vectors = np.asarray(vectors, np.float64)
    projected = vectors @ projection(vectors.shape[1])
    out = {name: np.ascontiguousarray(projected[:, j]) for j, name in enumerate(COLUMNS)}
    out[NORM_COLUMN] = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    return out


__all__ = ["COMPONENTS", "embedding_columns", "projection"]
