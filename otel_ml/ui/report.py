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
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

from otel_ml.analyze.drift import DriftConfig, ModelReport, compare
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import profile_from_dict
from otel_ml.store.archive import export_range
from otel_ml.store.baselines import ReferenceStore, read_profiles
from otel_ml.store.state import live_window_ns, open_read_only
from otel_ml.ui import pages, views

MAX_CHARTS = 30
HISTORY_POINTS = 96


def find_reference(state_dir: str | Path, model: str, version: str, reference: str | Path | None = None,
                   baseline_dir: str | Path | None = None) -> tuple[ModelProfile, str]:
    """(reference profile, where it came from), as the processor would choose it, or from ``reference``."""
    if reference is not None:
        return ModelProfile.from_json(Path(reference).read_bytes()), str(reference)
    if baseline_dir is not None:
        found = read_profiles(Path(baseline_dir))
        for key in ((model, version), (model, "")):
            if key in found:
                return found[key][0], f"baseline {found[key][1].name}"
    pinned = ReferenceStore(None, str(state_dir)).find(model, version)
    if pinned is None:
        raise ValueError(f"no reference for model {model!r} version {version!r}: give --reference FILE or "
                         "--baseline-dir DIR (the processor pinned none in this state directory)")
    return pinned[0], "pinned"


def _rows_in_range(conn: sqlite3.Connection, model: str, version: str, start_ns: int, end_ns: int,
                   window_ns: int | None, newest_first: bool = False) -> sqlite3.Cursor:
    """(start, end, profile) of every archived profile of (model, version) in [start_ns, end_ns), and of the
    windows live at the last checkpoint (``window_ns``: their length), in time order."""
    query = ("SELECT start_ns, end_ns, profile FROM archive WHERE model=? AND version=? AND start_ns>=? "
             "AND end_ns<=?")
    params: tuple = (model, version, start_ns, end_ns)
    if window_ns is not None:
        query += (" UNION ALL SELECT start_ns, start_ns+?, profile FROM window_state WHERE model=? AND version=? "
                  "AND start_ns>=? AND start_ns+?<=?")
        params += (window_ns, model, version, start_ns, window_ns, end_ns)
    return conn.execute(query + (" ORDER BY 1 DESC" if newest_first else " ORDER BY 1"), params)


def history(rows: list[tuple[int, int, bytes]], reference: ModelProfile, drift: DriftConfig,
            points: int = HISTORY_POINTS) -> dict[str, dict[str, list]]:
    """Per feature: time (the end of each part), p-value and effect of each part of the range (``rows``: start,
    end, profile, in time order) against the reference."""
    out: dict[str, dict[str, list]] = {}
    if not rows:
        return out
    per_part = max(1, math.ceil(len(rows) / points))
    for i in range(0, len(rows), per_part):
        part = rows[i:i + per_part]
        merged = ModelProfile.from_json(part[0][2])
        for _, _, blob in part[1:]:
            merged.merge(ModelProfile.from_json(blob))
        t = max(r[1] for r in part) / 1e9
        for f in compare(reference, merged, drift).features:
            row = views.feature_row(f)
            h = out.setdefault(f.feature, {"time_unix": [], "p_value": [], "effect": [], "drift_detected": []})
            h["time_unix"].append(t)
            h["p_value"].append(row["p_value"])
            h["effect"].append(row["effect"])
            h["drift_detected"].append(row["drift_detected"])
    return out


