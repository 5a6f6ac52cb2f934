"""Self-telemetry counters: what the pipeline counts, the exporter renders and a checkpoint carries on."""

from __future__ import annotations

import threading
from collections import Counter

from otel_ml import semconv as sc

CounterKey = tuple[str, tuple[tuple[str, str], ...]]
Series = list[tuple[dict[str, str], float]]
"""One metric's series: (attributes with their OTel names, value)."""


class Counters:
    """Every counter's total per attribute set.

    >>> c = Counters()
    >>> c.count("otel_ml.spans.received", 0)          # a zero makes the series exist (rate() sees its first step)
    >>> c.count("ml.predictions", 5, {"ml.model.name": "m", "ml.model.version": "1"})
    >>> c.series("ml.predictions"), c.series("otel_ml.spans.received")
    ([({'ml.model.name': 'm', 'ml.model.version': '1'}, 5)], [({}, 0)])
    >>> restored = Counters(); restored.restore(c.to_state()); restored.series("ml.predictions")[0][1]
    5
    """

    def __init__(self) -> None:
        self._totals: Counter[CounterKey] = Counter()
        self._lock = threading.Lock()

    def count(self, metric: str, value: float, attrs: dict[str, str] | None = None) -> None:
        """Add ``value`` to ``metric``; a zero creates the series."""
        key = (metric, tuple(sorted((attrs or {}).items())))
        with self._lock:
            if value or key not in self._totals:
                self._totals[key] += value

    def set_totals(self, metric: str, totals: dict[tuple[tuple[str, str], ...], float]) -> None:
        """Make ``metric``'s series exactly ``totals`` (sorted attribute pairs → total): a counter kept elsewhere
        (shared Kafka mode: ``ml.predictions`` summed over every partition's state)."""
        with self._lock:
            for key in [k for k in self._totals if k[0] == metric and k[1] not in totals]:
                del self._totals[key]
            for attrs, value in totals.items():
                self._totals[metric, tuple(sorted(attrs))] = value

    def series(self, metric: str) -> Series:
        with self._lock:
            return [(dict(attrs), value) for (name, attrs), value in self._totals.items() if name == metric]

    def forget_model(self, model: str, version: str) -> None:
        """Drop the counters of a released (model, version): their series leave the export."""
        mine = {(sc.ATTR_MODEL_NAME, model), (sc.ATTR_MODEL_VERSION, version)}
        with self._lock:
            for key in [k for k in self._totals if mine <= set(k[1])]:
                del self._totals[key]

    def to_state(self) -> list[list]:
        """JSON-ready, for a checkpoint: ``[[metric, [[attr, value], ...], total], ...]``."""
        with self._lock:
            return [[metric, [list(kv) for kv in attrs], value] for (metric, attrs), value in self._totals.items()]

    def restore(self, state: list[list]) -> None:
        """Continue from a checkpoint's totals (``to_state``)."""
        for metric, attrs, value in state:
            self.count(metric, value, dict(attrs))

    def start_at_zero(self) -> None:
        """Every process-level series from the start, at 0: an alert on rate() sees the first increment."""
        for metric in (sc.METRIC_SPANS_RECEIVED, sc.METRIC_SPANS_ACCEPTED, sc.METRIC_SPANS_IGNORED):
            self.count(metric, 0)
        for reason in sc.REJECTION_REASONS:
            self.count(sc.METRIC_SPANS_REJECTED, 0, {sc.ATTR_REASON: reason})
        self.count(sc.METRIC_REQUESTS_REFUSED, 0, {sc.ATTR_REASON: "overloaded"})
        self.count(sc.METRIC_APPLY_ERRORS, 0)
        for kind in sc.STATE_KINDS:
            self.count(sc.METRIC_STATE_RECOVERED, 0, {sc.ATTR_KIND: kind})
        for reason in ("idle", "limit", "retired"):
            self.count(sc.METRIC_MODELS_RELEASED, 0, {sc.ATTR_REASON: reason})
