"""``otel-ml report``: one self-contained HTML file from the archive, the UI's views for any past range.

The current profile is every archived (and still live) window of the model inside the range, merged; the
reference is a file given with ``--reference``, else the model's baseline (``--baseline-dir``), else the
reference it pinned. The history chart compares each part of the range (at most ``history_points`` parts, each
a merge of consecutive archived profiles) with the same reference. The file's size is bounded by the sketches,
not by the rows: distributions are drawn for at most ``max_charts`` features (problems first), the rest are
rows of the table.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from otel_ml.analyze.drift import DriftConfig, ModelReport, compare
from otel_ml.analyze.exemplars import exemplars_of
from otel_ml.analyze.performance import PerformanceConfig, performance_alpha
from otel_ml.analyze.versions import compare_versions
from otel_ml.labels.evaluations import pinned_evaluations
from otel_ml.profile.model import ModelProfile
from otel_ml.read import views
from otel_ml.read.archive import checkpoint_ground_truth, live_window_ns, open_read_only, rows_in_range
from otel_ml.read.compare import find_reference, history, merged_parts
from otel_ml.read.performance import archived_windows, assess_range, in_order, range_document
from otel_ml.read.versions import comparison_document
from otel_ml.ui import pages

MAX_CHARTS = 30
HISTORY_POINTS = 96


def build_report(state_dir: str | Path, model: str, version: str = "", start_ns: int | None = None,
                 end_ns: int | None = None, reference: str | Path | None = None,
                 baseline_dir: str | Path | None = None, drift: DriftConfig | None = None,
                 max_charts: int = MAX_CHARTS, performance: PerformanceConfig | None = None,
                 effect_size: dict[str, str] | None = None, settings: str = "defaults"
                 ) -> tuple[str, ModelReport, dict[str, Any]]:
    """The report's HTML, the drift report it shows, and the documents the API serves for the range (``drift``:
    the drift document's rows; ``performance``: the range's performance document, with its history)."""
    drift = drift or DriftConfig()
    performance = performance or PerformanceConfig()
    start_ns = 0 if start_ns is None else start_ns
    end_ns = 2**62 if end_ns is None else end_ns
    conn = open_read_only(state_dir)  # first: a wrong --state-dir should be named as such
    try:
        ref, source = find_reference(state_dir, model, version, reference, baseline_dir)
        window_ns = live_window_ns(conn)
        rows = list(rows_in_range(conn, model, version, start_ns, end_ns, window_ns))
        labelled = in_order(archived_windows(conn, model, version, start_ns, end_ns, live=True),
                            int(performance.window_seconds * 1e9))
        pinned = pinned_evaluations(checkpoint_ground_truth(conn), model, version)
    finally:
        conn.close()
    if not rows:
        raise ValueError(f"no archived windows of model {model!r} version {version!r} in that range "
                         "(otel-ml archive list shows what there is)")
    # Each archived profile is parsed once: into its part of the history and into the range's profile.
    current = ModelProfile(model, version)
    parts = []
    for part in merged_parts(((s, e, ModelProfile.from_json(blob)) for s, e, blob in rows), len(rows),
                             HISTORY_POINTS):
        current.merge(part[2])
        parts.append(part)
    report = compare(ref, current, drift, "baseline" if source.startswith("baseline") else "pinned")
    span = (rows[0][0], max(r[1] for r in rows))
    perf = None
    if labelled or ref.performance is not None:
        perf = range_document(model, version, labelled, ref.performance, drift, performance, pinned)
        perf["range_unix"] = [start_ns / 1e9, min(end_ns, 2**62) / 1e9]
    summary = views.model_summary(report)
    drift_rows = views.sorted_rows([views.feature_row(f, effect_size) for f in report.features])
    documents = {"model": model, "version": version, "reference_source": source, "settings": settings,
                 "range_unix": [span[0] / 1e9, span[1] / 1e9],
                 "drift": {**summary, "features": drift_rows, "correlation_changes": views.correlation_rows(report),
                           "attribution": views.attribution_document(report),
                           "segments": views.segment_rows(report),
                           "segment_contributions": views.contribution_rows(report)},
                 "performance": perf}
    html = render(report, ref, current, source, history(parts, ref, drift, effect_size), span, max_charts, perf,
                  settings)
    return html, report, documents


def render(report: ModelReport, reference: ModelProfile, current: ModelProfile, source: str,
           over_time: dict[str, dict[str, list]], span: tuple[int | None, int | None] | None,
           max_charts: int = MAX_CHARTS, performance: dict[str, Any] | None = None, settings: str = "defaults") -> str:
    summary = views.model_summary(report)
    summary["reference_source"] = source
    rows = views.sorted_rows([views.feature_row(f) for f in report.features])
    anchors = {r["name"]: f"f{i}" for i, r in enumerate(rows)}
    charted = rows[:max_charts]
    drawn = {r['name'] for r in charted}
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lo, hi = span if span else (None, None)
    body = [pages.model_header(summary, "rows in range"),
            f"<p class=muted>Archived windows from {pages.timestamp(lo)} to {pages.timestamp(hi)} against the "
            f"reference ({pages.esc(source)}), decided with {pages.esc(settings)}. Report written {generated} by "
            "<code>otel-ml report</code>.</p>",
            pages.performance_section(performance),
            pages.performance_history_section(performance),
            "<h2>Features</h2>",
            pages.feature_table(rows, lambda name: f"#{anchors[name]}" if name in drawn else "#features-not-drawn"),
            pages.attribution_section(views.attribution_document(report)),
            pages.correlation_section(views.correlation_rows(report)),
            pages.segment_section(views.segment_rows(report), views.contribution_rows(report))]
    reported = {f.feature: f for f in report.features}
    for r in charted:
        name = r["name"]
        rp, cp = reference.features.get(name), current.features.get(name)
        h = over_time.get(name)
        body.append(f'<section id="{anchors[name]}"><h2>{pages.esc(name)} <span class=muted>'
                    f'{pages.esc(r["kind"])}</span></h2>')
        body.append(pages.feature_section(
            r, views.distribution(rp, cp), views.profile_summary(rp) if rp is not None else None,
            views.profile_summary(cp) if cp is not None else None,
            dict(h, caption="each part of the range against the reference") if h else None,
            examples=views.example_predictions(exemplars_of(name, reported[name].exemplars, reference, current))
            if name in reported else None))
        body.append("</section>")
    if len(rows) > len(charted):
        body.append(f'<p id="features-not-drawn" class=muted>{len(rows) - len(charted)} more features are in the '
                    f"table only (this report draws {max_charts}, problems first: --max-charts).</p>")
    return pages.layout(f"report {report.model} {report.version}", "".join(body), home="#")


def build_version_report(state_dir: str | Path, model: str, a: str, b: str, start_ns: int | None = None,
                         end_ns: int | None = None, drift: DriftConfig | None = None,
                         performance: PerformanceConfig | None = None) -> tuple[str, dict[str, Any]]:
    """Version ``b`` of ``model`` against version ``a`` over a past range (``otel-ml report --compare-versions``):
    each version's archived (and still live) windows in the range merged, its performance windows too, compared as
    the processor compares them live (analyze/versions.py). The HTML page and the API's document."""
    drift = drift or DriftConfig()
    performance = performance or PerformanceConfig()
    start_ns = 0 if start_ns is None else start_ns
    end_ns = 2**62 if end_ns is None else end_ns
    conn = open_read_only(state_dir)
    try:
        window_ns = live_window_ns(conn)
        sides = []
        for version in (a, b):
            profile = ModelProfile(model, version)
            for _, _, blob in rows_in_range(conn, model, version, start_ns, end_ns, window_ns):
                profile.merge(ModelProfile.from_json(blob))
            if not profile.rows:
                raise ValueError(f"no archived windows of model {model!r} version {version!r} in that range "
                                 "(otel-ml archive list shows what there is)")
            labelled = archived_windows(conn, model, version, start_ns, end_ns, live=True)
            sides.append((profile, assess_range(model, version, labelled, None, drift, performance)
                          if labelled else None))
    finally:
        conn.close()
    c = compare_versions(sides[0][0], sides[1][0], sides[0][1], sides[1][1], drift,
                         performance_alpha(drift, performance), performance.min_labels)
    doc = {**comparison_document(c), "range_unix": [start_ns / 1e9, min(end_ns, 2**62) / 1e9]}
    return pages.comparison_page(doc, lambda _version: "#"), doc