def feature_history(conn: sqlite3.Connection, model: str, version: str, feature: str, reference: ModelProfile,
                    start_ns: int, end_ns: int, window_ns: int | None, drift: DriftConfig,
                    threshold: float | None = None, points: int = 48,
                    max_bytes: int = 20_000_000) -> dict[str, list]:
    """One feature's p-value and effect over archived profiles in [start_ns, end_ns), each part against the
    reference (``threshold``: the model's level for this feature, its number of features considered), for a
    page: the newest profiles first, until ``max_bytes`` of them were read (a profile holds
    every feature of its model; a wide model's day is hundreds of MB), then at most ``points`` parts. The result
    says how far back it got (``from_unix``)."""
    ref_feature = reference.features.get(feature)
    out: dict[str, list] = {"time_unix": [], "p_value": [], "effect": [], "drift_detected": []}
    if ref_feature is None:
        return out
    read = 0
    found: list[tuple[int, int, Any]] = []
    for start, end, blob in _rows_in_range(conn, model, version, start_ns, end_ns, window_ns, newest_first=True):
        read += len(blob)
        d = json.loads(blob)
        if feature in d.get("features", {}):
            found.append((start, end, profile_from_dict(d["features"][feature])))
        if read >= max_bytes:
            break
    found.reverse()
    ref = ModelProfile(model, version)
    ref.features[feature] = ref_feature
    per_part = max(1, math.ceil(len(found) / points))
    for i in range(0, len(found), per_part):
        part = found[i:i + per_part]
        merged = ModelProfile(model, version)
        merged.features[feature] = part[0][2]
        for _, _, p in part[1:]:
            merged.features[feature].merge(p)  # type: ignore[arg-type]
        [f] = [f for f in compare(ref, merged, drift).features if f.feature == feature]
        row = views.feature_row(f)
        out["time_unix"].append(max(e for _, e, _ in part) / 1e9)
        out["p_value"].append(row["p_value"])
        out["effect"].append(row["effect"])
        fired = row["drift_detected"]
        if threshold is not None and row["p_value"] is not None and fired is not None:
            fired = row["p_value"] < threshold
        out["drift_detected"].append(fired)
    out["from_unix"] = [found[0][0] / 1e9] if found else []
    return out


def build_report(state_dir: str | Path, model: str, version: str = "", start_ns: int | None = None,
                 end_ns: int | None = None, reference: str | Path | None = None,
                 baseline_dir: str | Path | None = None, drift: DriftConfig | None = None,
                 max_charts: int = MAX_CHARTS) -> tuple[str, ModelReport]:
    """The report's HTML, and the drift report it shows."""
    drift = drift or DriftConfig()
    start_ns = 0 if start_ns is None else start_ns
    end_ns = 2**62 if end_ns is None else end_ns
    ref, source = find_reference(state_dir, model, version, reference, baseline_dir)
    conn = open_read_only(state_dir)
    try:
        window_ns = live_window_ns(conn)
        current = export_range(conn, model, version, start_ns, end_ns, window_ns)
        rows = list(_rows_in_range(conn, model, version, start_ns, end_ns, window_ns))
    finally:
        conn.close()
    report = compare(ref, current, drift, "baseline" if source.startswith("baseline") else "pinned")
    span = (rows[0][0], max(r[1] for r in rows)) if rows else None
    return render(report, ref, current, source, history(rows, ref, drift), span, max_charts), report


def render(report: ModelReport, reference: ModelProfile, current: ModelProfile, source: str,
           over_time: dict[str, dict[str, list]], span: tuple[int | None, int | None] | None,
           max_charts: int = MAX_CHARTS) -> str:
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
            f"reference ({pages.esc(source)}). Report written {generated} by <code>otel-ml report</code>.</p>",
            "<h2>Features</h2>",
            pages.feature_table(rows, lambda name: f"#{anchors[name]}" if name in drawn else "#features-not-drawn")]
    for r in charted:
        name = r["name"]
        rp, cp = reference.features.get(name), current.features.get(name)
        h = over_time.get(name)
        body.append(f'<section id="{anchors[name]}"><h2>{pages.esc(name)} <span class=muted>'
                    f'{pages.esc(r["kind"])}</span></h2>')
        body.append(pages.feature_section(
            r, views.distribution(rp, cp), views.profile_summary(rp) if rp is not None else None,
            views.profile_summary(cp) if cp is not None else None,
            dict(h, caption="each part of the range against the reference") if h else None))
        body.append("</section>")
    if len(rows) > len(charted):
        body.append(f'<p id="features-not-drawn" class=muted>{len(rows) - len(charted)} more features are in the '
                    f"table only (this report draws {max_charts}, problems first: --max-charts).</p>")
    return pages.layout(f"report {report.model} {report.version}", "".join(body), home="#")


def comparison_rows(reference: ModelProfile, current: ModelProfile,
                    drift: DriftConfig | None = None) -> list[dict[str, Any]]:
    """The drift table the processor would compute for two profile files (``otel-ml compare``)."""
    report = compare(reference, current, drift or DriftConfig(), "file")
    return views.sorted_rows([views.feature_row(f) for f in report.features])
