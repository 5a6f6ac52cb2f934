"""A performance window's wrong predictions that point at their spans: from a drop in accuracy to the requests.

When labels join (labels/ground_truth.py), the predictions they find wrong (a classifier's predicted class is not
the true one) or furthest off (a regressor's largest absolute errors) are offered here with their span, when the
span is known (labels/spans.py keeps a sample). A window keeps ``SLOTS`` of them: a classifier's latest (by the
prediction's event time), a regressor's largest errors. Merging windows keeps the same choice over both, so a
horizon holds no more than a window: at most ``SLOTS`` × (40 bytes + the two class names).

>>> w = WrongPredictions()
>>> w.add(np.array([10, 30]), np.zeros((2, 24), np.uint8) + 1, np.array(["a", "b"]), np.array(["b", "a"]),
...       np.array([np.nan, np.nan]))
>>> [(r.time_ns, r.predicted, r.truth) for r in w.rows()]
[(30, 'b', 'a'), (10, 'a', 'b')]
>>> other = WrongPredictions()
>>> other.add(np.array([20]), np.zeros((1, 24), np.uint8) + 2, np.array(["a"]), np.array(["c"]), np.array([np.nan]))
>>> w.merge(other); [r.time_ns for r in w.rows()], w.rows()[1].span_id
([30, 20, 10], '0202020202020202')
>>> WrongPredictions.from_dict(w.to_dict()).to_dict() == w.to_dict()
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from otel_ml.decode.batch import SPAN_IDS_BYTES

SLOTS = 8


@dataclass(frozen=True)
class WrongPrediction:
    """One labelled prediction that was wrong, and its span."""

    time_ns: int
    """The prediction's event time."""
    trace_id: str
    """Hex, as tracing back ends spell it."""
    span_id: str
    predicted: str
    """The predicted class, or a regressor's prediction as text."""
    truth: str
    """The true class, or a regressor's true value as text."""
    error: float
    """A regressor's prediction minus the truth; NaN for a classifier."""

    @property
    def value(self) -> float | str:
        """What an exemplar's value is: a regressor's error, a classifier's predicted class."""
        return self.error if math.isfinite(self.error) else self.predicted

    @property
    def rank(self) -> tuple[float, int]:
        """Larger first: a regressor's absolute error, then the time (exact: a float would round nanoseconds)."""
        return abs(self.error) if math.isfinite(self.error) else 0.0, self.time_ns

    def to_dict(self) -> dict[str, Any]:
        return {"time_ns": self.time_ns, "trace_id": self.trace_id, "span_id": self.span_id,
                "predicted": self.predicted, "truth": self.truth,
                "error": self.error if math.isfinite(self.error) else None}


class WrongPredictions:
    """At most ``SLOTS`` wrong predictions of a window, the most telling first."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: list[WrongPrediction] = []

    def __bool__(self) -> bool:
        return bool(self._rows)

    def add(self, time_ns: np.ndarray, span_ids: np.ndarray, predicted: np.ndarray, truth: np.ndarray,
            error: np.ndarray) -> None:
        """Offer wrong predictions: their event times, spans (rows × ``SPAN_IDS_BYTES``), predicted and true
        values as text, and errors (NaN: a classifier)."""
        ids = np.ascontiguousarray(span_ids, np.uint8).reshape(-1, SPAN_IDS_BYTES)
        new = [WrongPrediction(int(t), row[:16].tobytes().hex(), row[16:].tobytes().hex(), str(p), str(y), float(e))
               for t, row, p, y, e in zip(time_ns.tolist(), ids, predicted.tolist(), truth.tolist(), error.tolist())]
        self._keep(new)

    def merge(self, other: WrongPredictions) -> None:
        self._keep(other._rows)

    def _keep(self, new: list[WrongPrediction]) -> None:
        if new:
            rows = {(r.trace_id, r.span_id, r.time_ns, r.predicted): r for r in [*self._rows, *new]}
            self._rows = sorted(rows.values(), key=lambda r: r.rank, reverse=True)[:SLOTS]

    def rows(self) -> list[WrongPrediction]:
        """The kept rows, the most telling first (a classifier's latest, a regressor's largest error)."""
        return list(self._rows)

    def to_dict(self) -> list[list[Any]]:
        return [[r.time_ns, r.trace_id, r.span_id, r.predicted, r.truth,
                 r.error if math.isfinite(r.error) else None] for r in self._rows]

    @classmethod
    def from_dict(cls, rows: list[list[Any]]) -> WrongPredictions:
        out = cls()
        out._rows = [WrongPrediction(int(t), str(trace), str(span), str(p), str(y),
                                     math.nan if e is None else float(e)) for t, trace, span, p, y, e in rows]
        return out
