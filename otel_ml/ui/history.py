"""Each feature's decision over the last evaluations, for the UI's "over time" view of the live horizon.

A ring of ``points`` evaluations per model version: the time, and per feature the p-value of ``overall``, its
effect size and whether it fired, as float32/int8 columns (about 9 bytes per feature per point: 360 points of
5,000 features is 16 MB). Older history is in the archive (``otel-ml report``).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from otel_ml.analyze.drift import ModelReport
from otel_ml.core.snapshot import Snapshot
from otel_ml.read.views import EFFECT, number


class _ModelRing:
    def __init__(self, points: int, effect_size: dict[str, str]) -> None:
        self.points = points
        self.effect_size = effect_size
        self.times = np.zeros(points, np.float64)
        self.filled = 0
        self.next = 0
        self.index: dict[str, int] = {}
        self.p = np.full((0, points), np.nan, np.float32)
        self.effect = np.full((0, points), np.nan, np.float32)
        self.detected = np.full((0, points), -1, np.int8)

    def _row(self, name: str) -> int:
        row = self.index.get(name)
        if row is None:
            row = self.index[name] = len(self.index)
            if row == len(self.p):  # full: double the rows, so a model's first thousand features cost ~10 copies
                grow = max(8, row)
                self.p = np.vstack([self.p, np.full((grow, self.points), np.nan, np.float32)])
                self.effect = np.vstack([self.effect, np.full((grow, self.points), np.nan, np.float32)])
                self.detected = np.vstack([self.detected, np.full((grow, self.points), -1, np.int8)])
        return row

    def record(self, t: float, report: ModelReport) -> None:
        col = self.next
        self.times[col] = t
        self.p[:, col] = np.nan
        self.effect[:, col] = np.nan
        self.detected[:, col] = -1
        for f in report.features:
            row = self._row(f.feature)
            if f.overall.p_value:
                self.p[row, col] = f.overall.score
            method = self.effect_size.get(f.kind)
            self.effect[row, col] = next((m.score for m in f.methods if m.method == method), math.nan)
            self.detected[row, col] = -1 if f.overall.detected is None else int(f.overall.detected)
        self.next = (col + 1) % self.points
        self.filled = min(self.filled + 1, self.points)

    def series(self, name: str) -> dict[str, Any]:
        order = (np.arange(self.filled) + (self.next - self.filled)) % self.points
        row = self.index.get(name)
        empty = [None] * len(order)
        return {
            "time_unix": [number(t) for t in self.times[order]],
            "p_value": [number(x) for x in self.p[row, order]] if row is not None else empty,
            "effect": [number(x) for x in self.effect[row, order]] if row is not None else empty,
            "drift_detected": ([None if d < 0 else bool(d) for d in self.detected[row, order]] if row is not None
                               else empty),
        }


class ScoreHistory:
    """Per model version, the last ``points`` evaluations of every feature.

    >>> from otel_ml.analyze.drift import FeatureReport, MethodResult, ModelReport
    >>> def report(p):
    ...     f = FeatureReport("x", "numeric", 500, 500, [MethodResult("wasserstein", 0.1, 0.1, False)],
    ...                       MethodResult("overall", p, 0.01, p < 0.01, p_value=True))
    ...     return ModelReport("m", "", "baseline", 500, 500, [f])
    >>> h = ScoreHistory(points=2)
    >>> for t, p in ((1.0, 0.5), (2.0, 0.2), (3.0, 0.001)):
    ...     h.record(t, [report(p)])
    >>> s = h.series("m", "", "x"); s["time_unix"], [round(p, 3) for p in s["p_value"]], s["drift_detected"]
    ([2.0, 3.0], [0.2, 0.001], [False, True])
    """

    def __init__(self, points: int = 360, effect_size: dict[str, str] | None = None) -> None:
        self.points = points
        self.effect_size = effect_size or EFFECT
        """The effect recorded per feature kind (``export.effect_size``)."""
        self._models: dict[tuple[str, str], _ModelRing] = {}
        self._lock = threading.Lock()

    def publish(self, snapshot: Snapshot) -> None:
        """A new evaluation (subscribed to the evaluator)."""
        self.record(snapshot.taken_ns / 1e9, list(snapshot.reports))

    def record(self, t: float, reports: list[ModelReport]) -> None:
        if self.points <= 0:
            return
        with self._lock:
            live = set()
            for r in reports:
                key = (r.model, r.version)
                live.add(key)
                ring = self._models.get(key)
                if ring is None:
                    ring = self._models[key] = _ModelRing(self.points, self.effect_size)
                ring.record(t, r)
            for key in set(self._models) - live:  # released models take their history with them
                del self._models[key]

    def series(self, model: str, version: str, feature: str) -> dict[str, Any]:
        with self._lock:
            ring = self._models.get((model, version))
            if ring is None:
                return {"time_unix": [], "p_value": [], "effect": [], "drift_detected": []}
            return ring.series(feature)
