"""otel-ml's numbers in a notebook: the JSON API of a running processor, and profile files compared offline.

    >>> import otel_ml
    >>> api = otel_ml.Client("http://127.0.0.1:9465")          # doctest: +SKIP
    >>> api.models()                                           # doctest: +SKIP
    >>> api.drift("credit-risk", "2").query("drift_detected")  # doctest: +SKIP
    >>> api.performance("credit-risk", "2")                    # doctest: +SKIP
    >>> otel_ml.compare("baseline.json", "last-week.json")      # doctest: +SKIP

Tables are pandas DataFrames when pandas is installed (it is optional), else lists of dicts. Needs the
processor's dependencies (``pip install 'otel-ml[processor]'``) for ``compare`` only; ``Client`` needs nothing
beyond the standard library.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from otel_ml.read.names import name_segment


def _table(rows: list[dict[str, Any]], flatten: str | None = None) -> Any:
    """A DataFrame when pandas is there (``flatten``: a dict column spread into ``<name>.<key>`` columns)."""
    try:
        import pandas as pd
    except ModuleNotFoundError:
        return rows
    if flatten:
        rows = [{**{k: v for k, v in r.items() if k != flatten},
                 **{f"{flatten}.{k}": v for k, v in (r.get(flatten) or {}).items()}} for r in rows]
    return pd.DataFrame(rows)


class Client:
    """Reads the JSON API of ``otel-ml serve`` (docs/api.md); ``token``: the receivers' bearer token, if set."""

    def __init__(self, url: str = "http://127.0.0.1:9465", token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _get(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.load(response)

    @staticmethod
    def _path(model: str, version: str) -> str:
        return (f"/api/v1/models/{quote(name_segment(model), safe='')}/versions/"
                f"{quote(name_segment(version), safe='')}")

    def models(self) -> Any:
        """One row per live model version: status, rows, features drifting."""
        return _table(self._get("/api/v1/models")["models"])

    def drift(self, model: str, version: str = "") -> Any:
        """One row per feature: decision, p-value, effect, data quality, and every method's score
        (``scores.<method>`` columns)."""
        return _table(self._get(self._path(model, version) + "/drift")["features"], flatten="scores")

    @staticmethod
    def _range(start: Any, end: Any) -> str:
        """``?from=&to=`` of a range (datetimes, ISO 8601 text or Unix seconds); "" for the live horizon."""
        def text(t: Any) -> str:
            return t.isoformat() if hasattr(t, "isoformat") else str(t)
        query = {k: text(v) for k, v in (("from", start), ("to", end)) if v is not None}
        return "?" + urlencode(query) if query else ""

    def performance(self, model: str, version: str = "", start: Any = None, end: Any = None) -> Any:
        """One row per metric: realized (with labels), estimated (without), on the reference, and the decisions
        (``realized.value``, ``realized.se``, ``degraded``, ``estimated.value``, ...); an empty table when the
        model has neither labels nor probabilities. ``start``/``end`` (datetime, ISO 8601 or Unix seconds): the
        predictions made in that range, archived too; without them the live horizon. Coverage, label delay and a
        range's history: ``performance_summary``."""
        doc = self.performance_summary(model, version, start, end)
        rows = []
        for m in (doc or {}).get("metrics", []):
            row: dict[str, Any] = {"metric": m["metric"], "degraded": m["degraded"],
                                   "estimated_degraded": m["estimated_degraded"]}
            for side in ("realized", "estimated", "reference"):
                for k in ("value", "se", "n"):
                    row[f"{side}.{k}"] = (m.get(side) or {}).get(k)
            rows.append(row)
        return _table(rows)

    def performance_summary(self, model: str, version: str = "", start: Any = None,
                            end: Any = None) -> dict[str, Any] | None:
        """The performance document as the API gives it (task, labelled, coverage, label delay, metrics; for a
        range also ``history``, one entry per part), or None without labels or probabilities."""
        doc: dict[str, Any] | None = self._get(self._path(model, version) + "/performance"
                                               + self._range(start, end))["performance"]
        return doc

    def feature(self, model: str, version: str, feature: str) -> dict[str, Any]:
        """One feature: reference and current summaries, distributions, the last evaluations."""
        path = self._path(model, version) + f"/features/{quote(name_segment(feature), safe='')}"
        doc: dict[str, Any] = self._get(path)
        return doc


def compare(reference: Any, current: Any, alpha: float | None = None) -> Any:
    """The drift table the processor would compute for two profiles (file paths or ``ModelProfile``s).

    >>> import numpy as np, tempfile, os
    >>> from otel_ml.profile.model import ModelProfile
    >>> from otel_ml.profile.sketch import NumericProfile
    >>> ref, cur = ModelProfile("m", ""), ModelProfile("m", "")
    >>> rng = np.random.default_rng(0)
    >>> ref.features["x"] = NumericProfile(); ref.features["x"].update(rng.normal(0, 1, 5000))
    >>> cur.features["x"] = NumericProfile(); cur.features["x"].update(rng.normal(1, 1, 5000))
    >>> path = os.path.join(tempfile.mkdtemp(), "ref.json"); _ = open(path, "w").write(ref.to_json())
    >>> table = compare(path, cur)
    >>> bool(table.loc[0, "drift_detected"]), table.loc[0, "name"]
    (True, 'x')
    """
    from otel_ml.analyze.drift import DriftConfig
    from otel_ml.profile.model import ModelProfile
    from otel_ml.read.compare import comparison_rows

    def load(p: Any) -> ModelProfile:
        return p if isinstance(p, ModelProfile) else ModelProfile.read(p)

    return _table(comparison_rows(load(reference), load(current), DriftConfig(alpha=alpha)), flatten="scores")

