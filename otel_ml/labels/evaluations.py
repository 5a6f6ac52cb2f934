"""Where LLM calls' evaluation results meet their calls' models: each result counted in its call's performance window
(and segment), and in the model's reference when no baseline gives one.

A result (decode/evaluations.py) finds its call through the pending store like a label its prediction, but marks
nothing: a call has one result per evaluation. What it joined gives the call's model, version, segment and time.

The reference, without a baseline's (``baseline build`` from a table of past evaluations), is the model's first
horizon pinned: the results of the calls made in the ``performance.horizon_seconds`` (a whole number of windows)
from the first call evaluated. It is complete, and decisions start, once the model's clock (the
newest call or result) is past that horizon; results of those calls that come within one more horizon still count
in it. It is checkpointed with the pending store (``state``), so a restart keeps it.

A model's window (and segment) and its reference count at most ``MAX_EVALUATIONS`` evaluation names: the results
of a name beyond them are not counted (``too_many_evaluations``), so an app that puts ids in
``gen_ai.evaluation.name`` cannot grow the state without bound.

>>> from otel_ml.analyze.performance import PerformanceConfig
>>> join = EvaluationJoin(horizon_ns(PerformanceConfig(window_seconds=60, horizon_seconds=120)), {})
>>> minute = 60 * 10**9
>>> join.add_to_reference(("m", "v"), "relevance", np.array([0, minute]), np.array([1.0, 0.0]),
...                       np.array(["pass", "fail"]), minute)
>>> join.reference("m", "v", clock_ns=minute) is None, join.reference("m", "v", clock_ns=2 * minute)["relevance"].n
(True, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from otel_ml.analyze.performance import PerformanceConfig
from otel_ml.decode.batch import LabelBatch
from otel_ml.profile.evaluations import EvaluationScores
from otel_ml.profile.performance import PerformanceProfile

MAX_EVALUATIONS = 32
"""Evaluation names counted per model window, segment and reference (a few are usual: relevance, toxicity, ...)."""


def horizon_ns(performance: PerformanceConfig) -> int:
    """The performance horizon in ns: a whole number of windows, at least one (as the drift horizon is)."""
    window_ns = int(performance.window_seconds * 1e9)
    return max(1, round(performance.horizon_seconds / performance.window_seconds)) * window_ns


class EvaluationJoin:
    """Each model's pinned evaluation reference, and how a joined result is counted."""

    def __init__(self, horizon: int, pass_labels: Mapping[str, list[str]]) -> None:
        self.horizon_ns = horizon
        self.pass_labels = pass_labels
        """Per evaluation name, its pass labels (``genai.pass_labels``); others read the conventional names."""
        self.references: dict[tuple[str, str], tuple[int, dict[str, EvaluationScores]]] = {}
        """(model, version) → (start of its first horizon, the results of that horizon's calls by evaluation)."""

    def apply(self, labels: LabelBatch, index: np.ndarray, rows: dict[str, np.ndarray],
              keys: list[tuple[str, str, str]], window: Callable[[tuple[str, str], int], PerformanceProfile | None],
              window_ns: int, clock: Callable[[str], int]) -> int:
        """Count results (of the evaluation ``labels.version``) that found their calls (``rows``, the pending store's
        rows; ``keys``: its codes' (model, version, segment)) in each call's window (``window``) and reference;
        returns how many were not counted in their window: a name beyond ``MAX_EVALUATIONS`` there."""
        name = labels.version
        over = 0
        scores, text = labels.value[index], labels.label[index]
        starts = rows["time"] // window_ns * window_ns
        for code in np.unique(rows["key"]).tolist():
            model, version, segment = keys[code]
            of_key = rows["key"] == code
            self.add_to_reference((model, version), name, rows["time"][of_key], scores[of_key], text[of_key],
                                  clock(model))
            for start in np.unique(starts[of_key]).tolist():
                prof = window((model, version), start)
                if prof is None:
                    continue
                sel = of_key & (starts == start)
                if name not in prof.evaluations and len(prof.evaluations) >= MAX_EVALUATIONS:
                    over += int(sel.sum())
                    continue
                for p in (prof, prof.segment(segment)) if segment else (prof,):
                    p.add_evaluations(name, scores[sel], text[sel], self.pass_labels.get(name))
        return over

    def add_to_reference(self, key: tuple[str, str], name: str, call_ns: np.ndarray, scores: np.ndarray,
                         labels: np.ndarray, clock_ns: int) -> None:
        """Results of calls at ``call_ns``: those of the model's first horizon count in its reference, until one
        horizon after it ended."""
        ref = self.references.get(key)
        if ref is None:
            ref = self.references[key] = (int(call_ns.min()), {})
        start, by_name = ref
        if clock_ns >= start + 2 * self.horizon_ns:
            return
        inside = (call_ns >= start) & (call_ns < start + self.horizon_ns)
        if inside.any() and (name in by_name or len(by_name) < MAX_EVALUATIONS):
            scores_of = by_name.get(name)
            if scores_of is None:
                scores_of = by_name[name] = EvaluationScores(self.pass_labels.get(name))
            scores_of.update(scores[inside], labels[inside])

    def reference(self, model: str, version: str, clock_ns: int) -> dict[str, EvaluationScores] | None:
        """The model's pinned reference once complete (its first horizon past), else None."""
        ref = self.references.get((model, version))
        if ref is None or clock_ns < ref[0] + self.horizon_ns:
            return None
        return ref[1]

    # --- state --------------------------------------------------------------------------------------------
    def state(self, clock: Callable[[str], int]) -> dict[str, Any]:
        """The references, each saying whether it is complete at the model's ``clock`` (what an offline reader,
        ``otel-ml report``, decides with: ``pinned_evaluations``)."""
        if not self.references:
            return {}
        return {"evaluation_references": [
            {"model": m, "version": v, "start_ns": start, "complete": clock(m) >= start + self.horizon_ns,
             "scores": {n: s.to_dict() for n, s in by_name.items()}}
            for (m, v), (start, by_name) in self.references.items()]}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.references = {
            (str(r["model"]), str(r["version"])): (int(r["start_ns"]), {str(n): EvaluationScores.from_dict(d)
                                                                        for n, d in r["scores"].items()})
            for r in state.get("evaluation_references", [])}


def pinned_evaluations(ground_truth_state: Mapping[str, Any], model: str, version: str
                       ) -> dict[str, EvaluationScores] | None:
    """The complete pinned reference of (model, version) in a checkpoint's ground-truth state, or None."""
    for r in ground_truth_state.get("evaluation_references", []):
        if r["model"] == model and r["version"] == version and r.get("complete"):
            return {str(n): EvaluationScores.from_dict(d) for n, d in r["scores"].items()}
    return None
