"""One evaluation's results, as every reader sees them until the next one."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from otel_ml.analyze.drift import ModelReport
from otel_ml.analyze.performance import PerformanceReport
from otel_ml.analyze.versions import VersionComparison
from otel_ml.profile.evaluations import EvaluationScores
from otel_ml.profile.model import ModelProfile

Key = tuple[str, str]


@dataclass(frozen=True)
class Snapshot:
    """What the Evaluator produced at ``taken_ns`` (wall clock): the exporter renders it, the pages and the JSON
    API show it, the demo prints it. Never changed once published (a new evaluation makes a new one), so a
    reader needs no lock and every reader sees the same numbers.

    >>> s = Snapshot()
    >>> s.report("m", ""), s.live_models
    (None, 0)
    """

    reports: tuple[ModelReport, ...] = ()
    """Drift and data quality per live (model, version) this processor exports."""
    performance: tuple[PerformanceReport, ...] = ()
    """Realized and estimated performance per (model, version) with labels, probabilities or a labelled baseline."""
    profiles: Mapping[Key, tuple[ModelProfile | None, ModelProfile]] = field(
        default_factory=lambda: MappingProxyType({}))
    """(reference, current horizon merged) of each reported (model, version): what the pages draw."""
    live_models: int = 0
    waiting_baselines: tuple[Key, ...] = ()
    """(model, version)s with a baseline loaded but no traffic yet (their reference is ready already)."""
    waiting: Mapping[str, tuple[int, int, int]] = field(default_factory=lambda: MappingProxyType({}))
    """Ground truth waiting, per kind (``predictions`` for their labels, ``labels`` for their predictions): rows,
    bytes, and the configured limit in rows (``labels.max_pending``, ``labels.max_early``)."""
    labels: Mapping[Key, dict] = field(default_factory=lambda: MappingProxyType({}))
    """Per (model, label version): labels joined, not joined by reason, examples and diagnoses
    (``LiveModels.label_status``)."""
    evaluation_references: Mapping[Key, dict[str, EvaluationScores]] = field(
        default_factory=lambda: MappingProxyType({}))
    """LLM models' evaluation references pinned from their first horizon (labels/evaluations.py): what a range read
    decides their evaluations with when no baseline has them, as the evaluator did."""
    versions: tuple[VersionComparison, ...] = ()
    """Each model's candidate versions against its busiest one, over the horizon (analyze/versions.py)."""
    taken_ns: int = field(default_factory=time.time_ns)

    def report(self, model: str, version: str) -> ModelReport | None:
        return next((r for r in self.reports if r.model == model and r.version == version), None)

    def performance_of(self, model: str, version: str) -> PerformanceReport | None:
        return next((r for r in self.performance if r.model == model and r.version == version), None)

    def labels_of(self, model: str, version: str) -> dict | None:
        """The status of the labels of (model, version) and of the model's labels that named no version, together
        (``None`` without any)."""
        docs = [self.labels[k] for k in dict.fromkeys(((model, version), (model, ""))) if k in self.labels]
        if not docs:
            return None
        out: dict = {"joined": 0, "unmatched": {}, "examples": {}, "diagnoses": []}
        for doc in docs:
            out["joined"] += doc["joined"]
            for reason, n in doc["unmatched"].items():
                out["unmatched"][reason] = out["unmatched"].get(reason, 0) + n
            for reason, ids in doc["examples"].items():
                kept = out["examples"].setdefault(reason, [])
                kept += [i for i in ids if i not in kept][:5 - len(kept)]
            out["diagnoses"] += doc["diagnoses"]
        return out

    def profiles_of(self, model: str, version: str) -> tuple[ModelProfile | None, ModelProfile] | None:
        return self.profiles.get((model, version))
