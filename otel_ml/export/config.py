"""Settings of the metric exporters (YAML section ``export``): Prometheus, OTLP push, cardinality caps."""

from __future__ import annotations

from dataclasses import dataclass, field

from otel_ml.analyze.drift import DEFAULT_EFFECT_SIZE


@dataclass(frozen=True)
class PrometheusConfig:
    enabled: bool = True
    endpoint: str = "127.0.0.1:9464"
    """host:port of the pull endpoint; metrics are served at /metrics."""
    protected: bool = False
    """Apply ``receiver.tls`` (and mutual TLS) and ``receiver.auth`` (bearer token) to the Prometheus endpoint too;
    the scrape config then needs the CA, client certificate and token. Off: plain and open (bind it to loopback or
    a private network)."""


@dataclass(frozen=True)
class OtlpMetricExportConfig:
    endpoint: str | None = None
    """OTLP/gRPC endpoint (e.g. ``http://127.0.0.1:4317`` of a Collector); unset: no push export."""
    insecure: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    interval_seconds: float = 15.0
    temporality: str = "cumulative"
    """``cumulative`` (Prometheus, New Relic) or ``delta`` (Datadog) for counters."""


@dataclass(frozen=True)
class CardinalityConfig:
    """Caps on exported series: a bad deploy (a version per request, a feature per user) must not explode
    the metrics bill. What is over a cap is still profiled, just not exported; otel_ml.export.overflow
    counts it. The models with the most predictions in the horizon are kept."""

    max_models: int = 200
    max_versions_per_model: int = 5
    max_features_per_model: int = 200


DETAIL_LEVELS = ("default", "methods", "all")
"""How many series per feature (docs/metrics.md): ``default`` what alerts and dashboards need (at most 6: the
decision, its p-value or deciding score, one effect size, and only what is wrong: withheld, non-zero quality
ratios); ``methods`` adds every method's score and decision; ``all`` adds thresholds, sample counts and the
zero-valued quality ratios and ``withheld{reason="none"}``."""


@dataclass(frozen=True)
class ExportConfig:
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    otlp: OtlpMetricExportConfig = field(default_factory=OtlpMetricExportConfig)
    cardinality: CardinalityConfig = field(default_factory=CardinalityConfig)
    detail: str = "default"
    """Series per feature, for every model: one of DETAIL_LEVELS."""
    detail_for: dict[str, str] = field(default_factory=dict)
    """Exceptions to ``detail``: ``{"MODEL/FEATURE": level}`` with shell-style wildcards (``"fraud/*"``,
    ``"*/amount"``); a key without ``/`` means every feature of that model. The most specific (longest) matching
    key wins."""
    distribution: bool = False
    """Also export how each feature's current horizon looks: ``ml_feature_mean`` and ``ml_feature_quantile``
    (p5, p50, p95) for numbers, ``ml_feature_category_share`` of the 5 most frequent categories: up to 4 (numeric)
    or 5 (categorical) series more per feature, within the cardinality caps, so a Grafana panel can show how a
    feature moved."""
    effect_size: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_EFFECT_SIZE))
    """The one distance exported per feature at ``default`` detail, by feature kind: Wasserstein-1 in reference
    standard deviations for numbers (reads as "moved by x sigma"), Jensen-Shannon distance for categories."""
