"""What the UI, the JSON API and offline reports show, as plain JSON-ready data.

Every number here comes from the reports the processor computed (decisions, p-values, scores, data quality) or
from the sketches themselves (distributions), so the pages, ``/api/v1`` and ``otel-ml report`` cannot disagree
with the exported metrics. Non-finite numbers become ``None`` (JSON ``null``): JSON has no NaN.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np

from otel_ml.analyze.drift import DEFAULT_EFFECT_SIZE, FeatureReport, ModelReport
from otel_ml.analyze.evaluations import EvaluationReport, Rate
from otel_ml.analyze.exemplars import Exemplar
from otel_ml.analyze.fairness import FairnessReport
from otel_ml.analyze.performance import PerformanceReport
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import CategoricalProfile, FeatureProfile, NumericProfile
from otel_ml.profile.wrong_predictions import WrongPrediction
from otel_ml.read.names import name_from_segment, name_segment

QUALITY_LIMITS = {"missing_ratio": 0.1, "type_mismatch_ratio": 0.01, "unseen_ratio": 0.05,
                  "out_of_range_ratio": 0.05}
"""Data-quality shares above these count as problems: the thresholds of the shipped alert rules
(examples/prometheus/otel-ml-alerts.yaml)."""
EFFECT = DEFAULT_EFFECT_SIZE
"""The effect size shown per feature kind when none is given: ``export.effect_size``'s default (the service passes
its configured one, so a page shows the effect its metrics export)."""
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_CATEGORIES = 20
HISTOGRAM_BINS = 30


def number(x: Any) -> float | int | None:
    """A JSON-safe number: None for NaN and ±inf.

    >>> number(float("nan")) is None, number(3), number(np.float32(0.5))
    (True, 3, 0.5)
    """
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        return int(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else None


def version_segment(version: str) -> str:
    return name_segment(version)


def version_from_segment(segment: str) -> str:
    return name_from_segment(segment)


def quality_problems(f: FeatureReport) -> list[str]:
    """The data-quality shares of a feature above the alert rules' thresholds."""
    return [k for k, limit in QUALITY_LIMITS.items() if (v := getattr(f, k)) == v and v > limit]


def status(f: FeatureReport) -> str:
    """``drift``, ``quality`` (a data-quality problem), ``withheld`` (no decision, and why is in the row) or
    ``ok``; the order problems are listed in."""
    if f.overall.detected:
        return "drift"
    if quality_problems(f):
        return "quality"
    if f.overall.detected is None:
        return "withheld"
    return "ok"


STATUS_ORDER = {"drift": 0, "quality": 1, "withheld": 2, "ok": 3}


def feature_row(f: FeatureReport, effect_size: dict[str, str] | None = None) -> dict[str, Any]:
    """One feature's decision, scores and data quality (an element of the ``drift`` endpoint's ``features``);
    ``effect_size``: the method shown as the effect, per kind (``export.effect_size``)."""
    p = f.overall.score if f.overall.p_value else math.nan
    effect_method = (effect_size or EFFECT).get(f.kind) or EFFECT.get(f.kind, "")
    scores = {m.method: number(m.score) for m in f.methods}
    return {
        "name": f.feature, "kind": f.kind, "status": status(f),
        "drift_detected": f.overall.detected, "withheld_reason": f.withheld_reason or None,
        "p_value": number(p), "threshold": number(f.overall.threshold),
        "decided_by": "test" if f.overall.p_value else "distance",
        "overall_score": number(f.overall.score),
        "effect_method": effect_method, "effect": scores.get(effect_method),
        "scores": scores,
        "reference_count": f.reference_count, "current_count": f.current_count,
        "missing_ratio": number(f.missing_ratio), "type_mismatch_ratio": number(f.type_mismatch_ratio),
        "unseen_ratio": number(f.unseen_ratio), "out_of_range_ratio": number(f.out_of_range_ratio),
        "quality_problems": quality_problems(f),
    }


