"""Where metrics leave: a Prometheus pull endpoint and optional OTLP push, from one set of series.

Drift, data-quality and performance numbers come from the evaluator's latest ``Snapshot`` (``publish``), so a
model or feature that disappears stops being reported instead of freezing at its last value. The per-feature
series (most of them) are built once per snapshot and rendered once into Prometheus text; a scrape adds the
counters and the few per-model series to those bytes and never walks the models. Which series a feature gets is
``export.detail`` (docs/metrics.md lists names, units, Prometheus spellings and the count per feature).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import logging
import math
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics

from otel_ml import semconv as sc
from otel_ml.analyze.drift import FeatureReport, ModelReport
from otel_ml.analyze.fairness import FairnessReport
from otel_ml.analyze.performance import PerformanceReport
from otel_ml.analyze.segments import SegmentContribution
from otel_ml.auth import token_matches
from otel_ml.core.counters import Counters, Series
from otel_ml.core.health import StorageHealth
from otel_ml.core.snapshot import Snapshot
from otel_ml.export.config import CardinalityConfig, ExportConfig
from otel_ml.export.exemplars import Example, ExemplarExporter, prometheus_exemplar
from otel_ml.http_server import HttpServer, Listener, health_routes

log = logging.getLogger(__name__)

# Every (model, version, feature[, method]) is one series; the SDK's default of 2000 per metric is far too small
# for a fleet of models (the OTLP push path only: Prometheus text is rendered here).
MAX_SERIES_PER_METRIC = 200_000



@dataclasses.dataclass(frozen=True)
class MetricDef:
    name: str
    """OTel name (``ml.drift.score``); the Prometheus name replaces dots with underscores and adds the unit."""
    kind: str
    """``counter`` or ``gauge``."""
    unit: str
    description: str

    @property
    def prometheus_name(self) -> str:
        """Without the ``_total`` a counter gets when rendered.

        >>> MetricDef("ml.prediction.latency", "gauge", "s", "").prometheus_name
        'ml_prediction_latency_seconds'
        """
        base = self.name.replace(".", "_")
        return f"{base}_seconds" if self.unit == "s" else base


COUNTERS = [
    MetricDef(sc.METRIC_PREDICTIONS, "counter", "{prediction}", "Predictions made, scaled by 1/ml.sampling.ratio"),
    MetricDef(sc.METRIC_SPANS_RECEIVED, "counter", "{span}", "Spans received over OTLP"),
    MetricDef(sc.METRIC_SPANS_ACCEPTED, "counter", "{span}", "ML spans decoded and profiled"),
    MetricDef(sc.METRIC_SPANS_IGNORED, "counter", "{span}", "Spans without ml.model.name (not ML traffic)"),
    MetricDef(sc.METRIC_SPANS_REJECTED, "counter", "{span}", "ML spans rejected, by reason"),
    MetricDef(sc.METRIC_ROWS_LATE, "counter", "{prediction}",
              "Rows dropped because their window was already gone (older than horizon + lateness)"),
    MetricDef(sc.METRIC_REQUESTS_REFUSED, "counter", "{request}",
              "OTLP requests answered UNAVAILABLE with RetryInfo because too much was in flight"),
    MetricDef(sc.METRIC_FEATURE_VALUES_DROPPED, "counter", "{value}",
              "Values of features beyond limits.max_profiled_features_per_model, not profiled"),
    MetricDef(sc.METRIC_LOG_LOSS_WITHHELD, "counter", "{label}",
              "Labelled predictions of a model with probabilities of more than 64 classes, whose log loss is "
              "withheld (the join keeps 64 classes' probabilities: the true class's share is unknown)"),
    MetricDef(sc.METRIC_STORAGE_ERRORS, "counter", "{error}",
              "State writes that failed (disk full, I/O error), by op: journal, checkpoint, reference"),
    MetricDef(sc.METRIC_MODELS_RELEASED, "counter", "{model}",
              "(model, version)s released, by reason: idle, limit (to admit a new one), retired"),
    MetricDef(sc.METRIC_GROUND_TRUTH, "counter", "{label}", "Ground-truth labels joined to their prediction; its "
              "exemplar is the latest wrong prediction whose span is known (trace_id, span_id)"),
    MetricDef(sc.METRIC_KAFKA_SKIPPED, "counter", "{message}",
              "Kafka messages skipped, by reason: not_otlp (not a protobuf OTLP export, truncated), too_large"),
    MetricDef(sc.METRIC_KINESIS_SKIPPED, "counter", "{record}",
              "Kinesis records skipped, by reason: not_otlp (not an OTLP export, truncated, not the configured "
              "compression), too_large (decompresses to more than receiver.kinesis.max_message_bytes)"),
    MetricDef(sc.METRIC_KINESIS_THROTTLED, "counter", "{call}",
              "Kinesis calls refused for throughput (ProvisionedThroughputExceeded, LimitExceeded) and retried "
              "after a backoff, by operation"),
    MetricDef(sc.METRIC_GROUND_TRUTH_UNMATCHED, "counter", "{label}",
              "Ground-truth labels not applied, by reason: duplicate, unknown, expired, evicted, not_sampled, "
              "early_overflow"),
    MetricDef(sc.METRIC_APPLY_ERRORS, "counter", "{request}",
              "Requests whose application failed after they were committed (a bug: the log has it)"),
    MetricDef(sc.METRIC_DRIFT_DETECTIONS, "counter", "{evaluation}",
              "Evaluations that found the feature drifted (overall), per model, version and feature; in OpenMetrics "
              "its exemplar is an example prediction from where the distribution moved most (trace_id, span_id)"),
    MetricDef(sc.METRIC_STATE_RECOVERED, "counter", "{file}",
              "Parts of the kept state that recovery found damaged and dropped, by kind (the log says which and "
              "what was lost)"),
]
FEATURE_GAUGES = [
    MetricDef(sc.METRIC_DRIFT_DETECTED, "gauge", "",
              "1 when drift is detected (overall: the decision to alert on), else 0"),
    MetricDef(sc.METRIC_DRIFT_P_VALUE, "gauge", "{p}",
              "p-value of the feature's test (overall, chi2): lower means more drift"),
    MetricDef(sc.METRIC_DRIFT_SCORE, "gauge", "{score}",
              "Drift statistic or distance per feature and method: higher means more drift"),
    MetricDef(sc.METRIC_DRIFT_WITHHELD, "gauge", "", "1 when a feature's decision is withheld; reason says why"),
    MetricDef(sc.METRIC_MISSING_RATIO, "gauge", "", "Share of current rows with the feature missing"),
    MetricDef(sc.METRIC_TYPE_MISMATCH_RATIO, "gauge", "", "Share of current rows with a value of the wrong type"),
    MetricDef(sc.METRIC_UNSEEN_RATIO, "gauge", "", "Share of current values in categories the reference never had"),
    MetricDef(sc.METRIC_OUT_OF_RANGE_RATIO, "gauge", "", "Share of current values outside the reference's [min, max]"),
    MetricDef(sc.METRIC_DRIFT_THRESHOLD, "gauge", "{score}", "Threshold the score is compared with (detail: all)"),
    MetricDef(sc.METRIC_SAMPLE_COUNT, "gauge", "{value}",
              "Values compared, per feature and sample (reference/current) (detail: all)"),
    MetricDef(sc.METRIC_FEATURE_MEAN, "gauge", "", "Mean of a numeric feature over the current horizon "
              "(export.distribution)"),
    MetricDef(sc.METRIC_FEATURE_QUANTILE, "gauge", "", "Quantiles of a numeric feature over the current horizon "
              "(export.distribution)"),
    MetricDef(sc.METRIC_CATEGORY_SHARE, "gauge", "", "Shares of a categorical feature's most frequent categories "
              "over the current horizon (export.distribution)"),
    MetricDef(sc.METRIC_ATTRIBUTION_NDCG, "gauge", "",
              "NDCG of the features' importance ranking (mean |ml.attribution.*|) against the reference's: "
              "1 unchanged, lower means drift"),
    MetricDef(sc.METRIC_ATTRIBUTION_DRIFT_DETECTED, "gauge", "",
              "1 when the NDCG of the attribution ranking is below drift.thresholds.ndcg, else 0 (absent: withheld)"),
    MetricDef(sc.METRIC_ATTRIBUTION_IMPORTANCE, "gauge", "",
              "A feature's global importance, its mean absolute attribution, per sample (reference/current)"),
]
LIVE_GAUGES = [
    MetricDef(sc.METRIC_LATENCY, "gauge", "s", "Span duration quantiles over the current horizon"),
    MetricDef(sc.METRIC_ERROR_RATIO, "gauge", "",
              "Share of predictions (rows) in spans with status ERROR over the current horizon"),
    MetricDef(sc.METRIC_LOST_RATIO, "gauge", "",
              "Share of the predictions senders numbered (ml.sequence) that never arrived, over the current horizon"),
    MetricDef(sc.METRIC_REFERENCE_READY, "gauge", "", "1 when the model has a reference (baseline or pinned)"),
    MetricDef(sc.METRIC_REFERENCE_PENDING_ROWS, "gauge", "{prediction}",
              "Models without a reference: rows still needed before one is pinned from live traffic"),
    MetricDef(sc.METRIC_FEATURES_UNPROFILED, "gauge", "{feature}",
              "Features of a model beyond limits.max_profiled_features_per_model: received, not profiled (the log "
              "names them)"),
    MetricDef(sc.METRIC_STORAGE_HEALTHY, "gauge", "",
              "1 while state writes succeed, 0 from a failed write until one succeeds (requests are refused)"),
    MetricDef(sc.METRIC_MODELS_LIVE, "gauge", "{model}",
              "Live (model, version)s (in memory, exported): models.max_models at most"),
    MetricDef(sc.METRIC_EXPORT_OVERFLOW, "gauge", "{item}",
              "Models, versions and features profiled but not exported (export.cardinality caps), by kind"),
    MetricDef(sc.METRIC_LABELS_WAITING, "gauge", "{row}",
              "Ground truth waiting to be joined, by kind: predictions (for their label), labels (for their "
              "prediction)"),
    MetricDef(sc.METRIC_LABELS_WAITING_BYTES, "gauge", "By", "Bytes of the ground truth waiting to be joined, by kind"),
    MetricDef(sc.METRIC_LABELS_WAITING_LIMIT, "gauge", "{row}",
              "labels.max_pending (predictions) and labels.max_early (labels): beyond, the oldest leave or new ones "
              "are refused"),
    MetricDef(sc.METRIC_SEGMENT_DRIFT_DETECTED, "gauge", "",
              "Segmented models (segments.by): 1 when any feature of the segment drifted against the same segment "
              "of the reference (Bonferroni over the model's segment tests), else 0"),
    MetricDef(sc.METRIC_SEGMENT_SHARE, "gauge", "",
              "A segment's share of its model's predictions, per ml.sample (reference, current)"),
    MetricDef(sc.METRIC_SEGMENT_CONTRIBUTION, "gauge", "",
              "A segment's part in the change of a numeric feature's mean since the reference, by ml.attribution "
              "(mix: its share moved; within: its values moved); the 3 largest segments per feature"),
    MetricDef(sc.METRIC_SEGMENT_PREDICTIONS, "gauge", "",
              "Volume: a segment's predictions over the current horizon (row weights)"),
    MetricDef(sc.METRIC_SEGMENT_FEATURE_P_VALUE, "gauge", "",
              "Opt-in (export.detail_for MODEL/FEATURE: methods or all): a feature's p-value in a segment, times "
              "the model's segment test count (what ml.segment.drift.detected decides on)"),
    MetricDef(sc.METRIC_SEGMENT_FEATURE_MISSING_RATIO, "gauge", "",
              "Opt-in (export.detail_for MODEL/FEATURE: methods or all): a feature's share of a segment's current "
              "predictions without a value"),
    MetricDef(sc.METRIC_VERSION_DIFFERENCE, "gauge", "",
              "Version against version (a model's busiest version a, each other version b): b - a of each "
              "performance metric (realized, else estimated), error_ratio and latency_p95_seconds, per ml.compare"),
    MetricDef(sc.METRIC_VERSION_REGRESSION, "gauge", "",
              "1 when version b differs from a for the worse: a performance metric or error_ratio significantly "
              "worse, latency or its inputs or outputs significantly different, per ml.compare; else 0"),
    MetricDef(sc.METRIC_SEGMENT_PERFORMANCE_CONTRIBUTION, "gauge", "",
              "A segment's part in the change of a realized performance metric since the reference, by "
              "ml.attribution (mix: its share moved; within: its own performance moved); the 3 most harmful "
              "segments per ml.performance.metric"),
]
PERFORMANCE_GAUGES = [
    MetricDef(sc.METRIC_PERFORMANCE, "gauge", "", "Realized model performance over the performance horizon, from "
              "ground truth, per ml.performance.metric (and ml.class)"),
    MetricDef(sc.METRIC_PERFORMANCE_ESTIMATED, "gauge", "", "Label-free (confidence-based) estimate of performance "
              "over the horizon, from ml.prediction.probability and the baseline's calibration"),
    MetricDef(sc.METRIC_PERFORMANCE_REFERENCE, "gauge", "", "Performance on the baseline's labelled rows"),
    MetricDef(sc.METRIC_PERFORMANCE_OBJECTIVE, "gauge", "",
              "The model's objective for a metric (performance.objectives): 1 - objective is the error budget the "
              "shipped burn-rate alerts spend"),
    MetricDef(sc.METRIC_PERFORMANCE_DEGRADED, "gauge", "",
              "1 when realized performance is significantly worse than the reference's, else 0"),
    MetricDef(sc.METRIC_PERFORMANCE_ESTIMATED_DEGRADED, "gauge", "",
              "1 when estimated performance is significantly worse than the reference's, else 0"),
    MetricDef(sc.METRIC_PERFORMANCE_ESTIMATE_GAP, "gauge", "",
              "The label-free estimate on the labelled predictions minus the realized value, per "
              "ml.performance.metric"),
    MetricDef(sc.METRIC_PERFORMANCE_ESTIMATE_OFF, "gauge", "",
              "1 when that gap is significant (the estimator's assumption, the reference's calibration, no longer "
              "holds), else 0"),
    MetricDef(sc.METRIC_PERFORMANCE_ESTIMATE_UNSUPPORTED, "gauge", "",
              "Share of the estimated predictions outside the reference's support (above "
              "performance.max_unsupported_share the estimate's decisions are withheld)"),
    MetricDef(sc.METRIC_GROUND_TRUTH_COVERAGE, "gauge", "",
              "Share of the horizon's predictions with an id that have their label"),
    MetricDef(sc.METRIC_GROUND_TRUTH_DELAY, "gauge", "s", "Label delay quantiles (label time - prediction time)"),
    MetricDef(sc.METRIC_GENAI_EVALUATION_PASS_RATE, "gauge", "",
              "An LLM model's evaluation pass rate (gen_ai.evaluation.result labels that pass, over those that pass "
              "or fail) over the performance horizon, per gen_ai.evaluation.name and ml.sample (current, reference)"),
    MetricDef(sc.METRIC_GENAI_EVALUATION_SCORE, "gauge", "",
              "An LLM model's mean evaluation score over the performance horizon, per gen_ai.evaluation.name and "
              "ml.sample (current, reference)"),
    MetricDef(sc.METRIC_GENAI_EVALUATION_RESULTS, "gauge", "{result}",
              "Evaluation results joined to the horizon's calls, per gen_ai.evaluation.name"),
    MetricDef(sc.METRIC_GENAI_EVALUATION_DEGRADED, "gauge", "",
              "1 when an evaluation changed for the worse against the reference (ml.genai.evaluation.test: "
              "pass_rate dropped, mean_score moved), else 0"),
    MetricDef(sc.METRIC_FAIRNESS, "gauge", "",
              "A model with fairness settings, over the performance horizon: a group's rate (selection_rate, "
              "true_positive_rate, false_positive_rate, precision) or its disparity against the reference group "
              "(disparate_impact, demographic_parity_difference, equal_opportunity_difference, "
              "equalized_odds_difference, predictive_parity_difference), per ml.fairness.attribute and ml.group"),
    MetricDef(sc.METRIC_FAIRNESS_VIOLATION, "gauge", "",
              "1 when a group's disparity is significantly beyond its threshold (ml.fairness.test violation) or "
              "significantly moved from the reference's own (changed), else 0; absent while undecided"),
]


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


def detail_level(config: ExportConfig, model: str, feature: str) -> str:
    """The ``export.detail`` level of one feature: the longest matching ``detail_for`` key, else ``detail``.

    >>> cfg = ExportConfig(detail_for={"fraud": "methods", "fraud/amount": "all", "*/age": "methods"})
    >>> [detail_level(cfg, m, f) for m, f in [("fraud", "amount"), ("fraud", "zip"), ("churn", "age"), ("churn", "x")]]
    ['all', 'methods', 'methods', 'default']
    """
    best, level = -1, config.detail
    for key, value in config.detail_for.items():
        pattern = key if "/" in key else f"{key}/*"
        if len(pattern) > best and fnmatch.fnmatchcase(f"{model}/{feature}", pattern):
            best, level = len(pattern), value
    return level


def _finite(v: float | None) -> bool:
    return v is not None and not math.isnan(v)


def feature_series(model: dict[str, str], f: FeatureReport, level: str, effect_size: dict[str, str],
                   distribution: bool = False) -> Iterator[tuple[str, dict[str, str], float]]:
    """The series of one feature at an ``export.detail`` level: (metric, attributes, value).

    At ``default``: the overall decision (always, 0 included: "evaluated and fine" differs from "no decision"),
    its p-value or deciding score, one effect size, ``withheld`` only while withheld, and only the quality ratios
    that are not 0: missing and type-mismatch shares are exact counts; out-of-range and unseen shares are sketch
    estimates, exported once above the sketch's own error (below it they flicker between 0 and noise from one
    evaluation to the next, and each flicker would start and end a series). Absence means the same as the
    omitted zeros to every shipped alert rule.
    """
    attrs = {**model, sc.ATTR_FEATURE_NAME: f.feature}
    every = level == "all"
    if level == "default":
        chosen = effect_size.get(f.kind)
        methods = [m for m in f.methods if m.method == chosen]
    else:
        methods = f.methods
    for m in [f.overall, *methods]:
        at = {**attrs, sc.ATTR_DRIFT_METHOD: m.method}
        if m is f.overall or level != "default":
            yield sc.METRIC_DRIFT_DETECTED, at, 1.0 if m.detected else 0.0
        if _finite(m.score):
            yield (sc.METRIC_DRIFT_P_VALUE if m.p_value else sc.METRIC_DRIFT_SCORE), at, m.score
        if every and _finite(m.threshold):
            yield sc.METRIC_DRIFT_THRESHOLD, at, m.threshold
    if f.withheld_reason or every:
        yield sc.METRIC_DRIFT_WITHHELD, {**attrs, sc.ATTR_REASON: f.withheld_reason or "none"}, \
            1.0 if f.withheld_reason else 0.0
    for metric, ratio, floor in ((sc.METRIC_MISSING_RATIO, f.missing_ratio, 0.0),
                                 (sc.METRIC_TYPE_MISMATCH_RATIO, f.type_mismatch_ratio, 0.0),
                                 (sc.METRIC_UNSEEN_RATIO, f.unseen_ratio, f.ratio_resolution),
                                 (sc.METRIC_OUT_OF_RANGE_RATIO, f.out_of_range_ratio, f.ratio_resolution)):
        if _finite(ratio) and (ratio > floor or every):
            yield metric, attrs, ratio
    if every:
        yield sc.METRIC_SAMPLE_COUNT, {**attrs, sc.ATTR_SAMPLE: "reference"}, float(f.reference_count)
        yield sc.METRIC_SAMPLE_COUNT, {**attrs, sc.ATTR_SAMPLE: "current"}, float(f.current_count)
    if distribution:
        if _finite(f.current_mean):
            yield sc.METRIC_FEATURE_MEAN, attrs, f.current_mean
        for q, value in f.current_quantiles.items():
            if _finite(value):
                yield sc.METRIC_FEATURE_QUANTILE, {**attrs, sc.ATTR_QUANTILE: q}, value
        for category, share in f.top_categories:
            yield sc.METRIC_CATEGORY_SHARE, {**attrs, sc.ATTR_CATEGORY: category}, share


def attribution_series(model: dict[str, str], r: ModelReport) -> Iterator[tuple[str, dict[str, str], float]]:
    """A model's attribution drift (analyze/attribution.py): the NDCG and its decision (absent while withheld, as
    no decision is not "no drift"), and each feature's importance on both sides."""
    a = r.attribution
    if a is None:
        return
    if _finite(a.ndcg):
        yield sc.METRIC_ATTRIBUTION_NDCG, model, a.ndcg
    if a.detected is not None:
        yield sc.METRIC_ATTRIBUTION_DRIFT_DETECTED, model, 1.0 if a.detected else 0.0
    for i in a.importances:
        for sample, value in (("reference", i.reference), ("current", i.current)):
            if _finite(value):
                yield sc.METRIC_ATTRIBUTION_IMPORTANCE, {**model, sc.ATTR_FEATURE_NAME: i.feature,
                                                         sc.ATTR_SAMPLE: sample}, value


