"""HTML of the UI's pages and of offline reports: plain server-rendered HTML, no JavaScript.

Every piece of text that came from a span (model, version, feature and category names) goes through ``esc``
(``html.escape`` with quotes) or, in URLs, ``quote`` with no safe characters; the pages are also served with a
Content-Security-Policy that forbids scripts, so a name that slipped through would still not run.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from otel_ml.read.names import printable
from otel_ml.read.views import headline_metric, sorted_rows
from otel_ml.ui import charts

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#2c3e50;color:#fff;padding:10px 24px}header a{color:#fff;text-decoration:none}
main{padding:16px 24px;max-width:1400px}h1{font-size:20px;margin:8px 0}h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;background:#fff;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e5e5e5;padding:4px 10px;text-align:left;vertical-align:top}
th a{color:#222}td.num,th.num{text-align:right}td.num{white-space:nowrap}
.name{max-width:420px;overflow-wrap:anywhere}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:12px;color:#fff}
.drift,.degraded,.off,.worse,.different,.violation,.changed{background:#c0392b}.quality{background:#d68910}.withheld{background:#7f8c8d}.ok{background:#27ae60}
.reference_pending{background:#7f8c8d}.stale{background:#34495e}
.banner{background:#fdf2e9;border:1px solid #e59866;padding:8px 12px;margin:8px 0}
.muted{color:#777}.grid{display:flex;flex-wrap:wrap;gap:16px}
.card{background:#fff;padding:8px 12px;border:1px solid #e5e5e5}
img.chart{max-width:100%;height:auto}
"""


def esc(text: Any) -> str:
    """Text for HTML: escaped, and control and format characters (a bidi override) shown as escapes."""
    return html.escape(printable(str(text)), quote=True)


def url_segment(text: str) -> str:
    return quote(text, safe="")


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a table cell: ``–`` when missing, short scientific for tiny p-values."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if x != 0 and abs(x) < 10 ** -digits:
        return f"{x:.2e}"
    return f"{x:.{digits}f}" if abs(x) < 1000 else f"{x:,.0f}"


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def badge(state: str) -> str:
    return f'<span class="badge {esc(state)}">{esc(state.replace("_", " "))}</span>'


def age(seconds: float | None) -> str:
    """``3 s``, ``12 min``, ``5.2 h``, ``3.0 d`` ago."""
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago" if seconds < 172800 else f"{seconds / 86400:.1f} d ago"


def last_data(m: dict[str, Any]) -> str:
    """When the model's data last arrived, and a ``stale`` badge when that is too long ago."""
    if not m.get("last_data_at"):
        return "–"
    when = f'<span title="{esc(m["last_data_at"])}">{esc(age(m.get("last_data_age_seconds")) or m["last_data_at"])}'
    return when + "</span>" + (" " + badge("stale") if m.get("stale") else "")


def stale_banner(m: dict[str, Any]) -> str:
    if not m.get("stale"):
        return ""
    return (f'<p class="banner stale-banner">No data since {esc(m["last_data_at"])} '
            f'({esc(age(m["last_data_age_seconds"]))}): the horizon, and the drift shown, are frozen at that '
            "time. Is the model still serving, and its spans still reaching otel-ml?</p>")


def layout(title: str, body: str, home: str = "/") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)} · otel-ml</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f'<body><header><a href="{esc(home)}">otel-ml</a></header><main>{body}</main></body></html>\n')


def models_page(models: list[dict[str, Any]], model_href: Any, generated: str = "") -> str:
    """Every model version with its status; ``model_href(model, version_path)`` links to its page."""
    rows = []
    for m in sorted(models, key=lambda m: ({"drift": 0, "quality": 1}.get(m["status"], 2), m["model"], m["version"])):
        drifting = ", ".join(esc(x) for x in m["features_drifting"][:5]) + (
            f" and {len(m['features_drifting']) - 5} more" if len(m["features_drifting"]) > 5 else "")
        lat = m["latency_seconds"]["p95"]
        rows.append(
            f'<tr class="model" data-status="{esc(m["status"])}"><td class="name">'
            f'<a href="{esc(model_href(m["model"], m["version_path"]))}">{esc(m["model"])}</a></td>'
            f'<td class="name">{esc(m["version"]) or "<span class=muted>(none)</span>"}</td>'
            f'<td>{badge(m["status"])}</td><td>{esc(m["reference_source"] or "pending")}</td>'
            f'<td class="num">{fmt(m["reference_rows"])}</td><td class="num">{fmt(m["current_rows"])}</td>'
            f'<td class="num">{len(m["features_drifting"])} of {m["features"]}</td><td class="name">{drifting}</td>'
            f'<td class="num">{len(m["features_with_quality_problems"])}</td>'
            f'<td class="num">{"–" if lat is None else f"{lat * 1000:.1f} ms"}</td>'
            f'<td class="num">{pct(m["lost_ratio"])}</td><td class="num">{last_data(m)}</td>'
            f'{headline_cell(m.get("performance"))}</tr>')
    table = ("<table><thead><tr><th>model</th><th>version</th><th>status</th><th>reference</th>"
             "<th class=num>reference rows</th><th class=num>rows in horizon</th><th class=num>drifting</th>"
             "<th>drifting features</th><th class=num>quality problems</th><th class=num>latency p95</th>"
             "<th class=num>lost</th><th class=num>last data</th><th class=num>performance</th></tr></thead><tbody>"
             + "".join(rows)
             + "</tbody></table>") if rows else (
        "<p>No model has sent predictions yet.</p>")
    return layout("models", f"<h1>Models</h1>{table}<p class=muted>{esc(generated)}</p>")


