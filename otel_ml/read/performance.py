"""Performance over any range of prediction time: the document the API, the pages, ``otel-ml report`` (HTML and
JSON) and the notebook client show for ``from``/``to``, made here once so that they all show the same numbers and
decisions.

A range holds the performance windows (live, and archived: ``performance_archive``) that *start* in it, merged:
the predictions made then, with every label that came for them, whenever it came. ``history`` splits the range into
at most ``HISTORY_POINTS`` consecutive parts of equal length (``time_parts``), each decided against the reference
as the whole range is.

>>> from otel_ml.profile.performance import PerformanceProfile
>>> import numpy as np
>>> p = PerformanceProfile()
>>> p.add_predictions(4)
>>> p.add_classified(np.array(["1", "0", "1", "1"]), np.array(["1", "0", "0", "1"]))
>>> doc = range_document("m", "", [(0, 3_600 * 10**9, p)], None, DriftConfig(), PerformanceConfig())
>>> doc["labeled"], doc["history"][0]["coverage"], doc["history"][0]["metrics"][0]["realized"]["value"]
(4, 1.0, 0.75)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from otel_ml.analyze.drift import DriftConfig
from otel_ml.analyze.performance import PerformanceConfig, PerformanceReport, assess_all
from otel_ml.profile.evaluations import EvaluationScores
from otel_ml.profile.performance import PerformanceProfile, PerformanceReference, performance_profile
from otel_ml.read.views import number, performance_document
from otel_ml.state.archive import HOUR_NS

HISTORY_POINTS = 48
"""Parts of a range's history at most: as many as a feature page's archived history draws."""

Window = tuple[int, int, PerformanceProfile]
"""(start ns, end ns, profile) of a performance window or of an archived part."""


def archived_windows(conn: sqlite3.Connection, model: str, version: str, start_ns: int, end_ns: int,
                     live: bool = False) -> list[Window]:
    """The archived performance windows of (model, version) starting in [start_ns, end_ns), and with ``live`` the
    live ones of the last checkpoint (``performance_window``; what an offline reader has of the horizon)."""
    query = ("SELECT start_ns, end_ns, profile FROM performance_archive WHERE model=? AND version=? AND start_ns>=? "
             "AND start_ns<?")
    params: tuple = (model, version, start_ns, end_ns)
    if live:
        query += (" UNION ALL SELECT start_ns, start_ns, profile FROM performance_window WHERE model=? AND "
                  "version=? AND start_ns>=? AND start_ns<?")
        params += params
    out = []
    try:
        rows = conn.execute(query + " ORDER BY 1", params).fetchall()
    except sqlite3.OperationalError as e:  # a state directory from before performance was archived
        if "no such table" not in str(e):
            raise
        rows = []
    for start, end, blob in rows:
        out.append((int(start), int(end), performance_profile(blob)))
    return out


def in_order(windows: Iterable[Window], window_ns: int | None = None) -> list[Window]:
    """``windows`` sorted by start, each ending at least ``window_ns`` after its start (a live window's end is its
    start in ``archived_windows``: its length is the processor's setting)."""
    step = window_ns or 0
    return sorted(((s, max(e, s + step), p) for s, e, p in windows), key=lambda w: w[0])


def merged(windows: Iterable[Window], max_classes: int = 32) -> PerformanceProfile | None:
    out = None
    for _, _, p in windows:
        if out is None:
            out = PerformanceProfile(max_classes)
        out.merge(p)
    return out


def assess_range(model: str, version: str, windows: list[Window], reference: PerformanceReference | None,
                 drift: DriftConfig, config: PerformanceConfig,
                 pinned_evaluations: dict[str, EvaluationScores] | None = None) -> PerformanceReport:
    """The performance of every prediction in ``windows`` (merged) against ``reference``, decided as the
    processor decides (``assess_all``; an LLM model's evaluations against ``pinned_evaluations`` without a
    baseline's)."""
    return assess_all(model, version, merged(windows, config.max_classes), reference, drift, config,
                      pinned_evaluations)


def range_document(model: str, version: str, windows: list[Window], reference: PerformanceReference | None,
                   drift: DriftConfig, config: PerformanceConfig,
                   pinned_evaluations: dict[str, EvaluationScores] | None = None,
                   points: int = HISTORY_POINTS) -> dict[str, Any]:
    """The performance document of the range (``performance_document``) plus ``history``: one entry per part,
    each ``{start_unix, end_unix, predictions_with_id, labeled, coverage, metrics}``, every metric realized and
    estimated (value, standard error, rows) with their decisions. ``windows`` in time order (``in_order``)."""
    report = assess_range(model, version, windows, reference, drift, config, pinned_evaluations)
    doc = performance_document(report) or {}
    doc["history"] = []
    for start, end, profile in time_parts(windows, points):
        part = performance_document(assess_all(model, version, profile, reference, drift, config,
                                               pinned_evaluations)) or {}
        doc["history"].append({
            "start_unix": start / 1e9, "end_unix": end / 1e9, "predictions_with_id": part.get("predictions_with_id"),
            "labeled": part.get("labeled"), "coverage": part.get("coverage"),
            "metrics": [{k: m[k] for k in ("metric", "realized", "estimated", "degraded", "estimated_degraded")}
                        for m in part.get("metrics", [])],
            "evaluations": [{k: e[k] for k in ("name", "results", "pass_rate", "mean_score", "degraded")}
                            for e in part.get("evaluations", [])]})
    doc["windows_unix"] = [number(windows[0][0] / 1e9), number(max(e for _, e, _ in windows) / 1e9)] if windows else []
    return doc


def time_parts(windows: list[Window], points: int = HISTORY_POINTS) -> list[Window]:
    """``windows`` (in time order) merged into at most ``points`` parts of equal length in time (whole hours when
    a part is an hour or more; else at least the shortest window), each window in the part its start falls in: a
    part per 15 hours of a month, per hour of two days, per window of a short range. A window longer than a part
    (an archived day) is a part of its own.

    >>> from otel_ml.profile.performance import PerformanceProfile
    >>> hour = 3_600 * 10**9
    >>> ws = [(k * hour, (k + 1) * hour, PerformanceProfile()) for k in range(72)]
    >>> [(s // hour, e // hour) for s, e, _ in time_parts(ws, 48)][:3], len(time_parts(ws, 48))
    ([(0, 2), (2, 4), (4, 6)], 36)
    >>> minute = 60 * 10**9
    >>> len(time_parts([(k * minute, (k + 1) * minute, PerformanceProfile()) for k in range(20)], 48))
    20
    """
    if not windows:
        return []
    first = windows[0][0]
    span = windows[-1][0] - first + 1
    part_ns = -(-span // points)
    if part_ns >= HOUR_NS:  # whole hours: a part per day of a month
        part_ns = -(-part_ns // HOUR_NS) * HOUR_NS
    else:  # never shorter than a window: a part per window of a short range
        part_ns = max(part_ns, min(e - s for s, e, _ in windows))
    parts: dict[int, list] = {}
    for start, end, profile in windows:
        part = parts.get((start - first) // part_ns)
        if part is None:
            parts[(start - first) // part_ns] = [start, end, profile.copy()]
        else:
            part[1] = max(part[1], end)
            part[2].merge(profile)
    return [(s, e, p) for s, e, p in parts.values()]
