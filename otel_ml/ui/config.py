"""YAML ``ui``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UiConfig:
    """YAML ``ui``: the built-in pages and JSON API."""

    enabled: bool = True
    endpoint: str = "127.0.0.1:9465"
    history_points: int = 360
    """Evaluations of every feature kept for the "over time" chart (at the default 10 s interval: one hour);
    about 9 bytes per feature per point. 0: none."""
    draw_processes: int = 1
    """Processes that draw the heavy part of pages (a feature's archived history and charts) so that drawing takes
    a core and not the interpreter lock ingest needs (otel_ml/ui/drawing.py); about 150 MB each. 0: draw in the
    page threads (``http.page_threads``)."""
    trace_url: str = ""
    """Where an example prediction's trace is shown (the feature and model pages link each one there): a URL with
    ``{trace_id}`` (32 hex digits) and optionally ``{span_id}``, e.g. Jaeger's ``http://jaeger:16686/trace/{trace_id}``
    or Grafana Explore's with Tempo. Empty: the ids are shown without a link."""
    stale_after_seconds: float = 600.0
    """A model that has received no data for this long is marked stale on the pages and in the API (its horizon,
    and so its drift, is frozen at its last data); the same 10 minutes as the MLPredictionsStopped alert."""
