"""One YAML file configures the processor; every section maps onto a component's config dataclass.

Precedence, lowest first: built-in defaults, ``OTEL_ML_*`` environment variables, the config file,
command-line flags. ``examples/otel-ml.yaml`` is the commented sample.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from otel_ml import semconv
from otel_ml.analyze.drift import CATEGORICAL_METHODS, DEFAULT_EFFECT_SIZE, NUMERIC_METHODS, DriftConfig
from otel_ml.analyze.fairness import fairness_settings
from otel_ml.analyze.performance import ALTERNATIVES, OBJECTIVE_METRICS, PerformanceConfig
from otel_ml.core.references import MAX_BASELINE_BYTES
from otel_ml.decode.genai import GenAiConfig
from otel_ml.decode.limits import DecodeLimits
from otel_ml.decode.privacy import PrivacyConfig
from otel_ml.errors import ConfigError
from otel_ml.export.config import DETAIL_LEVELS, ExportConfig
from otel_ml.http_server import HttpServerConfig
from otel_ml.labels.pending import LabelsConfig
from otel_ml.profile.comoments import MAX_FEATURES as COMOMENT_MAX_FEATURES
from otel_ml.profile.lifecycle import WHEN_FULL, ModelsConfig
from otel_ml.profile.sketch import SketchConfig
from otel_ml.profile.window import WindowConfig
from otel_ml.receiver.config import KINESIS_COMPRESSIONS, ReceiverConfig
from otel_ml.state.local import StateConfig
from otel_ml.ui.config import UiConfig

__all__ = ["ENV_VARS", "ConfigError", "LimitsConfig", "ServiceConfig", "load_config"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LimitsConfig(DecodeLimits):
    """YAML ``limits``: what one span may carry (the DecodeLimits fields, enforced by the decoder), and what the
    processor keeps and admits (the fields below)."""

    max_profiled_features_per_model: int = 1_000
    """Features profiled per model; values of further features are dropped and counted. Not to be confused with
    ``export.cardinality.max_features_per_model``, the features *exported* per model."""
    max_inflight_bytes: int = 128 * 1024 * 1024
    """Request bytes being decoded, applied or made durable at once; over it, UNAVAILABLE with RetryInfo."""
    retry_after_seconds: float = 1.0
    """The RetryInfo delay given to refused senders."""
    max_baseline_bytes: int = MAX_BASELINE_BYTES
    """Baseline files larger than this are skipped with a warning naming the file and this setting (reading one
    costs about three times its size in memory)."""

    def decode_limits(self) -> DecodeLimits:
        """The decoder's part, as a plain DecodeLimits (what receiver worker processes are given)."""
        return DecodeLimits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DecodeLimits)})


RENAMED_KEYS = {"limits.max_features_per_model": "limits.max_profiled_features_per_model",
                "limits.max_models": "models.max_models"}
"""Old setting → its new name: still accepted, with a warning."""


def _fairness_moved(data: dict[str, Any]) -> dict[str, Any]:
    """YAML's top-level ``fairness`` (what docs/statistics.md shows) where it lives: ``performance.fairness``."""
    if "fairness" in data:
        if not isinstance(data["fairness"], dict):
            raise ConfigError(f"fairness: expected a mapping of model to its settings, got {data['fairness']!r}")
        performance = data.setdefault("performance", {})
        if not isinstance(performance, dict):
            raise ConfigError(f"performance: expected a mapping, got {performance!r}")
        if "fairness" in performance:
            raise ConfigError("'fairness' and 'performance.fairness' are both set; keep one")
        performance["fairness"] = data.pop("fairness")
    return data