def example_predictions(exemplars: list[Exemplar], trace_url: str = "") -> list[dict[str, Any]]:
    """A feature's example predictions (analyze/exemplars.py ``exemplars_of``), the most telling first, each with its
    trace's link when ``ui.trace_url`` is set."""
    rows = []
    for e in exemplars:
        row = e.to_dict()
        row["time"] = datetime.fromtimestamp(e.time_ns / 1e9, timezone.utc).isoformat()
        row["trace_url"] = trace_link(trace_url, e.trace_id, e.span_id)
        rows.append(row)
    return rows


def wrong_prediction_rows(rows: list[WrongPrediction], trace_url: str = "") -> list[dict[str, Any]]:
    """Wrong predictions (profile/wrong_predictions.py), the most telling first, each with its time in ISO 8601
    and its trace's link when ``ui.trace_url`` is set."""
    return [{**w.to_dict(), "time": datetime.fromtimestamp(w.time_ns / 1e9, timezone.utc).isoformat(),
             "trace_url": trace_link(trace_url, w.trace_id, w.span_id)} for w in rows]


def trace_link(template: str, trace_id: str, span_id: str) -> str | None:
    """``ui.trace_url`` for one span, or None without a template.

    >>> trace_link("http://jaeger:16686/trace/{trace_id}?uiFind={span_id}", "ab" * 16, "cd" * 8)
    'http://jaeger:16686/trace/abababababababababababababababab?uiFind=cdcdcdcdcdcdcdcd'
    """
    return template.replace("{trace_id}", trace_id).replace("{span_id}", span_id) if template else None


def correlation_rows(r: ModelReport) -> list[dict[str, Any]]:
    """The feature pairs whose correlation changed most (the ``(correlation)`` row's evidence), most changed first:
    ``correlation_changes`` of the ``drift`` endpoint."""
    return [{"features": list(c.pair), "reference": number(c.reference), "current": number(c.current),
             "change": number(c.current - c.reference), "z": number(c.z), "p_value": number(c.p_value),
             "reference_rows": c.reference_rows, "current_rows": c.current_rows} for c in r.correlations]


def attribution_document(r: ModelReport) -> dict[str, Any] | None:
    """The importance ranking against the reference's (the ``(attribution)`` row's evidence; ``attribution`` of the
    ``drift`` endpoint): NDCG, its threshold and decision, and per feature its mean |attribution| on each side (exact),
    by current importance. None: the model's spans carry no attributions."""
    a = r.attribution
    if a is None:
        return None
    return {"ndcg": number(a.ndcg), "threshold": a.threshold, "detected": a.detected,
            "withheld_reason": a.withheld_reason, "reference_rows": a.reference_rows, "current_rows": a.current_rows,
            "importances": [{"feature": i.feature, "reference": number(i.reference), "current": number(i.current)}
                            for i in a.importances]}


def segment_rows(r: ModelReport) -> list[dict[str, Any]]:
    """Each segment of a segmented model, drifted ones first (``segments`` of the ``drift`` endpoint)."""
    rows = [{"segment": s.segment, "detected": s.detected, "withheld_reason": s.withheld_reason or None,
             "drifted_features": list(s.drifted), "p_values": {k: number(v) for k, v in s.p_values.items()},
             "reference_share": number(s.reference_share), "current_share": number(s.current_share),
             "current_predictions": number(s.current_predictions),
             "missing_ratio": {k: number(v) for k, v in s.missing_ratio.items()}} for s in r.segments]
    return sorted(rows, key=lambda row: (not row["detected"], -(row["current_predictions"] or 0)))


def segment_document(r: ModelReport, performance: PerformanceReport | None, segment: str) -> dict[str, Any] | None:
    """One segment of a segmented model (``/api/v1/.../segments/{segment}``): its row of ``segment_rows``, each
    feature's test in it (adjusted p-value, drifted, missing share, its part in the feature's change of mean), and
    its performance document; None when the model has no such segment."""
    row = next((x for x in segment_rows(r) if x["segment"] == segment), None)
    if row is None:
        return None
    parts = {c.feature: c for c in r.segment_contributions if c.segment == segment}
    names = sorted(set(row["p_values"]) | set(row["missing_ratio"]) | set(parts),
                   key=lambda n: (row["p_values"].get(n) if row["p_values"].get(n) is not None else 2.0, n))
    features = [{"feature": n, "p_value": row["p_values"].get(n), "drifted": n in row["drifted_features"],
                 "missing_ratio": row["missing_ratio"].get(n, 0.0),
                 "mix": number(parts[n].mix) if n in parts else None,
                 "within": number(parts[n].within) if n in parts else None} for n in names]
    perf = performance.segments.get(segment) if performance is not None else None
    return {"model": r.model, "version": r.version, **row, "features": features,
            "performance": performance_document(perf) if perf is not None else None}