def headline_cell(h: dict[str, Any] | None) -> str:
    """The overview's performance cell: the headline metric (``views.performance_headline``) and its decision."""
    if h is None:
        return '<td class="num muted">–</td>'
    kind = "" if h["source"] == "realized" else " <span class=muted>est.</span>"
    return (f'<td class="num">{esc(h["metric"])} {fmt(h["value"])}{kind} '
            f'{badge("degraded" if h["degraded"] else "ok") if h["degraded"] is not None else ""}</td>')


COLUMNS = (("name", "feature"), ("status", "status"), ("p_value", "p-value"), ("effect", "effect"),
           ("current_count", "current n"), ("missing_ratio", "missing"), ("out_of_range_ratio", "out of range"),
           ("unseen_ratio", "unseen"))


def feature_table(rows: list[dict[str, Any]], feature_href: Any, sort: str = "problems",
                  sort_href: Any = None) -> str:
    """The per-feature table: decision, p-value, effect, distances and data quality, problems first."""
    head = []
    for key, label in COLUMNS:
        cls = ' class="num"' if key not in ("name", "status") else ""
        title = f'<a href="{esc(sort_href(key))}">{esc(label)}</a>' if sort_href else esc(label)
        head.append(f"<th{cls}>{title}{' ▾' if key == sort else ''}</th>")
    head.append("<th>why no decision</th><th>scores</th>")
    body = []
    for r in sorted_rows(rows, sort):
        scores = " ".join(f"{esc(k)} {fmt(v)}" for k, v in r["scores"].items())
        body.append(
            f'<tr class="feature" data-status="{esc(r["status"])}" data-feature="{esc(r["name"])}">'
            f'<td class="name"><a href="{esc(feature_href(r["name"]))}">{esc(r["name"])}</a>'
            f' <span class=muted>{esc(r["kind"])}</span></td><td>{badge(r["status"])}</td>'
            f'<td class="num">{fmt(r["p_value"])}</td>'
            f'<td class="num">{fmt(r["effect"])} <span class=muted>{esc(r["effect_method"])}</span></td>'
            f'<td class="num">{fmt(r["current_count"])}</td><td class="num">{pct(r["missing_ratio"])}</td>'
            f'<td class="num">{pct(r["out_of_range_ratio"])}</td><td class="num">{pct(r["unseen_ratio"])}</td>'
            f'<td>{esc(r["withheld_reason"] or "")}</td><td class="muted">{scores}</td></tr>')
    return ("<table><thead><tr>" + "".join(head) + "</tr></thead><tbody>" + "".join(body)
            + "</tbody></table>")


def model_header(summary: dict[str, Any], rows_label: str = "rows in horizon") -> str:
    version = esc(summary["version"]) if summary["version"] else "<span class=muted>(no version)</span>"
    lat = summary["latency_seconds"]
    items = [("status", badge(summary["status"])), ("reference", esc(summary["reference_source"] or "pending")),
             ("reference rows", fmt(summary["reference_rows"])), (rows_label, fmt(summary["current_rows"])),
             ("features drifting", f'{len(summary["features_drifting"])} of {summary["features"]}'),
             ("latency p50 / p95 / p99", " / ".join("–" if lat[k] is None else f"{lat[k] * 1000:.1f} ms"
                                                    for k in ("p50", "p95", "p99"))),
             ("errors", pct(summary["error_ratio"])), ("lost", pct(summary["lost_ratio"])),
             ("last data", last_data(summary))]
    cards = "".join(f'<div class="card"><div class=muted>{k}</div><div>{v}</div></div>' for k, v in items)
    return (f'<h1>{esc(summary["model"])} <span class=muted>{version}</span></h1>{stale_banner(summary)}'
            f'<div class="grid">{cards}</div>')


def performance_section(perf: dict[str, Any] | None) -> str:
    """Realized, estimated and reference performance, one row per metric (nothing without labels or estimates);
    an LLM model's evaluations."""
    if not perf:
        return ""
    if not perf["metrics"]:
        return evaluation_section(perf)

    def cell(m: dict[str, Any] | None) -> str:
        if m is None or m["value"] is None:
            return "<td class=num>–</td>"
        se = "" if m["se"] is None else f' <span class=muted>± {fmt(m["se"])}</span>'
        return f'<td class=num>{fmt(m["value"])}{se}</td>'

    def decided(v: bool | None) -> str:
        return "<td>–</td>" if v is None else f"<td>{badge('degraded' if v else 'ok')}</td>"

    def tracking(m: dict[str, Any]) -> str:
        gap = m.get("estimate_gap")
        if gap is None or gap["value"] is None:
            return "<td>–</td>"
        return (f'<td>{badge("off" if m.get("estimate_off") else "ok")} <span class=muted>gap '
                f'{fmt(gap["value"])} ± {fmt(gap["se"])}</span></td>')

    rows = "".join(f'<tr><td class=name>{esc(m["metric"])}</td>{cell(m["realized"])}{decided(m["degraded"])}'
                   f'{cell(m["estimated"])}{decided(m["estimated_degraded"])}{tracking(m)}{cell(m["reference"])}</tr>'
                   for m in perf["metrics"])
    warnings = ""
    if perf.get("estimate_off"):
        warnings += (f'<div class="banner">The label-free estimate no longer tracks the labels for '
                     f'{esc(", ".join(perf["estimate_off"]))}: on the labelled predictions it differs from the '
                     "realized value by more than its standard error allows, so the reference's calibration (CBPE's "
                     "assumption) no longer holds for this traffic. Trust the realized values; rebuild the baseline "
                     "to estimate again (docs/statistics.md).</div>")
    if perf.get("estimate_withheld"):
        warnings += (f'<div class="banner">Estimates unreliable, their decisions withheld: '
                     f'{pct(perf.get("estimate_unsupported_share"))} of the predictions have a probability outside '
                     "the range the reference's calibration was learned on (performance.max_unsupported_share).</div>")
    delay = perf["label_delay_seconds"]
    facts = (f'<p class=muted>{fmt(perf["labeled"])} labelled of {fmt(perf["predictions_with_id"])} predictions '
             f'with an id (coverage {pct(perf["coverage"])}); label delay p50 {duration(delay["p50"])}, p95 '
             f'{duration(delay["p95"])}. "degraded": significantly worse than the reference '
             '(docs/statistics.md).</p>')
    return ("<h2>Performance</h2>" + facts + warnings + "<table><thead><tr><th>metric</th><th class=num>realized"
            "</th><th>degraded</th><th class=num>estimated (no labels)</th><th>degraded</th><th>estimate vs labels</th>"
            "<th class=num>reference</th></tr></thead><tbody>" + rows + "</tbody></table>"
            + segment_performance_section(perf) + evaluation_section(perf) + fairness_section(perf)
            + wrong_predictions_section(perf))


