"""Where metrics leave: OTel SDK MeterProvider with a Prometheus pull endpoint and optional OTLP push.

Drift and data-quality numbers are observable gauges read from the latest evaluation, so a model or
feature that disappears stops being reported instead of freezing at its last value. Names, units
and their Prometheus spellings are listed in docs/metrics.md.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hmac
import logging
import math
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterable

from aiohttp import web
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider, ObservableCounter, ObservableGauge
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from otel_ml import semconv as sc
from otel_ml.analyze.drift import ModelReport
from otel_ml.export.config import CardinalityConfig, ExportConfig
from otel_ml.http_server import HttpServer, Listener, health_routes

log = logging.getLogger(__name__)

# Every (model, version, feature, method) is one series; the SDK's default of 2000 per metric is far too
# small for a fleet of models (100 models × 50 features × 6 methods = 30,000).
MAX_SERIES_PER_METRIC = 200_000


def cap_reports(reports: list[ModelReport], caps: CardinalityConfig) -> tuple[list[ModelReport], dict[str, int]]:
    """Reports within the caps, busiest models and versions first, features in name order; and how many
    models, versions and features were left out.

    >>> r = [ModelReport(f"m{i}", "1", None, 0, i, []) for i in range(3)]
    >>> kept, over = cap_reports(r, CardinalityConfig(max_models=2))
    >>> [k.model for k in kept], over
    (['m2', 'm1'], {'model': 1, 'version': 0, 'feature': 0})
    """
    over = {"model": 0, "version": 0, "feature": 0}
    by_model: dict[str, list[ModelReport]] = {}
    for r in sorted(reports, key=lambda r: (-r.current_rows, r.model, r.version)):
        by_model.setdefault(r.model, []).append(r)
    kept: list[ModelReport] = []
    for i, (_, versions) in enumerate(by_model.items()):
        if i >= caps.max_models:
            over["model"] += 1
            continue
        over["version"] += max(0, len(versions) - caps.max_versions_per_model)
        for r in versions[:caps.max_versions_per_model]:
            if len(r.features) > caps.max_features_per_model:
                over["feature"] += len(r.features) - caps.max_features_per_model
                r = dataclasses.replace(r, features=r.features[:caps.max_features_per_model])
            kept.append(r)
    return kept, over


def _model_attrs(r: ModelReport) -> dict[str, str]:
    return {sc.ATTR_MODEL_NAME: r.model, sc.ATTR_MODEL_VERSION: r.version}


class MetricsExporter:
    """Owns the MeterProvider, its readers, and every instrument otel-ml exports."""

    def __init__(self, config: ExportConfig, reports: Callable[[], list[ModelReport]],
                 instance_id: str | None = None, storage_healthy: Callable[[], bool] | None = None,
                 live_models: Callable[[], int] | None = None, http: HttpServer | None = None,
                 readiness: Callable[[], tuple[bool, str]] | None = None, ssl_context: ssl.SSLContext | None = None,
                 bearer_token: str | None = None,
                 waiting_baselines: Callable[[], list[tuple[str, str]]] | None = None) -> None:
        self.config = config
        self._source = reports
        self._storage_healthy = storage_healthy
        self._live_models = live_models
        self._waiting_baselines = waiting_baselines
        """(model, version)s with a baseline loaded but no traffic yet: their ml_reference_ready is 1 already."""
        self._totals: collections.Counter[tuple[str, tuple[tuple[str, str], ...]]] = collections.Counter()
        """Every counter's value per attribute set: checkpoints carry them across restarts."""
        self._totals_lock = threading.Lock()
        self._capped: tuple[int, list[ModelReport], dict[str, int]] = (0, [], {})
        self.instance_id = instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self._own_http = http is None
        self._http = http or HttpServer()
        self._readiness = readiness or (lambda: (True, "ready"))
        self._ssl_context = ssl_context
        """TLS for the Prometheus endpoint (``export.prometheus.protected``), with the bearer token below."""
        self._expected_auth = f"Bearer {bearer_token}".encode() if bearer_token else None
        self._listener: Listener | None = None
        self.prometheus_port: int | None = None
        self.provider: MeterProvider | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        limits = {ObservableGauge: MAX_SERIES_PER_METRIC, ObservableCounter: MAX_SERIES_PER_METRIC}
        readers: list[MetricReader] = []
        if self.config.prometheus.enabled:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

            registry = CollectorRegistry(auto_describe=True)
            readers.append(PrometheusMetricReader(registry=registry, cardinality_limits=limits))

            async def metrics(request: web.Request) -> web.Response:
                if self._expected_auth is not None and not hmac.compare_digest(
                        request.headers.get("Authorization", "").encode(), self._expected_auth):
                    return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
                body = await self._http.blocking(generate_latest, registry)  # runs the gauges' callbacks
                response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
                response.enable_compression()  # gzip when the scraper accepts it
                return response

            async def not_found(_request: web.Request) -> web.Response:
                return web.Response(status=404, text="metrics are at GET /metrics\n")

            self._http.start()
            self._listener = self._http.listen(
                "the Prometheus endpoint (export.prometheus.endpoint)", self.config.prometheus.endpoint,
                [("GET", "/metrics", metrics), *health_routes(self._readiness), ("*", "/{tail:.*}", not_found)],
                self._ssl_context)
            self.prometheus_port = self._listener.port
            log.info("Prometheus metrics on %s://%s:%d/metrics", "https" if self._ssl_context else "http",
                     self.config.prometheus.endpoint.rpartition(":")[0], self.prometheus_port)
        if self.config.otlp.endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            temporality = (AggregationTemporality.DELTA if self.config.otlp.temporality == "delta"
                           else AggregationTemporality.CUMULATIVE)
            exporter = OTLPMetricExporter(
                endpoint=self.config.otlp.endpoint, insecure=self.config.otlp.insecure,
                headers=dict(self.config.otlp.headers) or None,
                preferred_temporality={ObservableCounter: temporality})
            readers.append(PeriodicExportingMetricReader(
                exporter, export_interval_millis=self.config.otlp.interval_seconds * 1000,
                cardinality_limits=limits))
            log.info("OTLP metrics to %s every %ss", self.config.otlp.endpoint, self.config.otlp.interval_seconds)
        resource = Resource.create({"service.name": "otel-ml", "service.instance.id": self.instance_id})
        self.provider = MeterProvider(metric_readers=readers, resource=resource)
        self._create_instruments()

    def shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._own_http:
            self._http.shutdown()
        if self.provider is not None:
            self.provider.shutdown()

    # --- instruments -----------------------------------------------------------------------------
    def _create_instruments(self) -> None:
        assert self.provider is not None
        meter = self.provider.get_meter("otel_ml")
        counters = [
            (sc.METRIC_PREDICTIONS, "{prediction}", "Predictions made, scaled by 1/ml.sampling.ratio"),
            (sc.METRIC_SPANS_RECEIVED, "{span}", "Spans received over OTLP"),
            (sc.METRIC_SPANS_ACCEPTED, "{span}", "ML spans decoded and profiled"),
            (sc.METRIC_SPANS_IGNORED, "{span}", "Spans without ml.model.name (not ML traffic)"),
            (sc.METRIC_SPANS_REJECTED, "{span}", "ML spans rejected, by reason"),
            (sc.METRIC_ROWS_LATE, "{prediction}",
             "Rows dropped because their window was already gone (older than horizon + lateness)"),
            (sc.METRIC_REQUESTS_REFUSED, "{request}",
             "OTLP requests answered UNAVAILABLE with RetryInfo because too much was in flight"),
            (sc.METRIC_FEATURE_VALUES_DROPPED, "{value}",
             "Values of features beyond limits.max_profiled_features_per_model, not profiled"),
            (sc.METRIC_STORAGE_ERRORS, "{error}",
             "State writes that failed (disk full, I/O error), by op: journal, checkpoint, reference"),
            (sc.METRIC_MODELS_RELEASED, "{model}",
             "(model, version)s released, by reason: idle, limit (to admit a new one), retired"),
        ]
        # Observable counters read the totals: a released model's series go away with its totals (a synchronous
        # counter would export every (model, version) ever seen, forever), and counting costs no SDK call.
        for name, unit, description in counters:
            meter.create_observable_counter(name, callbacks=[self._callback(functools.partial(self._counter, name))],
                                            unit=unit, description=description)
        gauges: list[tuple[str, str, str, Callable[[], Iterable[Observation]]]] = [
            (sc.METRIC_DRIFT_SCORE, "{score}",
             "Drift statistic or distance per feature and method: higher means more drift", self._drift_scores),
            (sc.METRIC_DRIFT_P_VALUE, "{p}",
             "p-value of the feature's test (overall, chi2): lower means more drift", self._drift_p_values),
            (sc.METRIC_DRIFT_DETECTED, "", "1 when drift is detected, per feature and method", self._drift_detected),
            (sc.METRIC_DRIFT_THRESHOLD, "{score}", "Threshold the score is compared with", self._drift_thresholds),
            (sc.METRIC_DRIFT_WITHHELD, "", "1 when a feature's decision is withheld; reason says why",
             self._drift_withheld),
            (sc.METRIC_SAMPLE_COUNT, "{value}", "Values compared, per feature and sample (reference/current)",
             self._sample_counts),
            (sc.METRIC_MISSING_RATIO, "", "Share of current rows with the feature missing", self._missing),
            (sc.METRIC_TYPE_MISMATCH_RATIO, "", "Share of current rows with a value of the wrong type",
             self._mismatch),
            (sc.METRIC_UNSEEN_RATIO, "", "Share of current values in categories the reference never had",
             self._unseen),
            (sc.METRIC_OUT_OF_RANGE_RATIO, "", "Share of current values outside the reference's [min, max]",
             self._out_of_range),
            (sc.METRIC_LATENCY, "s", "Span duration quantiles over the current horizon", self._latency),
            (sc.METRIC_ERROR_RATIO, "", "Share of prediction spans with status ERROR over the current horizon",
             self._errors),
            (sc.METRIC_REFERENCE_READY, "", "1 when the model has a reference (baseline or pinned)",
             self._reference_ready),
            (sc.METRIC_REFERENCE_PENDING_ROWS, "{prediction}",
             "Models without a reference: rows still needed before one is pinned from live traffic",
             self._reference_pending_rows),
            (sc.METRIC_STORAGE_HEALTHY, "",
             "1 while state writes succeed, 0 from a failed write until one succeeds (requests are refused)",
             self._storage),
            (sc.METRIC_MODELS_LIVE, "{model}",
             "Live (model, version)s (in memory, exported): models.max_models at most", self._models_live),
            (sc.METRIC_EXPORT_OVERFLOW, "{item}",
             "Models, versions and features profiled but not exported (export.cardinality caps), by kind",
             self._overflow),
        ]
        for name, unit, description, fn in gauges:
            meter.create_observable_gauge(name, callbacks=[self._callback(fn)], unit=unit, description=description)

    # --- counters ------------------------------------------------------------------------------------
    def count(self, metric: str, value: float, attrs: dict[str, str] | None = None) -> None:
        """Add ``value`` to counter ``metric``; a zero creates the series (alerts on ``rate()`` need it)."""
        key = (metric, tuple(sorted((attrs or {}).items())))
        with self._totals_lock:
            if value or key not in self._totals:
                self._totals[key] += value

    def _counter(self, metric: str) -> Iterable[Observation]:
        with self._totals_lock:
            return [Observation(value, dict(attrs)) for (name, attrs), value in self._totals.items()
                    if name == metric]

    def forget_model(self, model: str, version: str) -> None:
        """Drop the counters of a released (model, version): their series leave the export."""
        mine = {(sc.ATTR_MODEL_NAME, model), (sc.ATTR_MODEL_VERSION, version)}
        with self._totals_lock:
            for key in [k for k in self._totals if mine <= set(k[1])]:
                del self._totals[key]

    def counter_totals(self) -> list[list]:
        """Every counter's totals, JSON-ready, for a checkpoint: ``[[metric, [[attr, value], ...], total], ...]``."""
        with self._totals_lock:
            return [[metric, [list(kv) for kv in attrs], value] for (metric, attrs), value in self._totals.items()]

    def restore_counter_totals(self, totals: list[list]) -> None:
        """Continue from the totals of a checkpoint (``counter_totals``)."""
        for metric, attrs, value in totals:
            self.count(metric, value, dict(attrs))

    @staticmethod
    def _callback(fn: Callable[[], Iterable[Observation]]) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            try:
                return list(fn())
            except Exception:  # a bug here must not take the endpoint down
                log.exception("metric callback failed")
                return []
        return callback

    # --- cardinality guard --------------------------------------------------------------------------
    def _reports(self) -> list[ModelReport]:
        """The latest reports within the cardinality caps (computed once per evaluation)."""
        reports = self._source()
        if self._capped[0] != id(reports):
            self._capped = (id(reports), *cap_reports(reports, self.config.cardinality))
        return self._capped[1]

    def _storage(self) -> Iterable[Observation]:
        if self._storage_healthy is not None:
            yield Observation(int(self._storage_healthy()))

    def _models_live(self) -> Iterable[Observation]:
        if self._live_models is not None:
            yield Observation(self._live_models())

    def _overflow(self) -> Iterable[Observation]:
        self._reports()
        for kind, n in self._capped[2].items():
            yield Observation(n, {"kind": kind})

    # --- observations from the latest reports -----------------------------------------------------
    def _feature_method_obs(self, value: Callable) -> Iterable[Observation]:
        for r in self._reports():
            base = _model_attrs(r)
            for f in r.features:
                for m in [*f.methods, f.overall]:
                    v = value(m)
                    if v is not None and not math.isnan(v):
                        yield Observation(v, {**base, sc.ATTR_FEATURE_NAME: f.feature, sc.ATTR_DRIFT_METHOD: m.method})

    def _drift_scores(self) -> Iterable[Observation]:
        return self._feature_method_obs(lambda m: None if m.p_value else m.score)

    def _drift_p_values(self) -> Iterable[Observation]:
        return self._feature_method_obs(lambda m: m.score if m.p_value else None)

    def _drift_detected(self) -> Iterable[Observation]:
        return self._feature_method_obs(lambda m: 1 if m.detected else 0)

    def _drift_thresholds(self) -> Iterable[Observation]:
        return self._feature_method_obs(lambda m: m.threshold)

    def _drift_withheld(self) -> Iterable[Observation]:
        for r in self._reports():
            for f in r.features:
                yield Observation(1 if f.withheld_reason else 0, {
                    **_model_attrs(r), sc.ATTR_FEATURE_NAME: f.feature, sc.ATTR_REASON: f.withheld_reason or "none"})

    def _sample_counts(self) -> Iterable[Observation]:
        for r in self._reports():
            for f in r.features:
                attrs = {**_model_attrs(r), sc.ATTR_FEATURE_NAME: f.feature}
                yield Observation(f.reference_count, {**attrs, sc.ATTR_SAMPLE: "reference"})
                yield Observation(f.current_count, {**attrs, sc.ATTR_SAMPLE: "current"})

    def _feature_obs(self, value: Callable) -> Iterable[Observation]:
        for r in self._reports():
            for f in r.features:
                v = value(f)
                if not math.isnan(v):
                    yield Observation(v, {**_model_attrs(r), sc.ATTR_FEATURE_NAME: f.feature})

    def _missing(self) -> Iterable[Observation]:
        return self._feature_obs(lambda f: f.missing_ratio)

    def _mismatch(self) -> Iterable[Observation]:
        return self._feature_obs(lambda f: f.type_mismatch_ratio)

    def _unseen(self) -> Iterable[Observation]:
        return self._feature_obs(lambda f: f.unseen_ratio)

    def _out_of_range(self) -> Iterable[Observation]:
        return self._feature_obs(lambda f: f.out_of_range_ratio)

    def _latency(self) -> Iterable[Observation]:
        for r in self._reports():
            for q, v in (("0.5", r.latency_p50), ("0.95", r.latency_p95), ("0.99", r.latency_p99)):
                if not math.isnan(v):
                    yield Observation(v, {**_model_attrs(r), sc.ATTR_QUANTILE: q})

    def _errors(self) -> Iterable[Observation]:
        for r in self._reports():
            if not math.isnan(r.error_ratio):
                yield Observation(r.error_ratio, _model_attrs(r))

    def _reference_ready(self) -> Iterable[Observation]:
        seen = set()
        for r in self._reports():
            seen.add((r.model, r.version))
            yield Observation(1 if r.reference_source else 0,
                              {**_model_attrs(r), "ml.reference.source": r.reference_source or "none"})
        for model, version in self._waiting_baselines() if self._waiting_baselines is not None else ():
            if (model, version) not in seen:
                yield Observation(1, {sc.ATTR_MODEL_NAME: model, sc.ATTR_MODEL_VERSION: version,
                                      "ml.reference.source": "baseline"})

    def _reference_pending_rows(self) -> Iterable[Observation]:
        for r in self._reports():
            if not r.reference_source:
                yield Observation(r.reference_pending_rows, _model_attrs(r))
