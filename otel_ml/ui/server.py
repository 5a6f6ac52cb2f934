"""The UI and JSON API listener of ``otel-ml serve`` (``ui.endpoint``, default 127.0.0.1:9465).

Routes (docs/api.md):

    GET /                                                        models page
    GET /models/{model:[^/]+}/versions/{version:[^/]+}[?sort=COLUMN]         one model version: every feature
    GET /models/{model:[^/]+}/versions/{version:[^/]+}/features/{feature}    one feature: distributions, history
    GET /api/v1/models
    GET /api/v1/models/{model:[^/]+}/versions/{version:[^/]+}/drift
    GET /api/v1/models/{model:[^/]+}/versions/{version:[^/]+}/performance
    GET /api/v1/models/{model:[^/]+}/versions/{version:[^/]+}/features/{feature}

Names are percent-encoded path segments; the empty version is ``_``. The receivers' TLS and bearer token
apply here too: a request carries ``Authorization: Bearer <token>``, or HTTP Basic with the token as password
(what a browser's login prompt sends).
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from otel_ml import semconv as sc
from otel_ml.analyze.drift import DriftConfig, ModelReport
from otel_ml.analyze.exemplars import exemplars_of
from otel_ml.analyze.performance import PerformanceConfig, performance_alpha
from otel_ml.analyze.versions import compare_versions
from otel_ml.auth import token_matches
from otel_ml.core.snapshot import Snapshot
from otel_ml.http_server import Busy, HttpServer, Listener, health_routes
from otel_ml.profile.model import ModelProfile
from otel_ml.read import views
from otel_ml.read.archive import DAY_NS, open_read_only, parse_time_ns
from otel_ml.read.names import name_from_segment, name_segment
from otel_ml.read.performance import Window, archived_windows, in_order, range_document
from otel_ml.read.versions import comparison_document
from otel_ml.ui import drawing, pages
from otel_ml.ui.config import UiConfig
from otel_ml.ui.drawing import Drawing
from otel_ml.ui.history import ScoreHistory
from otel_ml.ui.report import build_version_report

PERFORMANCE_PAGE_NS = 30 * DAY_NS
"""The model page draws performance over the last 30 days unless ``?from=&to=`` say otherwise."""

SECURITY_HEADERS = {
    # No script, no external anything: charts are data: images, styles inline.
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class UiSource:
    """What the pages read besides the evaluations: where the archive is, and how scores are shown."""

    state_dir: str | None = None
    """Where the archive is (durable state only): the feature page's longer history."""
    drift: DriftConfig | None = None
    effect_size: dict[str, str] | None = None
    """``export.effect_size``: the effect each page shows is the one the metrics export."""
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    """How performance is decided (a range is decided as the live horizon is)."""
    performance_windows: Callable[[str, str], list[Window]] = lambda model, version: []
    """(model, version) → the performance windows the archive does not hold yet (``LiveModels.performance_windows``)."""
    archive_gate: AbstractContextManager[Any] = field(default_factory=nullcontext)
    """Held across a range read's two reads (``LiveModels.archive_gate``): a checkpoint moving windows from memory
    to the archive waits for it, and it for the checkpoint."""