class _Families:
    """A prometheus_client collector over families built elsewhere."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


ExemplarOf = Callable[[MetricDef, dict[str, str]], Example | None]
"""The example prediction a series carries (OpenMetrics only), or None."""


def render_prometheus(metrics: Iterable[tuple[MetricDef, Series]], extra: Iterable[Metric] = (),
                      exemplar_of: ExemplarOf | None = None) -> bytes:
    """Prometheus text format (0.0.4) of the given series, attribute names spelled the Prometheus way; with
    ``exemplar_of``, OpenMetrics (1.0) with the exemplars it gives, without its closing ``# EOF``."""
    families = list(extra)
    for d, series in metrics:
        family = Metric(d.prometheus_name, d.description, d.kind)
        sample = f"{d.prometheus_name}_total" if d.kind == "counter" else d.prometheus_name
        for attrs, value in series:
            # An empty label value is no label to Prometheus; 6 significant digits are finer than any sketch's error
            # and, for 5,000 features, keep a scrape 10% smaller than repr()'s 17. Whole numbers (counts) stay exact.
            labels = {k.replace(".", "_"): v for k, v in attrs.items() if v}
            value = float(value)
            exemplar = exemplar_of(d, attrs) if exemplar_of is not None else None
            family.add_sample(sample, labels, value if value.is_integer() else float(f"{value:.6g}"),
                              exemplar=prometheus_exemplar(exemplar) if exemplar is not None else None)
        families.append(family)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))  # type: ignore[arg-type]
    if exemplar_of is None:
        return generate_latest(registry)
    return openmetrics.generate_latest(registry).removesuffix(b"# EOF\n")


