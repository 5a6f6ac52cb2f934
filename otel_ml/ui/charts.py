"""Charts as SVG, drawn on the server with matplotlib.

Why matplotlib, server-side: pages stay readable without JavaScript, a report is one file with its charts
inline, nothing is fetched from a CDN, and the library is the best-kept plotting library in Python (a JavaScript
one would have to be vendored into the package and kept up to date by us). Each chart is an ``<img>`` with a
``data:`` URI: SVG in an image never runs script, and many charts on one page cannot clash on element ids.

Untrusted text (category names) reaches a chart only as tick labels, with math text parsing off, so ``$x$``
stays a literal. matplotlib is imported on first use: a processor that never draws never pays for it.
"""

from __future__ import annotations

import base64
import io
import math
import threading
from collections.abc import Sequence
from typing import Any

from otel_ml.read.names import printable

REFERENCE_COLOR = "#7f8c8d"
CURRENT_COLOR = "#d35400"
_lock = threading.Lock()  # pyplot's state is global; figures are drawn one at a time
_plt: Any = None


def _pyplot() -> Any:
    global _plt
    if _plt is None:
        import matplotlib

        matplotlib.use("Agg")
        matplotlib.rcParams.update({"text.parse_math": False, "svg.fonttype": "none", "font.size": 9,
                                    "axes.spines.top": False, "axes.spines.right": False,
                                    "svg.hashsalt": "otel-ml"})  # the same chart gives the same bytes
        import matplotlib.pyplot as plt

        _plt = plt
    return _plt


def _data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _pyplot().close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def _value_axis(values: Sequence[float]) -> tuple[list[float], str | None]:
    """Values as the x axis can take them: matplotlib's tick locator fails on ranges whose width overflows
    (values near ±1.7e308), so such values are drawn divided by a power of ten, which the axis label gives.

    >>> _value_axis([-1.7e308, 1.7e308])
    ([-1.7, 1.7], '× 1e308')
    >>> _value_axis([1.0, 2.0])
    ([1.0, 2.0], None)
    """
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    big = max(finite, default=0.0)
    if big < 1e150:
        return list(values), None
    exp = math.floor(math.log10(big))
    return [v / 10.0**exp if v is not None else v for v in values], f"× 1e{exp}"


def _log_ticks(axis: Any) -> None:
    """Plain tick labels at the powers of ten of a log axis ("1e-59"): with math text off, matplotlib's own
    would print ``$\\mathdefault{10^{-59}}$`` literally.

    >>> _power_label(1e-59), _power_label(1.0), _power_label(0.01)
    ('1e-59', '1', '0.01')
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    # Powers of ten from 1 down past the smallest value, at most 6, chosen here: matplotlib's LogLocator places
    # them differently from one version to the next (3.10 left 1 out of a p-value axis).
    low = axis.get_view_interval()[0]
    lowest = math.floor(math.log10(low)) if low > 0 else -1
    step = max(1, math.ceil(-lowest / 5))
    axis.set_major_locator(FixedLocator([10.0 ** -k for k in range(0, -lowest + 1, step)]))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: _power_label(v)))
    axis.set_minor_formatter(NullFormatter())


def _power_label(v: float) -> str:
    exp = round(math.log10(v)) if v > 0 else 0
    return f"{10.0**exp:g}" if -3 <= exp <= 3 else f"1e{exp}"


def histogram(edges: Sequence[float], reference: Sequence[float] | None, current: Sequence[float] | None) -> str:
    """Reference and current shares per bin, as steps."""
    plt = _pyplot()
    edges, unit = _value_axis(edges)
    with _lock:
        fig, ax = plt.subplots(figsize=(6.4, 2.6))
        if unit:
            ax.set_xlabel(unit)
        for label, shares, color in (("reference", reference, REFERENCE_COLOR), ("current", current, CURRENT_COLOR)):
            if shares:
                ax.stairs([s or 0.0 for s in shares], edges, label=label, color=color, linewidth=1.6,
                          fill=label == "reference", alpha=0.35 if label == "reference" else 1.0)
        ax.set_ylabel("share of values")
        ax.legend(frameon=False)
        return _data_uri(fig)


def cdf(quantiles: Sequence[float], reference: Sequence[float] | None, current: Sequence[float] | None) -> str:
    """Both empirical CDFs (value at each quantile)."""
    plt = _pyplot()
    both, unit = _value_axis([*(reference or []), *(current or [])])
    reference, current = (both[:len(reference)] if reference else None), (both[len(reference or []):] or None)
    with _lock:
        fig, ax = plt.subplots(figsize=(6.4, 2.6))
        if unit:
            ax.set_xlabel(unit)
        for label, values, color in (("reference", reference, REFERENCE_COLOR), ("current", current, CURRENT_COLOR)):
            if values:
                ax.step(values, quantiles, where="post", label=label, color=color, linewidth=1.6)
        ax.set_ylabel("CDF")
        ax.set_ylim(0, 1)
        ax.legend(frameon=False)
        return _data_uri(fig)


def category_bars(categories: Sequence[str], reference: Sequence[float] | None,
                  current: Sequence[float] | None) -> str:
    """Horizontal bars: each category's share in the reference and in the current horizon."""
    plt = _pyplot()
    with _lock:
        n = len(categories)
        fig, ax = plt.subplots(figsize=(6.4, 0.8 + 0.28 * max(n, 1)))
        ys = list(range(n))
        # shown as escapes: control characters end an SVG, a bidi override disguises a name; "$" is not mathtext
        labels = [(c if len(c) <= 40 else c[:39] + "…").replace("$", r"\$") for c in map(printable, categories)]
        if reference:
            ax.barh([y + 0.2 for y in ys], [s or 0.0 for s in reference], height=0.4, color=REFERENCE_COLOR,
                    label="reference")
        if current:
            ax.barh([y - 0.2 for y in ys], [s or 0.0 for s in current], height=0.4, color=CURRENT_COLOR,
                    label="current")
        ax.set_yticks(ys, labels)
        ax.invert_yaxis()
        ax.set_xlabel("share of values")
        ax.legend(frameon=False)
        return _data_uri(fig)