class UiServer:
    """The pages and JSON API of the latest evaluation (``publish``ed by the evaluator) and of the archive."""

    def __init__(self, config: UiConfig, source: UiSource, http: HttpServer,
                 ssl_context: ssl.SSLContext | None = None, token: str | None = None,
                 readiness: Callable[[], tuple[bool, str]] | None = None) -> None:
        self.config = config
        self.source = source
        self.snapshot = Snapshot()
        self.history = ScoreHistory(config.history_points, source.effect_size)
        """Each feature's last evaluations, for the "over time" view."""
        self.drawing = Drawing(config.draw_processes)
        self._http = http
        self._ssl = ssl_context
        self._token = token.encode() if token else None
        self._readiness = readiness or (lambda: (True, "ready"))
        self._listener: Listener | None = None
        self.port: int | None = None

    def start(self) -> None:
        self._http.start()
        guarded = [("GET", path, self._guard(handler)) for path, handler in (
            ("/", self._models_page),
            ("/models/{model:[^/]+}/versions/{version:[^/]+}", self._model_page),
            ("/models/{model:[^/]+}/versions/{version:[^/]+}/features/{feature:[^/]+}", self._feature_page),
            ("/models/{model:[^/]+}/versions/{version:[^/]+}/segments/{segment:[^/]+}", self._segment_page),
            ("/models/{model:[^/]+}/compare", self._compare_page),
            ("/api/v1/models/{model:[^/]+}/compare", self._api_compare),
            ("/api/v1/models", self._api_models),
            ("/api/v1/models/{model:[^/]+}/versions/{version:[^/]+}/drift", self._api_drift),
            ("/api/v1/models/{model:[^/]+}/versions/{version:[^/]+}/performance", self._api_performance),
            ("/api/v1/labels", self._api_labels),
            ("/api/v1/models/{model:[^/]+}/versions/{version:[^/]+}/features/{feature:[^/]+}", self._api_feature),
            ("/api/v1/models/{model:[^/]+}/versions/{version:[^/]+}/segments/{segment:[^/]+}", self._api_segment),
        )]
        self._listener = self._http.listen("the UI (ui.endpoint)", self.config.endpoint,
                                           [*guarded, *health_routes(self._readiness),
                                            ("*", "/{tail:.*}", self._guard(self._not_found))], self._ssl)
        self.port = self._listener.port

    def shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.drawing.shutdown()

    def publish(self, snapshot: Snapshot) -> None:
        """A new evaluation: what every page shows from now on."""
        self.history.publish(snapshot)
        self.snapshot = snapshot

    # --- plumbing -----------------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        return token_matches(request.headers.get("Authorization", ""), self._token)

    def _guard(self, handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self._authorized(request):
                return web.Response(status=401, text="401: a bearer token is required\n", headers={
                    "WWW-Authenticate": 'Basic realm="otel-ml", charset="UTF-8"', **SECURITY_HEADERS})
            try:
                response = await self._http.page(handler, request)
            except _NotFound as e:
                response = self._error(request, 404, str(e))
            except _BadRequest as e:
                response = self._error(request, 400, str(e))
            except Busy as e:  # pages never queue for minutes, nor take ingest's threads
                response = self._error(request, 503, str(e))
                response.headers["Retry-After"] = str(max(1, round(e.retry_after_seconds)))
            response.headers.update(SECURITY_HEADERS)
            if response.body is not None and len(response.body) > 1024:  # type: ignore[arg-type]
                response.enable_compression()
            return response
        return guarded

    @staticmethod
    def _error(request: web.Request, status: int, message: str) -> web.Response:
        if request.path.startswith("/api/"):
            return _json({"error": message}, status)
        return web.Response(status=status, content_type="text/html",
                            text=pages.layout(str(status), f"<h1>{status}</h1><p>{pages.esc(message)}</p>"))

    def _not_found(self, request: web.Request) -> web.Response:
        raise _NotFound(f"nothing at {request.path}; models are listed at / and /api/v1/models")

    def _report(self, request: web.Request) -> ModelReport:
        model = name_from_segment(request.match_info["model"])
        version = views.version_from_segment(request.match_info["version"])
        report = self.snapshot.report(model, version)
        if report is not None:
            return report
        raise _NotFound(f"no live model {model!r} version {version!r} (evaluated every few seconds; "
                        "GET /api/v1/models lists them)")

    def _feature(self, request: web.Request) -> tuple[ModelReport, dict[str, Any], dict[str, Any]]:
        """(model report, feature row, feature document: distributions, summaries, history)."""
        report = self._report(request)
        name = name_from_segment(request.match_info["feature"])
        f = next((f for f in report.features if f.feature == name), None)
        if f is None:
            raise _NotFound(f"model {report.model!r} has no feature {name!r}")
        profiles = self.snapshot.profiles_of(report.model, report.version)
        ref, cur = profiles if profiles is not None else (None, None)
        rp = ref.features.get(name) if ref is not None else None
        cp = cur.features.get(name) if cur is not None else None
        row = views.feature_row(f, self.source.effect_size)
        doc = {
            "model": report.model, "version": report.version, "feature": row,
            "reference": views.profile_summary(rp) if rp is not None else None,
            "current": views.profile_summary(cp) if cp is not None else None,
            "distribution": views.distribution(rp, cp),
            "example_predictions": views.example_predictions(exemplars_of(name, f.exemplars, ref, cur),
                                                             self.config.trace_url),
            "history": self.history.series(report.model, report.version, name),
            "archive_history": self._archive_history(request, report, row, ref),
        }
        return report, row, doc

    def _archive_history(self, request: web.Request, report: ModelReport, row: dict[str, Any],
                         reference: ModelProfile | None) -> dict[str, Any] | None:
        """The feature against the reference over archived windows in ``?from=&to=`` (default: the last 24 h)."""
        if self.source.state_dir is None or reference is None:
            return None
        start, end = self._range(request)
        feature = reference.features.get(row["name"])
        if feature is None:
            out: dict[str, Any] | None = {"time_unix": [], "p_value": [], "effect": [], "drift_detected": [],
                                          "from_unix": []}
        else:
            out = self.drawing.call(drawing.archive_history, self.source.state_dir, report.model, report.version,
                                    row["name"], feature.to_dict(), start, end, self.source.drift or DriftConfig(),
                                    row["threshold"], self.source.effect_size)
            if out is None:
                return None
        out["range_unix"] = [start / 1e9, end / 1e9]
        return out

    def _summary(self, report: ModelReport) -> dict[str, Any]:
        return views.model_summary(report, self.config.stale_after_seconds)

    @staticmethod
    def _model_href(model: str, version_path: str) -> str:
        return f"/models/{pages.url_segment(name_segment(model))}/versions/{pages.url_segment(version_path)}"

    # --- pages --------------------------------------------------------------------------------------
    def _models_page(self, _request: web.Request) -> web.Response:
        models = [self._summary(r) for r in self.snapshot.reports]
        for m in models:
            m["performance"] = views.performance_headline(views.performance_document(
                self.snapshot.performance_of(m["model"], m["version"])))
        reported = {(r.model, r.version) for r in self.snapshot.reports}
        orphans = [{"model": m, "version": v, **doc} for (m, v), doc in sorted(self.snapshot.labels.items())
                   if not any(r[0] == m for r in reported)]
        # LLM calls' evaluation results go to the join under their own name (decode/evaluations.py): not orphans.
        results = [r for r in orphans if r["model"] == sc.GENAI_EVALUATIONS]
        orphans = [r for r in orphans if r["model"] != sc.GENAI_EVALUATIONS]
        return _html(pages.models_page(models, self._model_href,
                                       f"evaluated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
                     .replace("</main>", pages.evaluation_results_section(results)
                              + pages.orphan_labels_section(orphans) + "</main>", 1))

    def _model_page(self, request: web.Request) -> web.Response:
        report = self._report(request)
        summary = self._summary(report)
        base = self._model_href(report.model, summary["version_path"])
        sort = request.query.get("sort", "problems")
        if sort not in ("problems", *(k for k, _ in pages.COLUMNS)):
            sort = "problems"
        rows = [views.feature_row(f, self.source.effect_size) for f in report.features]
        over_time = ""
        if self.snapshot.performance_of(report.model, report.version) is not None:
            start, end = self._range(request, PERFORMANCE_PAGE_NS)
            over_time = self.drawing.call(pages.performance_history_section,
                                          self.performance_range(report.model, report.version, start, end))
        over_time += pages.labels_section(self.snapshot.labels_of(report.model, report.version))
        compare = f"/models/{pages.url_segment(name_segment(report.model))}/compare?"
        over_time += pages.versions_section(
            [(c.a, c.b, c.decisions) for c in self.snapshot.versions if c.model == report.model],
            lambda a, b: compare + urlencode({"a": a, "b": b}))
        return _html(pages.model_page(summary, rows,
                                      lambda name: f"{base}/features/{pages.url_segment(name_segment(name))}",
                                      sort, lambda key: f"{base}?sort={key}", self._performance(report),
                                      views.correlation_rows(report),
                                      pages.segment_section(views.segment_rows(report),
                                                            views.contribution_rows(report),
                                                            lambda label: f"{base}/segments/"
                                                                          f"{pages.url_segment(name_segment(label))}"),
                                      over_time, views.attribution_document(report),
                                      [(f.feature, e) for f in report.features
                                       for e in views.example_predictions(f.exemplars[:1], self.config.trace_url)]))

    def _segment(self, request: web.Request) -> tuple[ModelReport, dict[str, Any]]:
        report = self._report(request)
        label = name_from_segment(request.match_info["segment"])
        doc = views.segment_document(report, self.snapshot.performance_of(report.model, report.version), label)
        if doc is None:
            raise _NotFound(f"model {report.model!r} has no segment {label!r} (its drift document lists them)")
        return report, doc

    def _segment_page(self, request: web.Request) -> web.Response:
        report, doc = self._segment(request)
        summary = self._summary(report)
        return _html(pages.segment_page(summary, doc, self._model_href(report.model, summary["version_path"])))

    def _comparison(self, request: web.Request) -> dict[str, Any]:
        """``?a=V&b=V``: version b of the model against version a, over the live horizon (analyze/versions.py);
        with ``from``/``to``, over that range of the archive (and the windows live at the last checkpoint), as
        ``otel-ml report --compare-versions`` reads it."""
        model = name_from_segment(request.match_info["model"])
        if "a" not in request.query or "b" not in request.query:
            raise _BadRequest("give the two versions: ?a=VERSION&b=VERSION (a: the baseline, b: the candidate)")
        a, b = request.query["a"], request.query["b"]
        if "from" in request.query or "to" in request.query:
            start, end = self._range(request)
            if self.source.state_dir is None:
                raise _NotFound("no archive (state.durable: false): compare over the live horizon, without from/to")
            try:
                with self.source.archive_gate:
                    return build_version_report(self.source.state_dir, model, a, b, start, end,
                                                self.source.drift or DriftConfig(), self.source.performance)[1]
            except (ValueError, FileNotFoundError) as e:
                raise _NotFound(str(e)) from e
        sides = [self.snapshot.profiles_of(model, v) for v in (a, b)]
        if sides[0] is None or sides[1] is None:
            missing = a if sides[0] is None else b
            raise _NotFound(f"no live model {model!r} version {missing!r} (GET /api/v1/models lists them)")
        performance = self.source.performance
        drift = self.source.drift or DriftConfig()
        c = compare_versions(sides[0][1], sides[1][1], self.snapshot.performance_of(model, a),
                             self.snapshot.performance_of(model, b), drift, performance_alpha(drift, performance),
                             performance.min_labels)
        return comparison_document(c)

    def _api_compare(self, request: web.Request) -> web.Response:
        return _json(self._comparison(request))

    def _compare_page(self, request: web.Request) -> web.Response:
        doc = self._comparison(request)
        return _html(pages.comparison_page(doc, lambda v: self._model_href(doc["model"], views.version_segment(v))))

    def _api_segment(self, request: web.Request) -> web.Response:
        return _json(self._segment(request)[1])

    def _feature_page(self, request: web.Request) -> web.Response:
        report, row, doc = self._feature(request)
        summary = self._summary(report)
        history = dict(doc["history"], caption="the live horizon at each of the last evaluations")
        archive = doc["archive_history"]
        if archive is not None:
            archive = dict(archive, caption="archived windows (and the live ones at the last checkpoint), "
                           "each part against the reference; ?from=&to= (ISO 8601 or Unix seconds) for "
                           "another range")
        return _html(self.drawing.call(drawing.feature_page, summary, row, doc["distribution"], doc["reference"],
                                       doc["current"], history, self._model_href(report.model,
                                                                                 summary["version_path"]), archive,
                                       doc["example_predictions"]))

    # --- API ----------------------------------------------------------------------------------------
    def _api_models(self, _request: web.Request) -> web.Response:
        models = []
        for r in self.snapshot.reports:
            s = self._summary(r)
            s["href"] = "/api/v1" + self._model_href(r.model, s["version_path"]) + "/drift"
            models.append(s)
        return _json({"models": models})

    def _api_drift(self, request: web.Request) -> web.Response:
        report = self._report(request)
        summary = self._summary(report)
        base = "/api/v1" + self._model_href(report.model, summary["version_path"])
        rows = views.sorted_rows([views.feature_row(f, self.source.effect_size) for f in report.features],
                                 request.query.get("sort", "problems"))
        for row in rows:
            row["href"] = f"{base}/features/{pages.url_segment(name_segment(row['name']))}"
        return _json({**summary, "features": rows, "correlation_changes": views.correlation_rows(report),
                      "attribution": views.attribution_document(report),
                      "segments": views.segment_rows(report), "segment_contributions": views.contribution_rows(report)})

    def _performance(self, report: ModelReport) -> dict[str, Any] | None:
        return views.performance_document(self.snapshot.performance_of(report.model, report.version),
                                          self.config.trace_url)

    def _range(self, request: web.Request, default_ns: int = DAY_NS) -> tuple[int, int]:
        """``?from=&to=`` in ns (ISO 8601 or Unix seconds; default: the last ``default_ns`` up to now)."""
        try:
            end = parse_time_ns(request.query["to"], "to") if "to" in request.query else time.time_ns()
            start = parse_time_ns(request.query["from"], "from") if "from" in request.query else end - default_ns
        except ValueError as e:
            raise _BadRequest(str(e)) from e
        if start > end:
            raise _BadRequest(f"from ({start / 1e9:.0f}) is later than to ({end / 1e9:.0f})")
        return start, end

    def performance_range(self, model: str, version: str, start: int, end: int) -> dict[str, Any]:
        """The performance document of the predictions made in [start, end) (read/performance.py): the archive's
        windows and those the archive does not hold yet, decided with the processor's settings."""
        with self.source.archive_gate:
            windows = [w for w in self.source.performance_windows(model, version) if start <= w[0] < end]
            if self.source.state_dir is not None:
                try:
                    conn = open_read_only(self.source.state_dir)
                except FileNotFoundError:
                    conn = None
                if conn is not None:
                    try:
                        windows += archived_windows(conn, model, version, start, end)
                    finally:
                        conn.close()
        profiles = self.snapshot.profiles_of(model, version)
        reference = profiles[0].performance if profiles is not None and profiles[0] is not None else None
        doc = range_document(model, version, in_order(windows), reference, self.source.drift or DriftConfig(),
                             self.source.performance, self.snapshot.evaluation_references.get((model, version)))
        doc["range_unix"] = [start / 1e9, end / 1e9]
        return doc

    def _api_performance(self, request: web.Request) -> web.Response:
        report = self._report(request)
        if "from" in request.query or "to" in request.query:
            start, end = self._range(request)
            performance: dict[str, Any] | None = self.performance_range(report.model, report.version, start, end)
        else:
            performance = self._performance(report)
        return _json({"model": report.model, "version": report.version, "performance": performance,
                      "labels": self.snapshot.labels_of(report.model, report.version)})

    def _api_labels(self, request: web.Request) -> web.Response:
        """Every (model, label version)'s labels: joined, not joined by reason, examples, diagnoses (``?model=``:
        one model's). What ``otel-ml labels send`` reads back to say what became of what it sent."""
        model = request.query.get("model")
        rows = [{"model": m, "version": v, **doc} for (m, v), doc in sorted(self.snapshot.labels.items())
                if model is None or m == model]
        return _json({"labels": rows, "evaluated_unix": self.snapshot.taken_ns / 1e9})

    def _api_feature(self, request: web.Request) -> web.Response:
        return _json(self._feature(request)[2])


class _NotFound(Exception):
    pass


class _BadRequest(Exception):
    pass


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", charset="utf-8")


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(doc, allow_nan=False), status=status, content_type="application/json")