@dataclasses.dataclass
class _Rendered:
    source: Snapshot
    """The evaluation it was built from."""
    reports: list[ModelReport]
    """Within the cardinality caps."""
    overflow: dict[str, int]
    series: dict[str, Series]
    """Per-feature gauges (FEATURE_GAUGES) at each feature's detail level."""
    exemplars: dict[tuple[str, str, str], Example] = dataclasses.field(default_factory=dict)
    """(model, version, feature) → its first example prediction (what ``ml.drift.detections`` carries); (model,
    version, "") → the latest wrong prediction (what ``ml.ground_truth`` carries)."""
    prometheus: bytes | None = None
    """``series`` rendered, once."""
    openmetrics: bytes | None = None
    """The same in OpenMetrics, rendered at the first scrape that asks for it."""
    stale: bool = False
    """Published, not built yet."""


class MetricsExporter:
    """Renders every series otel-ml exports: the latest ``Snapshot`` (``publish``), the ``counters``, storage
    ``health``; serves the Prometheus endpoint and runs the OTLP push."""

    def __init__(self, config: ExportConfig, counters: Counters | None = None, instance_id: str | None = None,
                 health: StorageHealth | None = None, http: HttpServer | None = None,
                 readiness: Callable[[], tuple[bool, str]] | None = None, ssl_context: ssl.SSLContext | None = None,
                 bearer_token: str | None = None) -> None:
        self.config = config
        self.counters = counters or Counters()
        self._health = health
        self._snapshot_lock = threading.Lock()
        self._snap = _Rendered(Snapshot(), [], {}, {}, stale=True)
        self.instance_id = instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self._own_http = http is None
        self._http = http or HttpServer()
        self._readiness = readiness or (lambda: (True, "ready"))
        self._ssl_context = ssl_context
        """TLS for the Prometheus endpoint (``export.prometheus.protected``), with the bearer token below."""
        self._token = bearer_token.encode() if bearer_token else None
        self._listener: Listener | None = None
        self.prometheus_port: int | None = None
        self.provider = None  # an OTel SDK MeterProvider when export.otlp.endpoint is set
        self._live: dict[str, Callable[[], Iterable[tuple[dict[str, str], float]]]] = {
            sc.METRIC_LATENCY: self._latency, sc.METRIC_ERROR_RATIO: self._errors, sc.METRIC_LOST_RATIO: self._lost,
            sc.METRIC_REFERENCE_READY: self._reference_ready,
            sc.METRIC_REFERENCE_PENDING_ROWS: self._reference_pending_rows,
            sc.METRIC_FEATURES_UNPROFILED: self._unprofiled,
            sc.METRIC_STORAGE_HEALTHY: self._storage, sc.METRIC_MODELS_LIVE: self._models_live,
            sc.METRIC_EXPORT_OVERFLOW: self._overflow,
            sc.METRIC_LABELS_WAITING: functools.partial(self._waiting, 0),
            sc.METRIC_LABELS_WAITING_BYTES: functools.partial(self._waiting, 1),
            sc.METRIC_LABELS_WAITING_LIMIT: functools.partial(self._waiting, 2),
            sc.METRIC_SEGMENT_DRIFT_DETECTED: self._segment_drift, sc.METRIC_SEGMENT_SHARE: self._segment_share,
            sc.METRIC_SEGMENT_CONTRIBUTION: self._segment_contribution,
            sc.METRIC_SEGMENT_PERFORMANCE_CONTRIBUTION: self._segment_performance_contribution,
            sc.METRIC_SEGMENT_PREDICTIONS: self._segment_predictions,
            sc.METRIC_SEGMENT_FEATURE_P_VALUE: functools.partial(self._segment_detail, "p"),
            sc.METRIC_SEGMENT_FEATURE_MISSING_RATIO: functools.partial(self._segment_detail, "missing"),
            sc.METRIC_VERSION_DIFFERENCE: self._version_differences,
            sc.METRIC_VERSION_REGRESSION: self._version_regressions}
        for d in PERFORMANCE_GAUGES:
            self._live[d.name] = functools.partial(self._performance_series, d.name)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.config.prometheus.enabled:
            self._http.start()
            self._listener = self._http.listen(
                "the Prometheus endpoint (export.prometheus.endpoint)", self.config.prometheus.endpoint,
                [("GET", "/metrics", self._serve_metrics), ("HEAD", "/metrics", self._serve_metrics),
                 *health_routes(self._readiness),
                 ("*", "/{tail:.*}", self._not_found)], self._ssl_context)
            self.prometheus_port = self._listener.port
            log.info("Prometheus metrics on %s://%s:%d/metrics", "https" if self._ssl_context else "http",
                     self.config.prometheus.endpoint.rpartition(":")[0], self.prometheus_port)
        if self.config.otlp.endpoint:
            self._start_otlp()

    def shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._own_http:
            self._http.shutdown()
        if self.provider is not None:
            self.provider.shutdown()

    # --- Prometheus -------------------------------------------------------------------------------
    async def _serve_metrics(self, request: web.Request) -> web.Response:
        if not token_matches(request.headers.get("Authorization", ""), self._token):
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        # OpenMetrics when the scraper asks (Prometheus does, first): only it carries exemplars.
        if "application/openmetrics-text" in request.headers.get("Accept", ""):
            body, content_type = await self._http.blocking(self.openmetrics_text), openmetrics.CONTENT_TYPE_LATEST
        else:
            body, content_type = await self._http.blocking(self.prometheus_text), CONTENT_TYPE_LATEST
        response = web.Response(body=body, headers={"Content-Type": content_type})
        response.enable_compression()  # gzip when the scraper accepts it
        return response

    @staticmethod
    async def _not_found(_request: web.Request) -> web.Response:
        return web.Response(status=404, text="metrics are at GET /metrics\n")

    def prometheus_text(self) -> bytes:
        """One scrape: the feature series as rendered after the last evaluation, then the live ones."""
        snap = self._rendered()
        assert snap.prometheus is not None
        return snap.prometheus + render_prometheus(self._scraped(), [self._target()])

    def _scraped(self) -> list[tuple[MetricDef, Series]]:
        """What a scrape reads at its time: the counters and the live gauges."""
        return [(d, self.counters.series(d.name)) for d in COUNTERS] + [
            (d, list(self._live[d.name]())) for d in LIVE_GAUGES + PERFORMANCE_GAUGES]

    def _target(self) -> Metric:
        target = Metric("target", "Target metadata", "info")  # as OTel's Prometheus exporters spell the resource
        target.add_sample("target_info", {"service_name": "otel-ml", "service_instance_id": self.instance_id}, 1)
        return target

    def openmetrics_text(self) -> bytes:
        """One scrape in OpenMetrics: the same series, ``ml.drift.detections`` and ``ml.ground_truth`` with their
        exemplars."""
        snap = self._rendered()
        with self._snapshot_lock:
            if snap.openmetrics is None:
                snap.openmetrics = render_prometheus(((d, snap.series[d.name]) for d in FEATURE_GAUGES),
                                                     exemplar_of=lambda _d, _attrs: None)
        def exemplar_of(d: MetricDef, attrs: dict[str, str]) -> Example | None:
            if d.name not in (sc.METRIC_DRIFT_DETECTIONS, sc.METRIC_GROUND_TRUTH):
                return None
            return snap.exemplars.get((attrs.get(sc.ATTR_MODEL_NAME, ""), attrs.get(sc.ATTR_MODEL_VERSION, ""),
                                       attrs.get(sc.ATTR_FEATURE_NAME, "")))

        return snap.openmetrics + render_prometheus(self._scraped(), [self._target()], exemplar_of) + b"# EOF\n"

    # --- snapshot ----------------------------------------------------------------------------------
    def publish(self, snapshot: Snapshot) -> None:
        """A new evaluation: its series are built and rendered now (the evaluator's thread), so a scrape only
        copies bytes."""
        with self._snapshot_lock:
            self._snap = _Rendered(snapshot, [], {}, {}, stale=True)
        self._rendered()

    def _rendered(self) -> _Rendered:
        with self._snapshot_lock:
            snap = self._snap
            if snap.stale:
                kept, over = cap_reports(list(snap.source.reports), self.config.cardinality)
                series: dict[str, Series] = {d.name: [] for d in FEATURE_GAUGES}
                plain = not self.config.detail_for
                for r in kept:
                    model = _model_attrs(r)
                    for f in r.features:
                        level = self.config.detail if plain else detail_level(self.config, r.model, f.feature)
                        for metric, attrs, value in feature_series(model, f, level, self.config.effect_size,
                                                                   self.config.distribution):
                            series[metric].append((attrs, value))
                    for metric, attrs, value in attribution_series(model, r):
                        series[metric].append((attrs, value))
                exemplars: dict[tuple[str, str, str], Example] = {
                    (r.model, r.version, f.feature): f.exemplars[0] for r in kept for f in r.features if f.exemplars}
                exemplars.update({(p.model, p.version, ""): p.wrong_predictions[0] for p in snap.source.performance
                                  if p.wrong_predictions})
                snap = self._snap = _Rendered(snap.source, kept, over, series, exemplars)
            if snap.prometheus is None and self.config.prometheus.enabled:
                snap.prometheus = render_prometheus((d, snap.series[d.name]) for d in FEATURE_GAUGES)
            return snap

    def series(self, metric: str) -> Series:
        """The current series of one metric (what a scrape or a push would carry)."""
        if metric in self._live:
            return list(self._live[metric]())
        if any(d.name == metric for d in COUNTERS):
            return self.counters.series(metric)
        return self._rendered().series.get(metric, [])

    # --- OTLP push --------------------------------------------------------------------------------
    def _start_otlp(self) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.metrics import CallbackOptions, Observation
        from opentelemetry.sdk.metrics import MeterProvider, ObservableCounter, ObservableGauge
        from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        temporality = (AggregationTemporality.DELTA if self.config.otlp.temporality == "delta"
                       else AggregationTemporality.CUMULATIVE)
        exporter = ExemplarExporter(OTLPMetricExporter(
            endpoint=self.config.otlp.endpoint, insecure=self.config.otlp.insecure,
            headers=dict(self.config.otlp.headers) or None, preferred_temporality={ObservableCounter: temporality}),
            lambda: self._rendered().exemplars)
        reader = PeriodicExportingMetricReader(
            exporter, export_interval_millis=self.config.otlp.interval_seconds * 1000,
            cardinality_limits={ObservableGauge: MAX_SERIES_PER_METRIC, ObservableCounter: MAX_SERIES_PER_METRIC})
        resource = Resource.create({"service.name": "otel-ml", "service.instance.id": self.instance_id})
        self.provider = MeterProvider(metric_readers=[reader], resource=resource)
        meter = self.provider.get_meter("otel_ml")

        def callback(metric: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
            def observe(_options: CallbackOptions) -> Iterable[Observation]:
                try:
                    return [Observation(value, attrs) for attrs, value in self.series(metric)]
                except Exception:  # a bug here must not stop the other metrics
                    log.exception("metric callback failed")
                    return []
            return observe

        for d in COUNTERS:
            meter.create_observable_counter(d.name, callbacks=[callback(d.name)], unit=d.unit,
                                            description=d.description)
        for d in FEATURE_GAUGES + LIVE_GAUGES + PERFORMANCE_GAUGES:
            meter.create_observable_gauge(d.name, callbacks=[callback(d.name)], unit=d.unit,
                                          description=d.description)
        log.info("OTLP metrics to %s every %ss", self.config.otlp.endpoint, self.config.otlp.interval_seconds)

    # --- live gauges: per model and per process, cheap enough to read at every scrape ----------------
    def _storage(self) -> Iterator[tuple[dict[str, str], float]]:
        if self._health is not None:
            yield {}, float(self._health.healthy())

    def _models_live(self) -> Iterator[tuple[dict[str, str], float]]:
        yield {}, float(self._rendered().source.live_models)

    def _overflow(self) -> Iterator[tuple[dict[str, str], float]]:
        for kind, n in self._rendered().overflow.items():
            yield {"kind": kind}, float(n)

    def _waiting(self, field: int) -> Iterator[tuple[dict[str, str], float]]:
        for kind, values in self._rendered().source.waiting.items():
            yield {sc.ATTR_KIND: kind}, float(values[field])

    def _latency(self) -> Iterator[tuple[dict[str, str], float]]:
        for r in self._rendered().reports:
            for q, v in (("0.5", r.latency_p50), ("0.95", r.latency_p95), ("0.99", r.latency_p99)):
                if _finite(v):
                    yield {**_model_attrs(r), sc.ATTR_QUANTILE: q}, v

    def _errors(self) -> Iterator[tuple[dict[str, str], float]]:
        for r in self._rendered().reports:
            if _finite(r.error_ratio):
                yield _model_attrs(r), r.error_ratio

    def _lost(self) -> Iterator[tuple[dict[str, str], float]]:
        for r in self._rendered().reports:
            if _finite(r.lost_ratio):
                yield _model_attrs(r), r.lost_ratio

    def _reference_ready(self) -> Iterator[tuple[dict[str, str], float]]:
        seen = set()
        for r in self._rendered().reports:
            seen.add((r.model, r.version))
            yield {**_model_attrs(r), "ml.reference.source": r.reference_source or "none"}, \
                1.0 if r.reference_source else 0.0
        for model, version in self._rendered().source.waiting_baselines:
            if (model, version) not in seen:
                yield {sc.ATTR_MODEL_NAME: model, sc.ATTR_MODEL_VERSION: version,
                       "ml.reference.source": "baseline"}, 1.0

    def _reference_pending_rows(self) -> Iterator[tuple[dict[str, str], float]]:
        for r in self._rendered().reports:
            if not r.reference_source:
                yield _model_attrs(r), float(r.reference_pending_rows)

    def _segment_drift(self) -> Iterator[tuple[dict[str, str], float]]:
        for r in self._rendered().reports:
            for seg in r.segments:
                if seg.detected is not None:
                    yield {**_model_attrs(r), sc.ATTR_SEGMENT: seg.segment}, 1.0 if seg.detected else 0.0

    def _segment_share(self) -> Iterator[tuple[dict[str, str], float]]:
        for r in self._rendered().reports:
            for seg in r.segments:
                for sample, share in (("reference", seg.reference_share), ("current", seg.current_share)):
                    yield {**_model_attrs(r), sc.ATTR_SEGMENT: seg.segment, sc.ATTR_SAMPLE: sample}, share

    def _segment_predictions(self) -> Iterator[tuple[dict[str, str], float]]:
        for r in self._rendered().reports:
            for seg in r.segments:
                yield {**_model_attrs(r), sc.ATTR_SEGMENT: seg.segment}, seg.current_predictions

    def _segment_detail(self, which: str) -> Iterator[tuple[dict[str, str], float]]:
        """Per feature and segment, only for the features ``export.detail_for`` raises above ``default``: with 20
        segments, every feature's series would be 20 times the model's."""
        for r in self._rendered().reports:
            for seg in r.segments:
                values = seg.p_values if which == "p" else seg.missing_ratio
                for name, value in values.items():
                    if detail_level(self.config, r.model, name) != "default":
                        yield {**_model_attrs(r), sc.ATTR_FEATURE_NAME: name, sc.ATTR_SEGMENT: seg.segment}, value

    def _segment_contribution(self) -> Iterator[tuple[dict[str, str], float]]:
        for r in self._rendered().reports:  # largest first per feature
            yield from contribution_series(_model_attrs(r), r.segment_contributions, sc.ATTR_FEATURE_NAME)

    def _segment_performance_contribution(self) -> Iterator[tuple[dict[str, str], float]]:
        for r in self._rendered().source.performance:  # the most harmful first per metric
            yield from contribution_series({sc.ATTR_MODEL_NAME: r.model, sc.ATTR_MODEL_VERSION: r.version},
                                           r.segment_contributions, sc.ATTR_PERFORMANCE_METRIC)

    def _unprofiled(self) -> Iterator[tuple[dict[str, str], float]]:
        for r in self._rendered().reports:
            yield _model_attrs(r), float(r.unprofiled_features)

    def _version_differences(self) -> Iterator[tuple[dict[str, str], float]]:
        for c in self._rendered().source.versions:
            pair = {sc.ATTR_MODEL_NAME: c.model, sc.ATTR_VERSION_A: c.a, sc.ATTR_VERSION_B: c.b}
            values = {m: d.difference for m, d in c.performance.items()}
            if c.error_ratio is not None:
                values["error_ratio"] = c.error_ratio.difference
            if c.latency_p95 is not None:
                values["latency_p95_seconds"] = c.latency_p95.difference
            for name, value in values.items():
                if _finite(value):
                    yield {**pair, sc.ATTR_COMPARE: name}, value

    def _version_regressions(self) -> Iterator[tuple[dict[str, str], float]]:
        for c in self._rendered().source.versions:
            pair = {sc.ATTR_MODEL_NAME: c.model, sc.ATTR_VERSION_A: c.a, sc.ATTR_VERSION_B: c.b}
            for name, worse in c.decisions.items():
                yield {**pair, sc.ATTR_COMPARE: name}, 1.0 if worse else 0.0

    def _performance_series(self, metric: str) -> Iterator[tuple[dict[str, str], float]]:
        for r in self._rendered().source.performance:
            yield from performance_series(r, metric, detail_level(self.config, r.model, "*") != "default")


def contribution_series(model: dict[str, str], contributions: list[SegmentContribution], key: str
                        ) -> Iterator[tuple[dict[str, str], float]]:
    """The first ``SEGMENT_CONTRIBUTIONS_EXPORTED`` segments of each feature (or metric, ``key`` its label) in
    ``contributions``' order, each as its mix and within series."""
    shown: dict[str, int] = {}
    for c in contributions:
        if shown.setdefault(c.feature, 0) >= sc.SEGMENT_CONTRIBUTIONS_EXPORTED:
            continue
        shown[c.feature] += 1
        for kind, value in (("mix", c.mix), ("within", c.within)):
            yield {**model, key: c.feature, sc.ATTR_SEGMENT: c.segment, sc.ATTR_ATTRIBUTION: kind}, value


SEGMENT_PERFORMANCE_DEFAULT = frozenset({sc.METRIC_PERFORMANCE, sc.METRIC_PERFORMANCE_DEGRADED,
                                         sc.METRIC_PERFORMANCE_ESTIMATED_DEGRADED})
"""The performance gauges every segment gets: what a segment's alert and its dashboard panel read. The others
(estimate, reference, coverage) per segment only for a model ``export.detail_for`` raises (``{MODEL: methods}``):
20 segments would multiply them by 20."""


def performance_series(r: PerformanceReport, metric: str, every_segment_gauge: bool = False
                       ) -> Iterator[tuple[dict[str, str], float]]:
    """One performance gauge's series of one (model, version): the model's, then (a segmented model) each
    segment's under ``ml.segment``: ``SEGMENT_PERFORMANCE_DEFAULT``, or with ``every_segment_gauge`` every gauge
    but the delays (never per class)."""
    model = {sc.ATTR_MODEL_NAME: r.model, sc.ATTR_MODEL_VERSION: r.version}
    yield from _performance_series_of(r, metric, model)
    if metric == sc.METRIC_GROUND_TRUTH_DELAY or not (every_segment_gauge or metric in SEGMENT_PERFORMANCE_DEFAULT):
        return
    for label, segment in r.segments.items():
        yield from _performance_series_of(segment, metric, {**model, sc.ATTR_SEGMENT: label})


def _performance_series_of(r: PerformanceReport, metric: str, model: dict[str, str]
                           ) -> Iterator[tuple[dict[str, str], float]]:
    if metric == sc.METRIC_GROUND_TRUTH_COVERAGE:
        if _finite(r.coverage):
            yield model, r.coverage
        return
    if metric == sc.METRIC_PERFORMANCE_ESTIMATE_UNSUPPORTED:
        if _finite(r.unsupported_share):
            yield model, r.unsupported_share
        return
    if metric == sc.METRIC_PERFORMANCE_ESTIMATE_GAP:
        for name, m in r.estimate_gap.items():
            if _finite(m.value):
                yield {**model, sc.ATTR_PERFORMANCE_METRIC: name}, m.value
        return
    if metric == sc.METRIC_PERFORMANCE_ESTIMATE_OFF:
        for name, off in r.estimate_off.items():
            yield {**model, sc.ATTR_PERFORMANCE_METRIC: name}, 1.0 if off else 0.0
        return
    if metric == sc.METRIC_PERFORMANCE_OBJECTIVE:
        if sc.ATTR_SEGMENT not in model:
            for name, objective in r.objectives.items():
                yield {**model, sc.ATTR_PERFORMANCE_METRIC: name}, objective
        return
    if metric in EVALUATION_METRICS:
        if sc.ATTR_SEGMENT not in model:
            yield from _evaluation_series(r, metric, model)
        return
    if metric in (sc.METRIC_FAIRNESS, sc.METRIC_FAIRNESS_VIOLATION):
        if sc.ATTR_SEGMENT not in model and r.fairness is not None:
            yield from _fairness_series(r.fairness, metric, model)
        return
    if metric == sc.METRIC_GROUND_TRUTH_DELAY:
        for q, v in (("0.5", r.delay_p50), ("0.95", r.delay_p95)):
            if _finite(v):
                yield {**model, sc.ATTR_QUANTILE: q}, v
        return
    values = {sc.METRIC_PERFORMANCE: r.realized, sc.METRIC_PERFORMANCE_ESTIMATED: r.estimated,
              sc.METRIC_PERFORMANCE_REFERENCE: r.reference}.get(metric)
    if values is not None:
        for name, m in values.items():
            if _finite(m.value):
                yield {**model, sc.ATTR_PERFORMANCE_METRIC: name}, m.value
        if metric == sc.METRIC_PERFORMANCE and sc.ATTR_SEGMENT not in model:
            for cls, per in r.per_class.items():
                for name, v in per.items():
                    if _finite(v):
                        yield {**model, sc.ATTR_PERFORMANCE_METRIC: name, sc.ATTR_CLASS: cls}, v
        return
    decisions = r.degraded if metric == sc.METRIC_PERFORMANCE_DEGRADED else r.estimated_degraded
    for name, degraded in decisions.items():
        yield {**model, sc.ATTR_PERFORMANCE_METRIC: name}, 1.0 if degraded else 0.0


EVALUATION_METRICS = frozenset({sc.METRIC_GENAI_EVALUATION_PASS_RATE, sc.METRIC_GENAI_EVALUATION_SCORE,
                                sc.METRIC_GENAI_EVALUATION_RESULTS, sc.METRIC_GENAI_EVALUATION_DEGRADED})


def _evaluation_series(r: PerformanceReport, metric: str, model: dict[str, str]
                       ) -> Iterator[tuple[dict[str, str], float]]:
    """An LLM model's evaluation gauges (analyze/evaluations.py), per evaluation."""
    for e in r.evaluations:
        attrs = {**model, sc.ATTR_GENAI_EVALUATION: e.name}
        if metric == sc.METRIC_GENAI_EVALUATION_RESULTS:
            yield attrs, float(e.results)
        elif metric == sc.METRIC_GENAI_EVALUATION_DEGRADED:
            for test, degraded in e.degraded.items():
                yield {**attrs, sc.ATTR_GENAI_EVALUATION_TEST: test}, 1.0 if degraded else 0.0
        else:
            pass_rate = metric == sc.METRIC_GENAI_EVALUATION_PASS_RATE
            for sample, rate in (("current", e.pass_rate if pass_rate else e.mean_score),
                                 ("reference", e.reference_pass_rate if pass_rate else e.reference_mean_score)):
                if rate is not None and _finite(rate.value):
                    yield {**attrs, sc.ATTR_SAMPLE: sample}, rate.value


def _fairness_series(f: FairnessReport, metric: str, model: dict[str, str]) -> Iterator[tuple[dict[str, str], float]]:
    """A model's fairness gauges (analyze/fairness.py): each group's rates and disparities, and their decisions."""
    for v in f.values:
        attrs = {**model, sc.ATTR_FAIRNESS_METRIC: v.metric, sc.ATTR_FAIRNESS_ATTRIBUTE: v.attribute,
                 sc.ATTR_GROUP: v.group}
        if metric == sc.METRIC_FAIRNESS:
            if _finite(v.value):
                yield attrs, v.value
            continue
        for test, decided in (("violation", v.violation), ("changed", v.changed)):
            if decided is not None:
                yield {**attrs, sc.ATTR_FAIRNESS_TEST: test}, 1.0 if decided else 0.0