def contribution_rows(r: ModelReport) -> list[dict[str, Any]]:
    """Per numeric feature, the segments' parts in the change of its mean, largest first (``segment_contributions``
    of the ``drift`` endpoint): ``mix`` (the segment's share moved) and ``within`` (its values moved)."""
    return [{"feature": c.feature, "segment": c.segment, "mix": number(c.mix), "within": number(c.within),
             "total": number(c.total)} for c in r.segment_contributions]


def sorted_rows(rows: list[dict[str, Any]], key: str = "problems") -> list[dict[str, Any]]:
    """Rows in the UI's order: ``problems`` (drift, then data quality, then withheld, each by p-value), or by
    a column (``name``, ``p_value``, ``effect``, ``missing_ratio``, ...; missing values last)."""
    if key == "problems":
        return sorted(rows, key=lambda r: (STATUS_ORDER[r["status"]], r["p_value"] if r["p_value"] is not None
                                           else 2.0, r["name"]))
    if key in ("name", "kind", "status"):
        return sorted(rows, key=lambda r: (str(r[key]), r["name"]))
    descending = key not in ("p_value",)

    def value(r: dict[str, Any]) -> tuple[int, float, str]:
        v = r.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return (1, 0.0, r["name"])
        return (0, -v if descending else v, r["name"])
    return sorted(rows, key=value)


def model_summary(r: ModelReport, stale_after_seconds: float | None = None, now_ns: int | None = None
                  ) -> dict[str, Any]:
    """A model version's status line (an element of ``/api/v1/models``); with ``stale_after_seconds`` (live pages),
    whether its data stopped that long ago (``stale``)."""
    rows = [feature_row(f) for f in r.features]  # statuses only: the effect shown does not matter here
    drifting = sorted(x["name"] for x in rows if x["status"] == "drift")
    quality = sorted(x["name"] for x in rows if x["quality_problems"])
    state = "drift" if drifting else "quality" if quality else (
        "reference_pending" if r.reference_source is None else "ok")
    return {
        "model": r.model, "version": r.version, "version_path": version_segment(r.version), "status": state,
        "reference_source": r.reference_source, "reference_rows": r.reference_rows,
        "reference_pending_rows": r.reference_pending_rows, "current_rows": r.current_rows,
        "features": len(rows), "features_drifting": drifting, "features_with_quality_problems": quality,
        "features_not_profiled": r.unprofiled_features,
        "latency_seconds": {"p50": number(r.latency_p50), "p95": number(r.latency_p95),
                            "p99": number(r.latency_p99)},
        "error_ratio": number(r.error_ratio), "lost_ratio": number(r.lost_ratio),
        **_freshness(r.last_data_ns, stale_after_seconds, now_ns),
    }