def _rate_cell(r: dict[str, Any] | None) -> str:
    if r is None or r["value"] is None:
        return "<td class=num>–</td>"
    se = "" if r["se"] is None else f' <span class=muted>± {fmt(r["se"])}</span>'
    return f'<td class=num>{fmt(r["value"])}{se} <span class=muted>({fmt(r["n"])})</span></td>'


def evaluation_section(perf: dict[str, Any]) -> str:
    """An LLM model's evaluation results (``gen_ai.evaluation.result``), one row per evaluation: pass rate and mean
    score against the reference's, with their decisions."""
    evaluations = perf.get("evaluations") or []
    if not evaluations:
        return ""

    def decided(e: dict[str, Any], test: str) -> str:
        v = e["degraded"].get(test)
        return "<td>–</td>" if v is None else f"<td>{badge('degraded' if v else 'ok')}</td>"

    rows = []
    for e in evaluations:
        ref = e["reference"] or {}
        labels = ", ".join(f"{esc(k)} {fmt(v)}" for k, v in list(e["labels"].items())[:4])
        rows.append(f'<tr><td class=name>{esc(e["name"])}</td><td class=num>{fmt(e["results"])}</td>'
                    f'{_rate_cell(e["pass_rate"])}{_rate_cell(ref.get("pass_rate"))}{decided(e, "pass_rate")}'
                    f'{_rate_cell(e["mean_score"])}{_rate_cell(ref.get("mean_score"))}{decided(e, "mean_score")}'
                    f'<td>{labels}</td><td>{esc(ref.get("source", "none yet"))}</td></tr>')
    return ("<h2>Evaluations</h2><p class=muted>Results of gen_ai.evaluation.result joined to the calls they "
            "evaluate, over the horizon; a pass rate that dropped, or a mean score that moved, significantly against "
            "the reference is degraded (docs/statistics.md, LLM evaluations).</p><table><thead><tr><th>evaluation"
            "</th><th class=num>results</th><th class=num>pass rate</th><th class=num>reference</th><th>degraded</th>"
            "<th class=num>mean score</th><th class=num>reference</th><th>degraded</th><th>labels</th>"
            "<th>reference from</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def fairness_section(perf: dict[str, Any]) -> str:
    """A model with fairness settings: per attribute, each group's rates and its disparities against the reference
    group, with 95% intervals and decisions (violations first)."""
    fairness = perf.get("fairness")
    if not fairness:
        return ""
    values = fairness["values"]
    rates = {(v["attribute"], v["group"], v["metric"]): v for v in values}

    def rate(attribute: str, group: str) -> str:
        v = rates.get((attribute, group, "selection_rate"))
        return fmt(v["value"]) if v else "–"

    def decided(v: dict[str, Any], test: str) -> str:
        return "<td>–</td>" if v[test] is None else f"<td>{badge(test if v[test] else 'ok')}</td>"

    out = []
    for attribute, reference in fairness["reference_groups"].items():
        disparities = [v for v in values if v["attribute"] == attribute and v["threshold"] is not None]
        disparities.sort(key=lambda v: (not (v["violation"] or v["changed"]), v["group"], v["metric"]))
        rows = "".join(
            f'<tr><td class=name>{esc(v["group"])}</td><td>{esc(v["metric"])}</td><td class=num>{fmt(v["value"])} '
            f'<span class=muted>[{fmt(v["ci95"][0])}, {fmt(v["ci95"][1])}]</span></td>'
            f'<td class=num>{fmt(v["threshold"])}</td>{decided(v, "violation")}'
            f'<td class=num>{fmt(v["reference_value"]) if v["reference_value"] is not None else "–"}</td>'
            f'{decided(v, "changed")}<td class=num>{rate(attribute, v["group"])} vs '
            f'{rate(attribute, reference)}</td></tr>' for v in disparities)
        out.append(f'<h3>{esc(attribute)} <span class=muted>against {esc(reference)}</span></h3><table><thead><tr>'
                   "<th>group</th><th>disparity</th><th class=num>value [95%]</th><th class=num>threshold</th>"
                   "<th>beyond it</th><th class=num>reference's</th><th>changed</th>"
                   f"<th class=num>selection rate</th></tr></thead><tbody>{rows}</tbody></table>")
    return (f'<h2>Fairness</h2><p class=muted>Favorable outcome {esc(fairness["favorable"])}; over the horizon\'s '
            f'predictions ({fmt(fairness["unattributed_predictions"])} in no group). "violation": the disparity is '
            'significantly beyond its threshold; "changed": significantly moved from the reference\'s own '
            "(docs/statistics.md, Fairness).</p>" + "".join(out))


def evaluation_history_section(perf: dict[str, Any]) -> str:
    """Each evaluation's pass rate over the parts of a range, against its reference's, drawn."""
    history = perf.get("history") or []
    out = []
    for e in perf.get("evaluations") or []:
        parts = [next((x for x in p.get("evaluations", []) if x["name"] == e["name"]), None) for p in history]
        rates = [(x["pass_rate"]["value"], x["pass_rate"]["se"] if x["pass_rate"]["se"] is not None else float("nan"))
                 if x is not None and x["pass_rate"]["value"] is not None else None for x in parts]
        if not any(rates):
            continue
        ref = (e["reference"] or {}).get("pass_rate")
        band = None
        if ref and ref["value"] is not None:
            band = (ref["value"], ref["se"] if ref["se"] is not None else float("nan"))
        evaluated = [min(1.0, x["results"] / p["predictions_with_id"]) if x and p.get("predictions_with_id") else None
                     for x, p in zip(parts, history)]
        chart = charts.performance_history([p["start_unix"] for p in history], [p["end_unix"] for p in history],
                                           f"{e['name']} pass rate", rates, [None] * len(history), band,
                                           [bool(x and x["degraded"].get("pass_rate")) for x in parts], evaluated)
        out.append(f"<h2>Evaluation over time <span class=muted>{esc(e['name'])}, {len(history)} parts</span></h2>"
                   f'<img class=chart alt="{esc(e["name"])} pass rate over time" src="{chart}">'
                   "<p class=muted>Each part: the pass rate of its calls' results ± one standard error; dashed: the "
                   "reference's; circled: degraded; below: the share of the part's calls with a result.</p>")
    return "".join(out)


def performance_history_section(perf: dict[str, Any] | None) -> str:
    """The headline metric over the parts of a range (``history`` of a range's performance document), drawn; an
    LLM model's evaluations' pass rates."""
    if not perf or not perf.get("history"):
        return ""
    metric = headline_metric(perf)
    if metric is None:
        return evaluation_history_section(perf)
    history = perf["history"]

    def value(part: dict[str, Any], kind: str) -> tuple[float, float] | None:
        m = next((m for m in part["metrics"] if m["metric"] == metric), None)
        v = m.get(kind) if m is not None else None
        if v is None or v["value"] is None:
            return None
        return v["value"], v["se"] if v["se"] is not None else float("nan")

    ref = next((m["reference"] for m in perf["metrics"] if m["metric"] == metric), None)
    band = None
    if ref is not None and ref["value"] is not None:
        spread = ref.get("chunk_std") if ref.get("chunk_std") is not None else ref["se"]
        band = (ref["value"], spread if spread is not None else float("nan"))
    degraded = [bool(next((m["degraded"] for m in part["metrics"] if m["metric"] == metric), False))
                for part in history]
    chart = charts.performance_history([p["start_unix"] for p in history], [p["end_unix"] for p in history], metric,
                                       [value(p, "realized") for p in history],
                                       [value(p, "estimated") for p in history], band, degraded,
                                       [p["coverage"] for p in history])
    off = ""
    if perf.get("estimate_off"):  # over the range, where labels exist
        off = (f'<div class="banner">Over this range the label-free estimate does not track the labels for '
               f'{esc(", ".join(perf["estimate_off"]))}: the reference\'s calibration no longer holds for this '
               "traffic, so estimates where labels have not come yet are not to be trusted (docs/statistics.md)."
               "</div>")
    return (f"<h2>Performance over time <span class=muted>{esc(metric)}, {len(history)} parts</span></h2>{off}"
            f'<img class=chart alt="{esc(metric)} over time" src="{chart}">'
            f"<p class=muted>Each part: realized (labelled predictions) and estimated (without labels), ± one "
            f"standard error; dashed: the reference, shaded: its spread; circled: degraded; below: the share of "
            f"the part's predictions with an id that have their label.</p>" + evaluation_history_section(perf))


def duration(seconds: float | None) -> str:
    """A duration for people: seconds, minutes, hours or days.

    >>> duration(42), duration(174_583), duration(None)
    ('42 s', '2.0 days', '–')
    """
    if seconds is None or seconds != seconds:
        return "–"
    for unit, size in (("days", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= 2 * size if unit == "days" else seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def labels_section(labels: dict[str, Any] | None) -> str:
    """Labels that did not join their predictions: how many by reason, examples, and what is wrong where it can
    be told (labels/diagnosis.py); nothing when every label joined."""
    if not labels or not (any(labels["unmatched"].values()) or labels["diagnoses"]):
        return ""
    total = labels["joined"] + sum(labels["unmatched"].values())
    rows = "".join(
        f'<tr><td>{esc(reason)}</td><td class=num>{fmt(n)}</td><td class=name>'
        f'{esc(", ".join(labels["examples"].get(reason, [])) or "–")}</td></tr>'
        for reason, n in sorted(labels["unmatched"].items(), key=lambda kv: -kv[1]) if n)
    found = "".join(f'<div class="banner">{esc(d["message"])}</div>' for d in labels["diagnoses"])
    return (f"<h2>Labels that did not join</h2>{found}<p class=muted>{fmt(sum(labels['unmatched'].values()))} of "
            f"{fmt(total)} labels received found no prediction to count for (since this processor's state began; "
            "examples are ids as sent).</p><table><thead><tr><th>reason</th><th class=num>labels</th>"
            f"<th>examples</th></tr></thead><tbody>{rows}</tbody></table>")


def evaluation_results_section(rows: list[dict[str, Any]]) -> str:
    """What became of LLM calls' evaluation results, per evaluation name (joined to their calls, or not and why);
    their scores are on each model's page."""
    if not rows:
        return ""
    return "<h2>LLM evaluation results (gen_ai.evaluation.result)</h2>" + "".join(
        f'<h3>{esc(r["version"])}</h3><p class=muted>{fmt(r["joined"])} joined to their calls, '
        f'{fmt(sum(r["unmatched"].values()))} not</p>' + labels_section(r) for r in rows)


def orphan_labels_section(rows: list[dict[str, Any]]) -> str:
    """Labels of models that sent no prediction here: they join nothing."""
    if not rows:
        return ""
    return "<h2>Labels for models without predictions</h2>" + "".join(
        f'<h3>{esc(r["model"])} <span class=muted>{esc(r["version"]) or "(no version)"}</span></h3>'
        + labels_section(r) for r in rows)


def segment_performance_section(perf: dict[str, Any]) -> str:
    """A segmented model's performance per segment (degraded first) and the segments that explain each metric's
    change most (nothing for a model without segments)."""
    segments = perf.get("segments") or []
    if not segments:
        return ""

    def value(s: dict[str, Any], metric: str) -> str:
        m = next((m for m in s["metrics"] if m["metric"] == metric), None)
        shown = m and (m["realized"] or m["estimated"])
        return fmt(shown["value"]) if shown else "–"

    first = perf["metrics"][0]["metric"]
    rows = "".join(f'<tr><td class=name>{esc(s["segment"])}</td><td class=num>{fmt(s["labeled"])}</td>'
                   f'<td class=num>{value(s, first)}</td><td>{esc(", ".join(s["degraded"]) or "–")}</td>'
                   f'<td>{esc(", ".join(s["estimated_degraded"]) or "–")}</td></tr>' for s in segments)
    parts = contribution_rows(perf.get("segment_contributions", []), "metric")
    compared = ("the same segment of the baseline" if perf.get("segment_reference") == "segment"
                else "the whole baseline (it has no segments)")
    return (f"<h3>Performance per segment</h3><p class=muted>Each segment against {compared}; decisions corrected "
            f"for the number of segments tested.</p><table><thead><tr><th>segment</th><th class=num>labelled</th>"
            f"<th class=num>{esc(first)}</th><th>degraded</th><th>estimated degraded</th></tr></thead><tbody>"
            + rows + "</tbody></table>"
            + ("<h3>Which segments explain each metric's change</h3><table><thead><tr><th>metric</th>"
               "<th>segment</th><th class=num>mix</th><th class=num>within</th><th class=num>total</th></tr>"
               "</thead><tbody>" + "".join(parts) + "</tbody></table>" if parts else ""))


def correlation_section(changes: list[dict[str, Any]]) -> str:
    """The pairs whose correlation changed most (nothing when the model keeps no correlations)."""
    if not changes:
        return ""
    rows = "".join(f'<tr><td class=name>{esc(c["features"][0])} × {esc(c["features"][1])}</td>'
                   f'<td class=num>{fmt(c["reference"])}</td><td class=num>{fmt(c["current"])}</td>'
                   f'<td class=num>{fmt(c["change"])}</td><td class=num>{fmt(c["z"])}</td>'
                   f'<td class=num>{fmt(c["p_value"])}</td></tr>' for c in changes)
    return ("<h2>Correlations</h2><p class=muted>The feature pairs whose correlation moved most against the "
            "reference (the row <code>(correlation)</code> decides on all pairs; p is each pair's own).</p>"
            "<table><thead><tr><th>pair</th><th class=num>reference r</th><th class=num>current r</th>"
            "<th class=num>change</th><th class=num>z</th><th class=num>p</th></tr></thead><tbody>" + rows
            + "</tbody></table>")


def attribution_section(doc: dict[str, Any] | None) -> str:
    """Each feature's global importance (mean |attribution|) against the reference's, and the ranking's NDCG
    (nothing when the model's spans carry no attributions)."""
    if not doc:
        return ""
    decision = (badge("withheld") + " " + esc(doc["withheld_reason"]) if doc["withheld_reason"] else
                badge("drift" if doc["detected"] else "ok"))
    rows = "".join(f'<tr><td class=name>{esc(i["feature"])}</td><td class=num>{fmt(i["reference"])}</td>'
                   f'<td class=num>{fmt(i["current"])}</td></tr>' for i in doc["importances"])
    return (f"<h2>Attributions</h2><p class=muted>What drives the predictions: each feature's mean absolute "
            f"attribution, most important now first. The ranking against the reference's: NDCG {fmt(doc['ndcg'])} "
            f"(drift below {fmt(doc['threshold'])}): {decision}.</p>"
            "<table><thead><tr><th>feature</th><th class=num>reference</th><th class=num>current</th></tr></thead>"
            "<tbody>" + rows + "</tbody></table>")


def contribution_rows(contributions: list[dict[str, Any]], key: str, shown: int = 3) -> list[str]:
    """Table rows of the first ``shown`` segment contributions of each ``key`` (a feature, a metric): the API
    lists them largest (most harmful) first."""
    top: dict[str, int] = {}
    parts = []
    for c in contributions:
        if top.setdefault(c[key], 0) < shown:
            top[c[key]] += 1
            parts.append(f'<tr><td class=name>{esc(c[key])}</td><td>{esc(c["segment"])}</td>'
                         f'<td class=num>{fmt(c["mix"])}</td><td class=num>{fmt(c["within"])}</td>'
                         f'<td class=num>{fmt(c["total"])}</td></tr>')
    return parts


def segment_section(segments: list[dict[str, Any]], contributions: list[dict[str, Any]],
                    segment_href: Any = None) -> str:
    """A segmented model's segments, drifted first (each linked to its page by ``segment_href(label)``), and the
    segments that moved each numeric feature's mean most (nothing for a model without segments)."""
    if not segments:
        return ""
    def status(s: dict[str, Any]) -> str:
        return ("drift" if s["detected"] else "ok" if s["detected"] is False
                else f"withheld ({s['withheld_reason'] or 'no reference'})")
    def most_missing(s: dict[str, Any]) -> str:
        worst = max(s.get("missing_ratio", {}).items(), key=lambda kv: kv[1], default=None)
        return f"{esc(worst[0])} {pct(worst[1])}" if worst else "–"
    def name(s: dict[str, Any]) -> str:
        label = esc(s["segment"])
        return f'<a href="{esc(segment_href(s["segment"]))}">{label}</a>' if segment_href else label
    rows = "".join(f'<tr><td class=name>{name(s)}</td><td>{esc(status(s))}</td>'
                   f'<td>{esc(", ".join(s["drifted_features"]))}</td><td class=num>{fmt(s["reference_share"])}</td>'
                   f'<td class=num>{fmt(s["current_share"])}</td><td class=num>{fmt(s["current_predictions"])}</td>'
                   f"<td>{most_missing(s)}</td></tr>" for s in segments)
    parts = contribution_rows(contributions, "feature")
    attribution = ("<h3>Which segments moved each feature</h3><p class=muted>A segment's part in the change of the "
                   "feature's mean since the reference: <em>mix</em>, its share of predictions moved; "
                   "<em>within</em>, its values moved.</p><table><thead><tr><th>feature</th><th>segment</th>"
                   "<th class=num>mix</th><th class=num>within</th><th class=num>total</th></tr></thead><tbody>"
                   + "".join(parts) + "</tbody></table>") if parts else ""
    return ("<h2>Segments</h2><p class=muted>Each segment against the same segment of the reference; decisions "
            "corrected for the number of segment tests.</p><table><thead><tr><th>segment</th><th>status</th>"
            "<th>drifted features</th><th class=num>reference share</th><th class=num>current share</th>"
            "<th class=num>predictions</th><th>most missing</th></tr></thead><tbody>" + rows + "</tbody></table>"
            + attribution)


def segment_page(summary: dict[str, Any], doc: dict[str, Any], model_href: str) -> str:
    """One segment like a model: its decision, volume and shares, each feature's test in it (drifted first), its
    data quality and its performance against the same segment of the baseline."""
    status = ("drift" if doc["detected"] else "ok" if doc["detected"] is False
              else f"withheld ({doc['withheld_reason'] or 'no reference'})")
    items = [("status", esc(status)), ("predictions", fmt(doc["current_predictions"])),
             ("share now", pct(doc["current_share"])), ("share in the reference", pct(doc["reference_share"]))]
    cards = "".join(f'<div class="card"><div class=muted>{k}</div><div>{v}</div></div>' for k, v in items)
    rows = "".join(f'<tr><td class=name>{esc(f["feature"])}</td>'
                   f'<td>{badge("drift" if f["drifted"] else "ok") if f["p_value"] is not None else "–"}</td>'
                   f'<td class=num>{fmt(f["p_value"])}</td><td class=num>{pct(f["missing_ratio"])}</td>'
                   f'<td class=num>{fmt(f["mix"])}</td><td class=num>{fmt(f["within"])}</td></tr>'
                   for f in doc["features"])
    body = (f'<p><a href="{esc(model_href)}">← {esc(summary["model"])} {esc(summary["version"])}</a></p>'
            f'<h1>{esc(doc["segment"])} <span class=muted>segment of {esc(summary["model"])}</span></h1>'
            f'<div class="grid">{cards}</div>' + performance_section(doc["performance"])
            + "<h2>Features in this segment</h2><p class=muted>Each against the same segment of the reference; p is "
            "multiplied by the model's segment test count. mix / within: the segment's part in the change of the "
            "feature's mean (its share moved / its values moved).</p><table><thead><tr><th>feature</th>"
            "<th>status</th><th class=num>p</th><th class=num>missing</th><th class=num>mix</th>"
            "<th class=num>within</th></tr></thead><tbody>" + rows + "</tbody></table>")
    return layout(f"{summary['model']} {doc['segment']}", body)


def model_page(summary: dict[str, Any], rows: list[dict[str, Any]], feature_href: Any, sort: str,
               sort_href: Any, performance: dict[str, Any] | None = None,
               correlations: list[dict[str, Any]] | None = None, segments: str = "", over_time: str = "",
               attribution: dict[str, Any] | None = None,
               examples: list[tuple[str, dict[str, Any]]] | None = None) -> str:
    """``segments``: the segment section (``segment_section``), if the model has segments; ``over_time``: the
    performance history section (``performance_history_section``); ``attribution``: the attribution ranking
    (``views.attribution_document``); ``examples``: (feature, its first example prediction) of each drifted
    feature."""
    examples = examples or []
    body = (model_header(summary) + performance_section(performance) + over_time + "<h2>Features</h2>"
            + feature_table(rows, feature_href, sort, sort_href)
            + examples_table([e for _, e in examples], [(name, feature_href(name)) for name, _ in examples])
            + attribution_section(attribution) + correlation_section(correlations or []) + segments)
    return layout(f"{summary['model']} {summary['version']}", body)


def distribution_charts(dist: dict[str, Any]) -> list[tuple[str, str]]:
    """(caption, data URI) of each chart of one feature's distribution."""
    out = []
    if dist["kind"] == "numeric" and dist["edges"]:
        ref, cur = dist["reference"], dist["current"]
        out.append(("histogram (reference-and-current range, shares per bin)",
                    charts.histogram(dist["edges"], ref["bins"] if ref else None, cur["bins"] if cur else None)))
        c = dist["cdf"]
        out.append(("cumulative distribution", charts.cdf(c["quantiles"], c["reference"], c["current"])))
    elif dist["kind"] == "categorical" and dist["categories"]:
        ref, cur = dist["reference"], dist["current"]
        out.append(("top categories, share of values", charts.category_bars(
            dist["categories"], ref["shares"] if ref else None, cur["shares"] if cur else None)))
    return out


def feature_section(row: dict[str, Any], dist: dict[str, Any], reference: dict[str, Any] | None,
                    current: dict[str, Any] | None, history: dict[str, Any] | None,
                    archive: dict[str, Any] | None = None, examples: list[dict[str, Any]] | None = None) -> str:
    """One feature: its decision line, distributions, summary statistics, example predictions and history."""
    facts = [("status", badge(row["status"])), ("p-value", fmt(row["p_value"])),
             ("threshold", fmt(row["threshold"])), (row["effect_method"] or "effect", fmt(row["effect"])),
             ("reference n", fmt(row["reference_count"])), ("current n", fmt(row["current_count"])),
             ("missing", pct(row["missing_ratio"])), ("type mismatch", pct(row["type_mismatch_ratio"])),
             ("out of range", pct(row["out_of_range_ratio"])), ("unseen", pct(row["unseen_ratio"]))]
    if row["withheld_reason"]:
        facts.append(("why no decision", esc(row["withheld_reason"])))
    html_ = '<div class="grid">' + "".join(f'<div class="card"><div class=muted>{k}</div><div>{v}</div></div>'
                                           for k, v in facts) + "</div>"
    html_ += "<h2>Scores</h2><table><tbody>" + "".join(
        f"<tr><td>{esc(k)}</td><td class=num>{fmt(v)}</td></tr>" for k, v in row["scores"].items()) + "</tbody></table>"
    pics = distribution_charts(dist)
    if pics:
        html_ += "<h2>Distribution: reference against current</h2>" + "".join(
            f'<figure><img class="chart" alt="{esc(cap)}" src="{uri}"><figcaption class=muted>{esc(cap)}'
            "</figcaption></figure>" for cap, uri in pics)
    html_ += summary_table(reference, current)
    html_ += examples_table(examples or [])
    for title, h in (("Over time", history), ("Over time: the archive", archive)):
        if h and any(x is not None for x in h["p_value"] + h["effect"]):
            uri = charts.score_history(h["time_unix"], h["p_value"], row["threshold"], h["effect"],
                                       row["effect_method"] or "effect")
            html_ += (f'<h2>{title}</h2><figure><img class="chart" alt="p-value and effect over time" '
                      f'src="{uri}"><figcaption class=muted>{esc(h.get("caption", ""))}</figcaption></figure>')
    return html_


def trace_cell(e: dict[str, Any]) -> str:
    """An example's trace and span ids, linked to the trace when ``ui.trace_url`` is set."""
    ids = f'{esc(e["trace_id"])} <span class=muted>span {esc(e["span_id"])}</span>'
    return f'<a class=trace href="{esc(e["trace_url"])}">{ids}</a>' if e.get("trace_url") else ids


def wrong_predictions_section(perf: dict[str, Any]) -> str:
    """The wrong predictions whose spans are known (``views.wrong_prediction_rows``): a classifier's latest, a
    regressor's furthest off, each linked to its trace when ``ui.trace_url`` is set."""
    rows = perf.get("wrong_predictions") or []
    if not rows:
        return ""
    regression = any(r["error"] is not None for r in rows)
    body = "".join(
        f'<tr><td>{esc(r["time"][:19].replace("T", " "))}</td><td class=num>{esc(r["predicted"])}</td>'
        f'<td class=num>{esc(r["truth"])}</td>' + (f'<td class=num>{fmt(r["error"])}</td>' if regression else "")
        + f"<td>{trace_cell(r)}</td></tr>" for r in rows)
    what = ("the largest errors among the labelled predictions whose spans were kept" if regression else
            "the latest labelled predictions whose predicted class was not the true one, among those whose spans "
            "were kept")
    return (f"<h2>Wrong predictions</h2><p class=muted>{what} (a sample: one request a second per model "
            "version keeps its spans).</p><table class=wrong><thead><tr><th>time (UTC)</th><th class=num>predicted"
            "</th><th class=num>true</th>" + ("<th class=num>error</th>" if regression else "")
            + "<th>trace</th></tr></thead><tbody>" + body + "</tbody></table>")


def examples_table(examples: list[dict[str, Any]], features: list[tuple[str, str]] | None = None) -> str:
    """Example predictions (``views.example_predictions``): from where the distribution moved most, each linked to
    its trace when ``ui.trace_url`` is set. ``features``: each example's feature (name, page link), on the model
    page (the first example of each drifted feature)."""
    if not examples:
        return ""

    def feature(i: int) -> str:
        return f'<td class=name><a href="{esc(features[i][1])}">{esc(features[i][0])}</a></td>' if features else ""

    rows = "".join(
        f'<tr>{feature(i)}<td>{esc(e["time"][:19].replace("T", " "))}</td>'
        f'<td class=num>{esc(e["value"]) if isinstance(e["value"], str) else fmt(e["value"])}</td>'
        f'<td class=num>{pct(e["current_share"])}</td><td class=num>{pct(e["reference_share"])}</td>'
        f"<td>{trace_cell(e)}</td></tr>" for i, e in enumerate(examples))
    title = "Example predictions of the drifted features" if features else "Example predictions"
    return (f"<h2>{title}</h2><p class=muted>The latest predictions from where the distribution gained "
            "most on the reference (the value's band or category: its share now and in the reference).</p>"
            "<table><thead><tr>" + ("<th>feature</th>" if features else "") + "<th>time (UTC)</th><th class=num>"
            "value</th><th class=num>share now</th><th class=num>in reference</th><th>trace</th></tr></thead><tbody>"
            + rows + "</tbody></table>")


def summary_table(reference: dict[str, Any] | None, current: dict[str, Any] | None) -> str:
    sides = [("reference", reference), ("current", current)]
    if all(s is None for _, s in sides):
        return ""
    kind = (reference or current or {}).get("kind")
    head = "<tr><th></th>" + "".join(f"<th class=num>{k}</th>" for k, s in sides if s is not None) + "</tr>"
    keys: Iterable[tuple[str, Any]]
    if kind == "numeric":
        keys = [("count", lambda s: fmt(s["count"])), ("mean", lambda s: fmt(s["mean"])),
                ("std", lambda s: fmt(s["std"])), ("min", lambda s: fmt(s["min"])),
                *((f"q{q}", lambda s, q=q: fmt(s["quantiles"][q])) for q in ("0.05", "0.25", "0.5", "0.75",
                                                                             "0.95")),
                ("max", lambda s: fmt(s["max"]))]
    else:
        keys = [("count", lambda s: fmt(s["count"])),
                ("distinct", lambda s: fmt(s["distinct"]) + ("" if s["distinct_exact"] else " (at least)"))]
    body = "".join("<tr><td>" + esc(k) + "</td>" + "".join(f"<td class=num>{f(s)}</td>" for _, s in sides
                                                           if s is not None) + "</tr>" for k, f in keys)
    return f"<h2>Summary</h2><table><thead>{head}</thead><tbody>{body}</tbody></table>"


def feature_page(summary: dict[str, Any], row: dict[str, Any], dist: dict[str, Any],
                 reference: dict[str, Any] | None, current: dict[str, Any] | None, history: dict[str, Any] | None,
                 model_href: str, archive: dict[str, Any] | None = None,
                 examples: list[dict[str, Any]] | None = None) -> str:
    body = (f'<p><a href="{esc(model_href)}">← {esc(summary["model"])} {esc(summary["version"])}</a></p>'
            f'<h1>{esc(row["name"])} <span class=muted>{esc(row["kind"])}</span></h1>'
            + feature_section(row, dist, reference, current, history, archive, examples))
    return layout(f"{row['name']} · {summary['model']}", body)


def timestamp(t_ns: int | None) -> str:
    if t_ns is None:
        return "–"
    return dt.datetime.fromtimestamp(t_ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def versions_section(pairs: list[tuple[str, str, dict[str, bool]]], href: Callable[[str, str], str]) -> str:
    """The model's live version comparisons (each candidate against its busiest version), linked."""
    if not pairs:
        return ""
    rows = "".join(
        f'<tr><td><a href="{esc(href(a, b))}">{esc(b)} against {esc(a)}</a></td><td>'
        + (", ".join(esc(k) for k, v in decisions.items() if v) or "no difference found") + "</td></tr>"
        for a, b, decisions in pairs)
    return ("<h2>Versions</h2><table><thead><tr><th>comparison</th><th>worse or different</th></tr></thead><tbody>"
            + rows + "</tbody></table>")


def comparison_page(doc: dict[str, Any], version_href: Callable[[str], str]) -> str:
    """Version ``b`` against version ``a`` of one model over the live horizon (``GET /api/v1/models/{model}/
    compare``'s document): each difference with its decision."""
    def decided(v: bool | None, word: str = "worse") -> str:
        return "<td>–</td>" if v is None else f"<td>{badge(word if v else 'ok')}</td>"

    def value(x: Any) -> str:
        return f"<td class=num>{fmt(x)}</td>"

    perf = "".join(
        f'<tr><td class=name>{esc(m["metric"])} <span class=muted>{esc(m.get("source", ""))}</span></td>'
        f'{value(m.get("a"))}{value(m.get("b"))}{value(m.get("difference"))}'
        f'<td class=num>± {fmt(m.get("se"))}</td>{decided(m.get("worse"))}</tr>' for m in doc["performance"])
    err, lat = doc["error_ratio"], doc["latency_seconds"]
    ops = (f'<tr><td class=name>error ratio</td>{value(err.get("a"))}{value(err.get("b"))}'
           f'{value(err.get("difference"))}<td class=num>± {fmt(err.get("se"))}</td>{decided(err.get("worse"))}</tr>')
    if lat["p95"] is not None:
        ops += (f'<tr><td class=name>latency p95, s</td>{value(lat["p95"]["a"])}{value(lat["p95"]["b"])}'
                f'{value(lat["p95"]["difference"])}<td class=num>KS p {fmt(lat["p_value"])}</td>'
                f'{decided(lat["different"], "different")}</tr>')

    def features(rows: list[dict[str, Any]]) -> str:
        shown = sorted(rows, key=lambda r: (r["status"] != "drift", r["p_value"] if r["p_value"] is not None else 1))
        return "".join(f'<tr><td class=name>{esc(r["name"])}</td><td>{badge(r["status"])}</td>'
                       f'{value(r["p_value"])}</tr>' for r in shown[:20])

    a, b = doc["a"], doc["b"]
    body = (f'<h1>{esc(doc["model"])}: version {esc(b)} against {esc(a)}</h1>'
            f'<p class=muted>Over the live horizon: <a href="{esc(version_href(a))}">{esc(a)}</a> '
            f'{fmt(doc["rows_a"])} predictions, <a href="{esc(version_href(b))}">{esc(b)}</a> {fmt(doc["rows_b"])}. '
            '"worse": b significantly worse than a; "different": b differs either way (docs/statistics.md, '
            "Version against version).</p>"
            "<h2>Performance and operations</h2><table><thead><tr><th>metric</th><th class=num>"
            f"{esc(a)}</th><th class=num>{esc(b)}</th><th class=num>b − a</th><th class=num>test</th>"
            "<th>decision</th></tr></thead><tbody>" + perf + ops + "</tbody></table>"
            f'<h2>Inputs {badge("different" if doc["inputs"]["different"] else "ok")}</h2>'
            "<p class=muted>Are they served the same traffic? Each input of b tested against a's.</p>"
            "<table><thead><tr><th>feature</th><th>status</th><th class=num>p-value</th></tr></thead><tbody>"
            + features(doc["inputs"]["features"]) + "</tbody></table>"
            f'<h2>Outputs {badge("different" if doc["outputs"]["different"] else "ok")}</h2><table><thead><tr>'
            "<th>output</th><th>status</th><th class=num>p-value</th></tr></thead><tbody>"
            + features(doc["outputs"]["features"]) + "</tbody></table>")
    return layout(f"{doc['model']} {b} vs {a}", body)
