"""Version against version (analyze/versions.py) as the API and the pages show it: one comparison as a JSON-ready
document."""

from __future__ import annotations

from typing import Any

from otel_ml.analyze.versions import Difference, VersionComparison
from otel_ml.read.views import feature_row, number


def _difference(d: Difference | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"a": number(d.a), "b": number(d.b), "difference": number(d.difference), "se": number(d.se),
            "p_value": number(d.p_value) if d.p_value is not None else None, "n_a": number(d.n_a),
            "n_b": number(d.n_b), **({"source": d.source} if d.source else {})}


def comparison_document(c: VersionComparison) -> dict[str, Any]:
    """``GET /api/v1/models/{model}/compare``'s document (docs/api.md)."""
    return {
        "model": c.model, "a": c.a, "b": c.b, "rows_a": c.rows_a, "rows_b": c.rows_b,
        "decisions": dict(c.decisions),
        "inputs": {"different": c.decisions.get("inputs"),
                   "features": [feature_row(f) for f in c.inputs]},
        "outputs": {"different": c.decisions.get("outputs"),
                    "features": [feature_row(f) for f in c.outputs]},
        "performance": [{"metric": m, **(_difference(d) or {}), "worse": c.decisions.get(m)}
                        for m, d in c.performance.items()],
        "error_ratio": {**(_difference(c.error_ratio) or {}), "worse": c.decisions.get("error_ratio")},
        "latency_seconds": {"p50": _difference(c.latency_p50), "p95": _difference(c.latency_p95),
                            "p_value": number(c.latency_p_value) if c.latency_p_value is not None else None,
                            "different": c.decisions.get("latency")},
    }
