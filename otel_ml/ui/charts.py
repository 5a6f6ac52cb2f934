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
import threading
from collections.abc import Sequence
from typing import Any

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


def histogram(edges: Sequence[float], reference: Sequence[float] | None, current: Sequence[float] | None) -> str:
    """Reference and current shares per bin, as steps."""
    plt = _pyplot()
    with _lock:
        fig, ax = plt.subplots(figsize=(6.4, 2.6))
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
    with _lock:
        fig, ax = plt.subplots(figsize=(6.4, 2.6))
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
        labels = [c if len(c) <= 40 else c[:39] + "…" for c in categories]
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
        p = [max(x, 1e-300) if x is not None else float("nan") for x in p_values]
        top.plot(when, p, color=CURRENT_COLOR, linewidth=1.4, label="p-value")
        if threshold:
            top.axhline(threshold, color="#c0392b", linestyle="--", linewidth=1, label="threshold")
        if any(x == x for x in p):
            top.set_yscale("log")
        top.set_ylabel("p-value")
        top.legend(frameon=False, loc="lower left")
        bottom.plot(when, [float("nan") if x is None else x for x in effects], color=REFERENCE_COLOR,
                    linewidth=1.4)
        bottom.set_ylabel(effect_label)
        fig.autofmt_xdate()
        return _data_uri(fig)
