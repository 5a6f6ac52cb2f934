"""Probabilities in ``PROBABILITY_BINS`` equal bins of [0, 1]: exact counts that merge, and ROC AUC from them,
exact up to the pairs that share a bin (a bound computed with it). Shared by the binary performance profile and
the per-class probabilities of a multiclass model."""

from __future__ import annotations

import base64
import math

import numpy as np

PROBABILITY_BINS = 1024
"""Bins of [0, 1] for probabilities: 0.5 is a bin edge, so the 0.5 threshold is exact."""


def probability_bins(p: np.ndarray) -> np.ndarray:
    return np.clip((p * PROBABILITY_BINS).astype(np.int64), 0, PROBABILITY_BINS - 1)


def bins_to_text(a: np.ndarray) -> str:
    """Bins as text, sparse: the bins in use (u16), then their values (i64 counts, or f64 for float bins).

    >>> bins = np.zeros(PROBABILITY_BINS); bins[[3, 900]] = [0.5, 2.25]
    >>> bins_from_text(bins_to_text(bins), np.float64)[[3, 900]].tolist()
    [0.5, 2.25]
    """
    used = np.flatnonzero(a)
    values = a[used].astype("<f8" if a.dtype.kind == "f" else "<i8")
    return base64.b64encode(used.astype("<u2").tobytes() + values.tobytes()).decode("ascii")


def bins_from_text(s: str, dtype: type = np.int64) -> np.ndarray:
    raw = base64.b64decode(s)
    k = len(raw) // 10
    out = np.zeros(PROBABILITY_BINS, dtype)
    out[np.frombuffer(raw, "<u2", k).astype(np.int64)] = np.frombuffer(raw, "<f8" if np.dtype(dtype).kind == "f"
                                                                       else "<i8", k, offset=2 * k)
    return out


def auc_from_bins(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float, float] | None:
    """ROC AUC of binned scores: (value, Hanley–McNeil standard error, binning bound).

    Pairs in different bins are ordered exactly; pairs sharing a bin count ½ (their order is not kept), so the
    true AUC of the unbinned scores is within ``bound`` = ½ · Σ_b pos_b · neg_b / (P · N) of the value.

    >>> auc, se, bound = auc_from_bins(np.array([0, 1, 3]), np.array([2, 1, 0]))
    >>> round(auc, 4), round(bound, 4)
    (0.9583, 0.0417)
    """
    npos, nneg = float(pos.sum()), float(neg.sum())
    if not npos or not nneg:
        return None
    below = np.cumsum(neg) - neg  # negatives strictly below each bin
    same = (pos * neg).sum()
    auc = float((pos * below).sum() + 0.5 * same) / (npos * nneg)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (npos - 1) * (q1 - auc * auc) + (nneg - 1) * (q2 - auc * auc)) / (npos * nneg)
    return auc, math.sqrt(max(var, 0.0)), float(0.5 * same / (npos * nneg))