def _renamed(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (nested, as from YAML) with old setting names moved to their new place."""
    for old, new in RENAMED_KEYS.items():
        *path, last = old.split(".")
        node: Any = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            continue
        value = node.pop(last)
        log.warning("setting '%s' is deprecated: it is now '%s' (the old name still works for now)", old, new)
        *path, last = new.split(".")
        target = data
        for part in path:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{part}: expected a mapping, got {target!r}")
        if last in target:
            raise ConfigError(f"'{old}' and its new name '{new}' are both set; keep '{new}'")
        target[last] = value
    return data


@dataclass(frozen=True)
class EvaluationConfig:
    interval_seconds: float = 10.0
    """How often drift is recomputed over the current horizon."""


@dataclass(frozen=True)
class SegmentsConfig:
    """YAML ``segments``: drift per slice of a model's traffic (profile/segments.py, analyze/segments.py)."""

    by: dict[str, list[str]] = field(default_factory=dict)
    """Model name → the features whose values make its segments, e.g. ``{credit-risk: [region]}`` or
    ``{credit-risk: [region, tier]}`` (each combination a segment). A baseline built with ``--segment-by``
    segments its model without this."""
    max_per_model: int = 20
    """Segments kept per model; labels beyond pool as ``(other)``."""
    bins: dict[str, list[float]] = field(default_factory=dict)
    """A numeric segment key → increasing edges: its segments are the intervals (``{age: [18, 30, 50]}``: ``<18``,
    ``[18..30)``, ``[30..50)``, ``>=50``), not its values (every distinct age would be a segment)."""


@dataclass(frozen=True)
class ServiceConfig:
    receiver: ReceiverConfig = field(default_factory=ReceiverConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    http: HttpServerConfig = field(default_factory=HttpServerConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    sketch: SketchConfig = field(default_factory=SketchConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    """The built-in pages and JSON API (docs/api.md)."""
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    """Ground truth: how long and how many predictions wait for their labels."""
    performance: PerformanceConfig = field(default_factory=PerformanceConfig)
    """Model performance: horizon, windows, decisions."""
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    """Drift per segment of a model (a region, a tier): which features segment which model."""
    baseline_dir: str | None = None
    """Directory of baseline files written by ``otel-ml baseline build`` (any file name)."""
    state: StateConfig = field(default_factory=StateConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    genai: GenAiConfig = field(default_factory=GenAiConfig)
    """GenAI spans (the OpenTelemetry GenAI conventions' model calls) as predictions (otel_ml/decode/genai.py)."""
    instance_id: str | None = None
    """``service.instance.id`` of the exported metrics; default: host name and process id."""
    log_level: str = "INFO"


# Environment variables and the field (dotted path) each sets.
ENV_VARS = {
    "OTEL_ML_OTLP_GRPC_ENDPOINT": "receiver.otlp_grpc.endpoint",
    "OTEL_ML_OTLP_HTTP_ENDPOINT": "receiver.otlp_http.endpoint",
    "OTEL_ML_PROMETHEUS_ENDPOINT": "export.prometheus.endpoint",
    "OTEL_ML_OTLP_METRICS_ENDPOINT": "export.otlp.endpoint",
    "OTEL_ML_UI_ENDPOINT": "ui.endpoint",
    "OTEL_ML_BASELINE_DIR": "baseline_dir",
    "OTEL_ML_STATE_DIR": "state.dir",
    "OTEL_ML_INSTANCE_ID": "instance_id",
}


def _coerce(value: Any, default: Any, path: str) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if isinstance(default, float) and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError as e:
            raise ConfigError(f"{path}: expected a number, got {value!r}") from e
    if isinstance(default, int) and not isinstance(value, bool):
        try:
            return int(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{path}: expected an integer, got {value!r}") from e
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return list(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return {**default, **value}
    return value


def _merge(obj: Any, data: dict[str, Any], path: str = "") -> Any:
    """A copy of dataclass ``obj`` with the values of ``data`` applied (recursively); unknown keys fail."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {data!r}")
    names = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in names:
            raise ConfigError(f"unknown setting '{where}' (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if value is None and current is not None and not isinstance(current, (dict, list)):
            raise ConfigError(f"{where}: a value is required (default: {current!r})")
        if dataclasses.is_dataclass(current):
            changes[key] = _merge(current, value or {}, where)
        elif value is None or current is None:
            changes[key] = value
        else:
            changes[key] = _coerce(value, current, where)
    return dataclasses.replace(obj, **changes)


# Settings that must be > 0 (every number must be finite and >= 0 anyway; see _validate).
POSITIVE = (
    "labels.ttl_seconds", "labels.max_pending", "labels.sample_ratio", "performance.horizon_seconds",
    "performance.window_seconds", "performance.max_classes",
    "receiver.kinesis.max_message_bytes", "receiver.kinesis.shard_sync_interval_seconds",
    "windows.window_seconds", "windows.horizon_seconds", "windows.reference_min_rows", "evaluation.interval_seconds",
    "state.checkpoint_interval_seconds", "drift.alpha", "drift.expected_run_days",
    "drift.alert_for_seconds", "drift.min_samples", "drift.bins", "drift.learned_sigma",
    "limits.max_batch_size", "limits.max_features_per_span", "limits.max_category_length", "limits.max_name_length",
    "limits.max_id_length", "limits.max_embedding_dimension",
    "limits.max_models", "limits.max_profiled_features_per_model", "limits.max_inflight_bytes",
    "limits.retry_after_seconds", "limits.max_baseline_bytes",
    "models.max_models", "models.idle_ttl_seconds", "http.idle_timeout_seconds",
    "http.body_timeout_seconds", "http.max_connections", "http.tls_handshake_timeout_seconds", "http.handler_threads",
    "receiver.otlp_grpc.max_message_bytes", "receiver.otlp_grpc.max_workers", "receiver.otlp_http.max_message_bytes",
    "export.otlp.interval_seconds", "export.cardinality.max_models", "export.cardinality.max_versions_per_model",
    "export.cardinality.max_features_per_model", "ui.stale_after_seconds",
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _numbers(obj: Any, path: str = "") -> Iterator[tuple[str, float]]:
    for f in dataclasses.fields(obj):
        value, where = getattr(obj, f.name), f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(value):
            yield from _numbers(value, where)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield where, value


def _validate(cfg: ServiceConfig) -> None:
    """Every setting checked at start, with a message naming its key: a bad value must fail here, not become a
    traceback, a busy loop or a silent change later."""
    def need(ok: bool, key: str, rule: str, value: Any) -> None:
        if not ok:
            raise ConfigError(f"{key}: {rule}, got {value!r}")

    for key, value in _numbers(cfg):
        if key in ("receiver.otlp_grpc.worker_processes", "receiver.kafka.decode_processes",
                   "receiver.kinesis.decode_processes") and value == -1:
            continue  # -1: one per CPU beyond the first
        need(math.isfinite(value) and value >= 0, key, "must be a finite number >= 0", value)
        if key in POSITIVE:
            need(value > 0, key, "must be > 0", value)
    corr = cfg.drift.correlation_features
    need(isinstance(corr, int) and not isinstance(corr, bool) and 0 <= corr <= COMOMENT_MAX_FEATURES,
         "drift.correlation_features", f"a whole number from 0 (off) to {COMOMENT_MAX_FEATURES}", corr)
    alpha = cfg.drift.alpha
    need(alpha is None or (isinstance(alpha, (int, float)) and not isinstance(alpha, bool)), "drift.alpha",
         "expected a number (or nothing: derived from drift.expected_run_days)", alpha)
    need(alpha is None or 0 < alpha < 1, "drift.alpha", "a significance level in (0, 1)", alpha)
    need(cfg.drift.alert_for_seconds >= cfg.evaluation.interval_seconds, "drift.alert_for_seconds",
         f"at least one evaluation interval ({cfg.evaluation.interval_seconds:g} s)", cfg.drift.alert_for_seconds)
    need(cfg.log_level.upper() in LOG_LEVELS, "log_level", f"one of {', '.join(LOG_LEVELS)}", cfg.log_level)
    for attribute, feature in cfg.genai.features.items():
        need(isinstance(feature, str) and not semconv.is_reserved_feature(feature), f"genai.features.{attribute}",
             "a feature name (text; \"\" leaves the attribute out) that is not one the model output is profiled "
             "under", feature)
    for evaluation, labels in cfg.genai.pass_labels.items():
        need(isinstance(labels, list) and bool(labels) and all(isinstance(x, str) and x for x in labels),
             f"genai.pass_labels.{evaluation}", "a list of the score labels that are a pass", labels)
    trace_url = cfg.ui.trace_url
    need(isinstance(trace_url, str) and (not trace_url or (
        "{trace_id}" in trace_url and trace_url.startswith(("http://", "https://")) and
        not set(re.findall(r"{(\w*)}", trace_url)) - {"trace_id", "span_id"})), "ui.trace_url",
        "empty, or an http(s) URL with {trace_id} (and optionally {span_id}, no other placeholder)", trace_url)
    windows = cfg.windows.horizon_seconds / cfg.windows.window_seconds
    need(windows >= 1 and abs(windows - round(windows)) < 1e-9, "windows.horizon_seconds",
         f"a whole number of windows (windows.window_seconds = {cfg.windows.window_seconds:g})",
         cfg.windows.horizon_seconds)
    kafka = cfg.receiver.kafka
    for key, value in (("logs_topic", kafka.logs_topic), ("changelog_topic", kafka.changelog_topic)):
        need(not value or kafka.enabled, f"receiver.kafka.{key}", "set only with receiver.kafka.brokers "
             "(--kafka-brokers)", value)
        need(value != kafka.topic, f"receiver.kafka.{key}", "a topic other than receiver.kafka.topic", value)
    need(not (kafka.logs_topic and kafka.changelog_topic), "receiver.kafka.logs_topic",
         "empty with receiver.kafka.changelog_topic (in shared mode, send labels as OTLP log records to any replica, "
         "or as spans on the input topic: collector-config/kafka.yaml)", kafka.logs_topic)
    need(not kafka.changelog_topic or kafka.changelog_topic != kafka.logs_topic, "receiver.kafka.changelog_topic",
         "a topic other than receiver.kafka.logs_topic", kafka.changelog_topic)
    need(kafka.session_timeout_ms >= 6000, "receiver.kafka.session_timeout_ms",
         ">= 6000 (the brokers' default group.min.session.timeout.ms)", kafka.session_timeout_ms)
    kinesis = cfg.receiver.kinesis
    need(not kinesis.logs_stream or kinesis.enabled, "receiver.kinesis.logs_stream",
         "set only with receiver.kinesis.stream (--kinesis-stream)", kinesis.logs_stream)
    need(not kinesis.logs_stream or kinesis.logs_stream != kinesis.stream, "receiver.kinesis.logs_stream",
         "a stream other than receiver.kinesis.stream", kinesis.logs_stream)
    need(kinesis.compression in (*KINESIS_COMPRESSIONS, "noop"), "receiver.kinesis.compression",
         f"one of {', '.join(KINESIS_COMPRESSIONS)} (the awskinesis exporter's encoding.compression)",
         kinesis.compression)
    need(1 <= kinesis.records_per_call <= 10_000, "receiver.kinesis.records_per_call", "in [1, 10000]",
         kinesis.records_per_call)
    need(not (kinesis.enabled and kafka.changelog_topic), "receiver.kinesis.stream",
         "empty with receiver.kafka.changelog_topic: shared mode's replicas divide Kafka partitions; a Kinesis "
         "stream is read by one processor (docs/scaling.md)", kinesis.stream)
    for model, by in cfg.segments.by.items():
        need(isinstance(by, list) and 1 <= len(by) <= 4 and all(isinstance(b, str) and b for b in by),
             f"segments.by.{model}", "a list of 1 to 4 feature names", by)
    for key, edges in cfg.segments.bins.items():
        need(isinstance(edges, list) and bool(edges) and all(isinstance(e, (int, float)) for e in edges)
             and list(edges) == sorted(set(edges)), f"segments.bins.{key}", "a list of increasing numbers", edges)
    need(cfg.segments.max_per_model >= 2, "segments.max_per_model", ">= 2 (one place is kept for (other))",
         cfg.segments.max_per_model)
    need(cfg.labels.sample_ratio <= 1, "labels.sample_ratio", "in (0, 1]", cfg.labels.sample_ratio)
    need(0 < cfg.performance.threshold < 1, "performance.threshold", "in (0, 1)", cfg.performance.threshold)
    need(cfg.performance.window_seconds <= cfg.performance.horizon_seconds, "performance.window_seconds",
         "at most performance.horizon_seconds", cfg.performance.window_seconds)
    need(cfg.performance.max_classes >= 2, "performance.max_classes", ">= 2", cfg.performance.max_classes)
    need(0 <= cfg.performance.max_unsupported_share <= 1, "performance.max_unsupported_share", "in [0, 1]",
         cfg.performance.max_unsupported_share)
    try:
        fairness = fairness_settings(cfg.performance.fairness)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    for model, settings in fairness.items():
        by = cfg.segments.by.get(model)
        need(by is None or set(settings.attributes) <= set(by), f"fairness.{model}.attributes",
             f"keys among segments.by.{model} ({by}): a fairness attribute is a segment key", settings.attributes)
    for model, objectives in cfg.performance.objectives.items():
        need(isinstance(objectives, dict), f"performance.objectives.{model}", "a mapping of metric to objective",
             objectives)
        for metric, objective in objectives.items():
            where = f"performance.objectives.{model}.{metric}"
            need(metric in OBJECTIVE_METRICS, where, f"a metric among {', '.join(OBJECTIVE_METRICS)}", metric)
            need(isinstance(objective, (int, float)) and not isinstance(objective, bool) and 0 < objective < 1,
                 where, "an objective in (0, 1): 1 - objective is the error budget", objective)
    need(cfg.performance.alternative in ALTERNATIVES, "performance.alternative", f"one of {', '.join(ALTERNATIVES)}",
         cfg.performance.alternative)
    need(cfg.performance.loss_rows_per_window >= 1, "performance.loss_rows_per_window", ">= 1",
         cfg.performance.loss_rows_per_window)
    need(0 < cfg.performance.loss_sample_ratio <= 1, "performance.loss_sample_ratio", "in (0, 1]",
         cfg.performance.loss_sample_ratio)
    need(8 <= cfg.sketch.kll_k <= 65_535, "sketch.kll_k", "in [8, 65535] (DataSketches' KLL)", cfg.sketch.kll_k)
    need(3 <= cfg.sketch.frequent_items_lg_max_map_size <= 26, "sketch.frequent_items_lg_max_map_size",
         "in [3, 26]", cfg.sketch.frequent_items_lg_max_map_size)
    need(2 <= cfg.sketch.category_buckets <= 65_536, "sketch.category_buckets", "in [2, 65536]",
         cfg.sketch.category_buckets)
    need(cfg.models.when_full in WHEN_FULL, "models.when_full", f"one of {', '.join(WHEN_FULL)}",
         cfg.models.when_full)
    need(cfg.export.otlp.temporality in ("cumulative", "delta"), "export.otlp.temporality", "cumulative or delta",
         cfg.export.otlp.temporality)
    for key, level in [("export.detail", cfg.export.detail),
                       *((f"export.detail_for.{k}", v) for k, v in cfg.export.detail_for.items())]:
        need(level in DETAIL_LEVELS, key, f"one of {', '.join(DETAIL_LEVELS)}", level)
    for kind, methods in (("numeric", NUMERIC_METHODS), ("categorical", CATEGORICAL_METHODS),
                          ("correlation", ("r_change",))):
        method = cfg.export.effect_size.get(kind, DEFAULT_EFFECT_SIZE[kind])
        need(method in methods, f"export.effect_size.{kind}", f"one of {', '.join(methods)}", method)
    distances = sorted({*NUMERIC_METHODS, *CATEGORICAL_METHODS, "r_change"} - {"ks", "chi2"})
    floors = [("drift.min_effect", cfg.drift.min_effect),
              *((f"drift.features.{k}.min_effect", v.get("min_effect")) for k, v in cfg.drift.features.items()
                if isinstance(v, dict))]
    for key, floor in floors:
        if floor is None:
            continue
        need(isinstance(floor, dict), key, "a mapping of distance method to its floor", floor)
        for method, value in floor.items():
            need(method in distances, f"{key}.{method}", f"a distance method ({', '.join(distances)})", method)
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                 and value >= 0, f"{key}.{method}", "a finite number >= 0", value)
    need(isinstance(cfg.drift.thresholds, dict), "drift.thresholds", "a mapping of method to threshold",
         cfg.drift.thresholds)
    for method, value in cfg.drift.thresholds.items():  # a misspelt method would be ignored without a word
        need(method in (*distances, "ndcg"), f"drift.thresholds.{method}",
             f"a distance method ({', '.join(distances)}) or ndcg", method)
        need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
             and (method != "ndcg" or 0 < value <= 1), f"drift.thresholds.{method}",
             "an NDCG in (0, 1]" if method == "ndcg" else "a finite number >= 0", value)
    unknown = set(cfg.export.effect_size) - set(DEFAULT_EFFECT_SIZE)
    need(not unknown, "export.effect_size", "keys numeric, categorical and correlation", sorted(unknown))
    for key, endpoint in (("receiver.otlp_grpc.endpoint", cfg.receiver.otlp_grpc.endpoint),
                          ("receiver.otlp_http.endpoint", cfg.receiver.otlp_http.endpoint),
                          ("export.prometheus.endpoint", cfg.export.prometheus.endpoint),
                          ("ui.endpoint", cfg.ui.endpoint)):
        host, _, port = str(endpoint).rpartition(":")
        need(bool(host) and port.isdigit() and int(port) <= 65_535, key, "HOST:PORT (port 0 to 65535)", endpoint)


def _dotted(path: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (a second ``performance:`` block silently
    replaced the first), naming both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping, at lines {seen[key]} and {line} (the "
                                "second would replace the first: merge them)", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> ServiceConfig:
    """Defaults ← environment ← file ← ``overrides`` (dotted paths, from flags).

    >>> load_config(overrides={"windows.window_seconds": 5}).windows.window_seconds
    5.0
    """
    cfg = ServiceConfig()
    env = os.environ if environ is None else environ
    for var, dotted in ENV_VARS.items():
        if env.get(var):
            cfg = _merge(cfg, _dotted(dotted, env[var]))
    if path is not None:
        text = Path(path).read_text()
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader) or {}  # a SafeLoader: no objects built
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from e
        cfg = _merge(cfg, _fairness_moved(_renamed(data)) if isinstance(data, dict) else data)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            cfg = _merge(cfg, _renamed(_dotted(dotted, value)))
    _validate(cfg)
    # A fairness attribute is a segment key: a model without segments.by is segmented by its attributes.
    by = {**{m: list(s.attributes) for m, s in fairness_settings(cfg.performance.fairness).items()}, **cfg.segments.by}
    if by != cfg.segments.by:
        cfg = dataclasses.replace(cfg, segments=dataclasses.replace(cfg.segments, by=by))
    methods = {"auto", "ks", "chi2", "psi", "js", "hellinger", "wasserstein", "linf"}
    for key, entry in cfg.drift.features.items():
        if not isinstance(entry, dict) or not set(entry) <= {"method", "threshold", "min_effect"}:
            raise ConfigError(f"drift.features.{key}: expected a mapping with method, threshold and/or min_effect")
        if entry.get("method", "auto") not in methods:
            raise ConfigError(f"drift.features.{key}.method: one of {', '.join(sorted(methods))}")
    return cfg


SETTINGS_FILE = "settings.json"
"""In the state directory: the settings the processor last started with that decide what the pages show (drift,
performance, the effect shown), so that ``otel-ml report`` decides as the processor does."""


def record_settings(cfg: ServiceConfig) -> Path:
    """Write ``SETTINGS_FILE`` (at every start; a temporary file renamed, so a reader never sees half of one)."""
    path = Path(cfg.state.dir) / SETTINGS_FILE
    data = {"drift": dataclasses.asdict(cfg.drift), "performance": dataclasses.asdict(cfg.performance),
            "export": {"effect_size": dict(cfg.export.effect_size)}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def recorded_settings(state_dir: str | os.PathLike[str]) -> ServiceConfig | None:
    """The settings ``record_settings`` wrote in ``state_dir`` (the rest default); None when there are none or
    they cannot be read (a state directory of an older version)."""
    try:
        data = json.loads((Path(state_dir) / SETTINGS_FILE).read_text(encoding="utf-8"))
        return _merge(ServiceConfig(), data)
    except (OSError, ValueError, ConfigError):
        return None