def _freshness(last_data_ns: int, stale_after_seconds: float | None, now_ns: int | None) -> dict[str, Any]:
    """``last_data_at`` (ISO 8601 UTC), its age and ``stale`` (None where not judged: offline reports).

    >>> _freshness(1_700_000_000 * 10**9, 600, 1_700_000_900 * 10**9)
    {'last_data_at': '2023-11-14T22:13:20Z', 'last_data_age_seconds': 900.0, 'stale': True}
    """
    if not last_data_ns:
        return {"last_data_at": None, "last_data_age_seconds": None, "stale": None}
    at = datetime.fromtimestamp(last_data_ns / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if stale_after_seconds is None:
        return {"last_data_at": at, "last_data_age_seconds": None, "stale": None}
    age = max(0.0, ((now_ns if now_ns is not None else time.time_ns()) - last_data_ns) / 1e9)
    return {"last_data_at": at, "last_data_age_seconds": round(age, 1), "stale": age > stale_after_seconds}


def performance_document(r: PerformanceReport | None, trace_url: str = "") -> dict[str, Any] | None:
    """A model version's performance (``/api/v1/.../performance``): each metric realized, estimated and on the
    reference, with standard errors and decisions, and the wrong predictions' spans (linked through ``ui.trace_url``);
    None when it has neither labels nor probabilities."""
    if r is None:
        return None
    names = list(dict.fromkeys([*r.realized, *r.estimated, *r.reference]))

    def metric(values: dict[str, Any], name: str) -> dict[str, Any] | None:
        m = values.get(name)
        return None if m is None else {"value": number(m.value), "se": number(m.se), "n": number(m.n)}

    def reference(name: str) -> dict[str, Any] | None:
        m = metric(r.reference, name)
        if m is not None:
            m["chunk_std"] = number(r.reference_chunk_std.get(name, math.nan))
        return m

    return {
        "task": r.task, "predictions_with_id": r.predictions, "labeled": r.labeled, "coverage": number(r.coverage),
        "label_delay_seconds": {"p50": number(r.delay_p50), "p95": number(r.delay_p95)},
        "degraded": sorted(k for k, v in r.degraded.items() if v),
        "estimated_degraded": sorted(k for k, v in r.estimated_degraded.items() if v),
        "metrics": [{"metric": name, "realized": metric(r.realized, name), "estimated": metric(r.estimated, name),
                     "reference": reference(name), "degraded": r.degraded.get(name),
                     "estimated_degraded": r.estimated_degraded.get(name),
                     "estimate_gap": metric(r.estimate_gap, name), "estimate_off": r.estimate_off.get(name),
                     "objective": r.objectives.get(name)}
                    for name in names],
        "estimate_off": sorted(k for k, v in r.estimate_off.items() if v),
        "estimate_unsupported_share": number(r.unsupported_share),
        "estimate_withheld": r.estimate_withheld or None,
        **({"withheld": dict(r.withheld)} if r.withheld else {}),
        "per_class": {c: {k: number(v) for k, v in m.items()} for c, m in r.per_class.items()},
        "roc_auc_binning_bound": number(r.auc_bound),
        "residual_quantiles": {str(q): number(v) for q, v in r.residual_quantiles.items()},
        "wrong_predictions": wrong_prediction_rows(r.wrong_predictions, trace_url),
        **({"evaluations": [evaluation_row(e) for e in r.evaluations]} if r.evaluations else {}),
        **({"fairness": fairness_document(r.fairness)} if r.fairness is not None else {}),
        **({"segment_reference": r.segment_reference, "segments": performance_segment_rows(r),
            "segment_contributions": [{"metric": c.feature, "segment": c.segment, "mix": number(c.mix),
                                       "within": number(c.within), "total": number(c.total)}
                                      for c in r.segment_contributions]} if r.segments else {}),
    }


def fairness_document(f: FairnessReport) -> dict[str, Any]:
    """A model's fairness (analyze/fairness.py) as the API and the pages show it: each group's counts, then each
    rate and disparity with its 95% interval and decisions (None: undecided)."""
    return {
        "favorable": f.favorable, "reference_groups": dict(f.reference_groups), "reference_source": f.reference_source,
        "unattributed_predictions": round(f.unattributed),
        "violations": len(f.violations),
        "groups": [{"attribute": g.attribute, "group": g.group, "predictions": g.predictions,
                    "favorable": g.favorable, "labelled": g.tp + g.fp + g.fn + g.tn,
                    "tp": g.tp, "fp": g.fp, "fn": g.fn, "tn": g.tn} for g in f.groups],
        "values": [{"metric": v.metric, "attribute": v.attribute, "group": v.group, "value": number(v.value),
                    "ci95": [number(v.low), number(v.high)], "rows": v.rows, "threshold": v.threshold,
                    "reference_value": None if v.reference_value is None else number(v.reference_value),
                    "p_values": {k: number(p) for k, p in v.p_values.items()},
                    "violation": v.violation, "changed": v.changed} for v in f.values],
    }


def evaluation_row(e: EvaluationReport) -> dict[str, Any]:
    """One evaluation of an LLM model's calls (analyze/evaluations.py) as the API and the pages show it."""
    def rate(x: Rate | None) -> dict[str, Any] | None:
        return None if x is None else {"value": number(x.value), "se": number(x.se), "n": x.n}

    return {"name": e.name, "results": e.results, "pass_rate": rate(e.pass_rate), "mean_score": rate(e.mean_score),
            "labels": dict(sorted(e.labels.items(), key=lambda kv: -kv[1])),
            "score_quantiles": {str(q): number(v) for q, v in e.score_quantiles.items()},
            "reference": None if not e.reference_source else {
                "source": e.reference_source, "results": e.reference_results,
                "pass_rate": rate(e.reference_pass_rate), "mean_score": rate(e.reference_mean_score)},
            "p_values": {k: number(v) for k, v in e.p_values.items()}, "degraded": dict(e.degraded)}


def headline_metric(perf: dict[str, Any]) -> str | None:
    """The metric a model is summed up by: accuracy (else ROC AUC) of a classifier, MAE (else RMSE) of a
    regressor, whichever the performance document has a value of (realized or estimated)."""
    have = {m["metric"] for m in perf.get("metrics", [])
            if (m["realized"] or {}).get("value") is not None or (m["estimated"] or {}).get("value") is not None}
    return next((m for m in ("accuracy", "roc_auc", "mae", "rmse") if m in have), None)


def performance_headline(perf: dict[str, Any] | None) -> dict[str, Any] | None:
    """The headline metric of a performance document: realized where labelled, else estimated, with its decision
    (``{metric, value, source, degraded}``; None without either)."""
    metric = headline_metric(perf) if perf else None
    if metric is None or perf is None:
        return None
    m = next(m for m in perf["metrics"] if m["metric"] == metric)
    if (m["realized"] or {}).get("value") is not None:
        return {"metric": metric, "value": m["realized"]["value"], "source": "realized", "degraded": m["degraded"]}
    return {"metric": metric, "value": m["estimated"]["value"], "source": "estimated",
            "degraded": m["estimated_degraded"]}


def performance_segment_rows(r: PerformanceReport) -> list[dict[str, Any]]:
    """Each segment's performance document (as the model's, without per-class rows), degraded ones first."""
    rows = []
    for label, segment in r.segments.items():
        doc = performance_document(segment) or {}
        doc.pop("per_class", None)
        rows.append({"segment": label, **doc})
    return sorted(rows, key=lambda d: (not (d["degraded"] or d["estimated_degraded"]), -(d["labeled"] or 0),
                                       d["segment"]))


def profile_summary(p: FeatureProfile) -> dict[str, Any]:
    """What one profiled feature holds: count, missing share, and quantiles or top categories.

    >>> from otel_ml.profile.sketch import NumericProfile
    >>> x = NumericProfile(); x.update(np.array([1.0, 2.0, 3.0, float("nan")]))
    >>> s = profile_summary(x); s["count"], s["missing_ratio"], s["mean"], s["quantiles"]["0.5"]
    (3, 0.25, 2.0, 2.0)
    """
    rows = p.rows
    out: dict[str, Any] = {"kind": p.kind, "count": p.count, "rows": rows,
                           "missing_ratio": number(p.missing / rows) if rows else None,
                           "type_mismatch_ratio": number(p.mismatch / rows) if rows else None}
    if isinstance(p, NumericProfile):
        out.update(mean=number(p.mean) if p.count else None, std=number(p.std) if p.count else None,
                   min=number(p.min) if p.count else None, max=number(p.max) if p.count else None,
                   quantiles={str(q): number(p.quantile(q)) for q in QUANTILES},
                   exact=p.count > 0 and p.rank_error() == 0)
    else:
        assert isinstance(p, CategoricalProfile)
        freq = p.frequencies()
        top = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES]
        out.update(distinct=len(freq), distinct_exact=p.is_exact(),
                   top_categories=[{"category": k, "count": v, "share": number(v / p.count) if p.count else None}
                                   for k, v in top])
    return out


