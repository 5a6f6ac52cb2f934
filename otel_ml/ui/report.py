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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from otel_ml.analyze.drift import DriftConfig, ModelReport, compare
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import profile_from_dict
from otel_ml.store.baselines import ReferenceStore, read_profiles
from otel_ml.store.state import live_window_ns, open_read_only
from otel_ml.ui import pages, views

MAX_CHARTS = 30
HISTORY_POINTS = 96


def find_reference(state_dir: str | Path, model: str, version: str, reference: str | Path | None = None,
                   baseline_dir: str | Path | None = None) -> tuple[ModelProfile, str]:
    """(reference profile, where it came from), as the processor would choose it, or from ``reference``."""
    if reference is not None:
        return ModelProfile.read(reference), str(reference)
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


def merged_parts(profiles: Iterable[tuple[int, int, ModelProfile]], count: int,
                 points: int) -> Iterator[tuple[int, int, ModelProfile]]:
    """``count`` profiles ((start, end, profile), in time order, read lazily) merged into at most ``points``
    consecutive parts (start of the first, end of the last, merged profile)."""
    per_part = max(1, math.ceil(count / points))
    part: list[Any] | None = None
    for n, (start, end, profile) in enumerate(profiles, 1):
        if part is None:
            part = [start, end, profile]
        else:
            part[1] = max(part[1], end)
            part[2].merge(profile)
        if n % per_part == 0:
            yield part[0], part[1], part[2]
            part = None
    if part is not None:
        yield part[0], part[1], part[2]


def history(parts: Iterable[tuple[int, int, ModelProfile]], reference: ModelProfile, drift: DriftConfig,
            effect_size: dict[str, str] | None = None) -> dict[str, dict[str, list]]:
    """Per feature: time (the end of each part), p-value and effect of each part against the reference."""
    out: dict[str, dict[str, list]] = {}
    for _, end, profile in parts:
        for f in compare(reference, profile, drift).features:
            row = views.feature_row(f, effect_size)
            h = out.setdefault(f.feature, {"time_unix": [], "p_value": [], "effect": [], "drift_detected": []})
            h["time_unix"].append(end / 1e9)
            h["p_value"].append(row["p_value"])
            h["effect"].append(row["effect"])
            h["drift_detected"].append(row["drift_detected"])
    return out


def feature_history(conn: sqlite3.Connection, model: str, version: str, feature: str, reference: ModelProfile,
                    start_ns: int, end_ns: int, window_ns: int | None, drift: DriftConfig,
                    threshold: float | None = None, points: int = 48, max_bytes: int = 20_000_000,
                    effect_size: dict[str, str] | None = None) -> dict[str, list]:
    """``history`` of one feature over archived profiles in [start_ns, end_ns), for a page: the newest profiles
    first, until ``max_bytes`` of them were read (a profile holds every feature of its model; a wide model's day
    is hundreds of MB), and only this feature of each is parsed. ``threshold``: the model's level for this
    feature (one feature compared alone would be tested at the whole model's level). ``from_unix`` says how far
    back it got."""
    out: dict[str, list] = {"time_unix": [], "p_value": [], "effect": [], "drift_detected": [], "from_unix": []}
    if feature not in reference.features:
        return out
    read = 0
    found: list[tuple[int, int, ModelProfile]] = []
    for start, end, blob in _rows_in_range(conn, model, version, start_ns, end_ns, window_ns, newest_first=True):
        read += len(blob)
        d = json.loads(blob).get("features", {})
        if feature in d:
            one = ModelProfile(model, version)
            one.features[feature] = profile_from_dict(d[feature])
            found.append((start, end, one))
        if read >= max_bytes:
            break
    found.reverse()
    ref = ModelProfile(model, version)
    ref.features[feature] = reference.features[feature]
    out.update(history(merged_parts(found, len(found), points), ref, drift, effect_size).get(feature, {}))
    if threshold is not None:
        out["drift_detected"] = [d if d is None or p is None else p < threshold
                                 for d, p in zip(out["drift_detected"], out["p_value"])]
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
    conn = open_read_only(state_dir)  # first: a wrong --state-dir should be named as such
    try:
        ref, source = find_reference(state_dir, model, version, reference, baseline_dir)
        window_ns = live_window_ns(conn)
        rows = list(_rows_in_range(conn, model, version, start_ns, end_ns, window_ns))
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
    return render(report, ref, current, source, history(parts, ref, drift), span, max_charts), report


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