def score_history(times: Sequence[float], p_values: Sequence[float | None], threshold: float | None,
                  effects: Sequence[float | None], effect_label: str) -> str:
    """The overall test's p-value (log scale, with the decision threshold) and the effect size over time."""
    import datetime as dt

    plt = _pyplot()
    with _lock:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 3.6), sharex=True)
        when = [dt.datetime.fromtimestamp(t, dt.timezone.utc) for t in times]
        p = [min(max(x, 1e-300), 1.0) if x is not None else float("nan") for x in p_values]
        top.plot(when, p, color=CURRENT_COLOR, linewidth=1.4, label="p-value")
        if threshold:
            top.axhline(threshold, color="#c0392b", linestyle="--", linewidth=1, label="threshold")
        if any(x == x for x in p):
            top.set_yscale("log")
            top.set_ylim(top=1.5)  # a p-value is at most 1: the axis never runs past it
            _log_ticks(top.yaxis)
        top.set_ylabel("p-value")
        top.legend(frameon=False, loc="lower left")
        bottom.plot(when, [float("nan") if x is None else x for x in effects], color=REFERENCE_COLOR,
                    linewidth=1.4)
        bottom.set_ylabel(effect_label)
        fig.autofmt_xdate()
        return _data_uri(fig)


def performance_history(starts: Sequence[float], ends: Sequence[float], metric: str,
                        realized: Sequence[tuple[float, float] | None], estimated: Sequence[tuple[float, float] | None],
                        reference: tuple[float, float] | None, degraded: Sequence[bool],
                        coverage: Sequence[float | None]) -> str:
    """One metric per part of a range: realized and estimated (each ± one standard error), the reference's value
    and its band (± its chunks' standard deviation, else its standard error), degraded parts marked; the labelled
    share of each part beneath."""
    import datetime as dt

    plt = _pyplot()
    with _lock:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 3.8), sharex=True, height_ratios=[3, 1])
        when = [dt.datetime.fromtimestamp((a + b) / 2, dt.timezone.utc) for a, b in zip(starts, ends)]
        for values, color, label in ((realized, CURRENT_COLOR, "realized"), (estimated, REFERENCE_COLOR,
                                                                              "estimated")):
            ys = [v[0] if v is not None else float("nan") for v in values]
            if not any(y == y for y in ys):
                continue
            err = [v[1] if v is not None and v[1] == v[1] else 0.0 for v in values]
            top.errorbar(when, ys, yerr=err, color=color, linewidth=1.2, marker="o", markersize=3, capsize=2,
                         label=label)
        if reference is not None:
            value, band = reference
            top.axhline(value, color="#555", linestyle="--", linewidth=1, label="reference")
            if band == band and band > 0:
                top.axhspan(value - band, value + band, color="#555", alpha=0.12, linewidth=0)
        bad = [w for w, d, v in zip(when, degraded, realized) if d]
        if bad:
            top.scatter(bad, [v[0] for v, d in zip(realized, degraded) if d and v is not None][:len(bad)],
                        s=60, facecolors="none", edgecolors="#c0392b", linewidths=1.5, label="degraded", zorder=5)
        top.set_ylabel(metric)
        top.legend(frameon=False, loc="best", fontsize=8)
        bottom.bar(when, [c if c is not None else 0.0 for c in coverage], width=0.8 * _part_days(starts, ends),
                   color="#95a5a6")
        bottom.set_ylim(0, 1)
        bottom.set_ylabel("labelled")
        fig.autofmt_xdate()
        return _data_uri(fig)


def _part_days(starts: Sequence[float], ends: Sequence[float]) -> float:
    """The width of one part in days (matplotlib's date unit)."""
    return min((b - a for a, b in zip(starts, ends)), default=3600.0) / 86_400