def numeric_distribution(ref: NumericProfile | None, cur: NumericProfile | None) -> dict[str, Any]:
    """Reference and current histograms on shared bins (equal width over the 0.5–99.5% range of both, shares
    from each sketch's CDF, values beyond the range in the outer bins' neighbours ``below``/``above``) and both
    CDFs at 101 quantiles."""
    sides = [p for p in (ref, cur) if p is not None and p.count]
    if not sides:
        return {"kind": "numeric", "edges": [], "reference": [], "current": [], "cdf": None}
    lo = min(float(p.quantile(0.005)) for p in sides)
    hi = max(float(p.quantile(0.995)) for p in sides)
    if not hi > lo:  # one value: bins around it, wide enough to be distinct at its magnitude
        pad = max(0.5, abs(lo) * 1e-6)
        big = float(np.finfo(np.float64).max)
        lo, hi = max(lo - pad, -big), min(hi + pad, big)
    # lo(1 - t) + hi t, not linspace: hi - lo overflows for values near ±1.7e308; unique: a range narrower than
    # the values' spacing (constants at 1e15) gives equal edges, which a CDF query refuses
    t = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    edges = np.unique(lo * (1 - t) + hi * t)

    def shares(p: NumericProfile | None) -> dict[str, Any] | None:
        if p is None or not p.count:
            return None
        cdf = np.asarray(p.sketch.get_cdf(edges.tolist()), float)  # P(X < edge) at each edge, then 1
        return {"below": number(cdf[0]), "bins": [number(x) for x in np.diff(cdf[:-1])],
                "above": number(1.0 - cdf[-2])}
    qs = np.linspace(0, 1, 101)
    return {
        "kind": "numeric", "edges": [number(e) for e in edges], "reference": shares(ref), "current": shares(cur),
        "cdf": {"quantiles": [number(q) for q in qs],
                "reference": [number(ref.quantile(q)) for q in qs] if ref is not None and ref.count else None,
                "current": [number(cur.quantile(q)) for q in qs] if cur is not None and cur.count else None},
    }


def categorical_distribution(ref: CategoricalProfile | None, cur: CategoricalProfile | None) -> dict[str, Any]:
    """Shares of the most frequent categories of either side (the rest pooled as ``other``)."""
    rf = ref.frequencies() if ref is not None else {}
    cf = cur.frequencies() if cur is not None else {}
    rn = ref.count if ref is not None else 0
    cn = cur.count if cur is not None else 0
    weight = {k: (rf.get(k, 0) / rn if rn else 0) + (cf.get(k, 0) / cn if cn else 0) for k in set(rf) | set(cf)}
    top = sorted(weight, key=lambda k: (-weight[k], k))[:TOP_CATEGORIES]

    def shares(freq: dict[str, int], n: int) -> dict[str, Any] | None:
        if not n:
            return None
        s = [freq.get(k, 0) / n for k in top]
        return {"shares": [number(x) for x in s], "other": number(max(0.0, 1 - sum(s)))}
    return {"kind": "categorical", "categories": top, "reference": shares(rf, rn), "current": shares(cf, cn)}


def distribution(ref: FeatureProfile | None, cur: FeatureProfile | None) -> dict[str, Any]:
    kind = (cur or ref).kind if (cur or ref) is not None else "numeric"  # type: ignore[union-attr]
    if kind == "numeric":
        return numeric_distribution(ref if isinstance(ref, NumericProfile) else None,
                                    cur if isinstance(cur, NumericProfile) else None)
    return categorical_distribution(ref if isinstance(ref, CategoricalProfile) else None,
                                    cur if isinstance(cur, CategoricalProfile) else None)


def profile_document(profile: ModelProfile) -> dict[str, Any]:
    """A whole profile file (a baseline, a pinned reference, an archive export), readable: ``baseline show``."""
    doc: dict[str, Any] = {"model": profile.model, "version": profile.version, "rows": profile.rows,
                           "features": {name: profile_summary(p) for name, p in sorted(profile.features.items())}}
    ref = profile.performance
    if ref is not None:  # a labelled baseline: its performance, each metric's chunk spread, the calibration map
        doc["performance"] = {
            "task": ref.profile.task, "positive_class": ref.positive_class, "labeled": ref.profile.labeled,
            "calibration_knots": len(ref.calibration[0]) if ref.calibration else 0,
            "metrics": {k: {"value": number(v), "se": number(se), "chunk_std": number(ref.chunk_std.get(k, math.nan))}
                        for k, (v, se, _) in ref.profile.metrics(ref.positive_class).items()}}
    return doc
