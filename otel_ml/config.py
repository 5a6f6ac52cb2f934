"""One YAML file configures the processor; every section maps onto a component's config dataclass.

Precedence, lowest first: built-in defaults, ``OTEL_ML_*`` environment variables, the config file,
command-line flags. ``examples/otel-ml.yaml`` is the commented sample.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from otel_ml.analyze.drift import DriftConfig
from otel_ml.decode.otlp import DecodeLimits
from otel_ml.profile.sketch import SketchConfig
from otel_ml.profile.window import WindowConfig
from otel_ml.store.archive import ArchiveConfig


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class OtlpGrpcReceiverConfig:
    endpoint: str = "127.0.0.1:4317"
    max_message_bytes: int = 64 * 1024 * 1024
    """Requests over this size are refused with RESOURCE_EXHAUSTED (the OTLP answer for too large)."""
    max_workers: int = 16
    """Threads taking requests; admission beyond ``limits.max_inflight_*`` is refused, not queued."""
    worker_processes: int = -1
    """Processes that receive and decode OTLP/gRPC requests beside the main process, which applies them (see
    receiver/workers.py): ingest then uses more than one core. -1: one per CPU beyond the first, at most 4
    (0 on a 1-CPU machine); 0: receive and decode in the main process."""

    def worker_count(self) -> int:
        if self.worker_processes >= 0:
            return self.worker_processes
        return max(0, min(4, available_cpus() - 1))


def available_cpus() -> int:
    """CPUs this process may use: its affinity, and a container's CPU quota (cgroup v2 ``cpu.max``), which
    affinity does not show (a pod limited to 1 CPU on a 16-CPU node sees 16 in its affinity)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))  # ceil
    except (OSError, ValueError):
        pass
    return cpus


@dataclass(frozen=True)
class OtlpHttpReceiverConfig:
    enabled: bool = True
    endpoint: str = "127.0.0.1:4318"
    """Serves POST /v1/traces (binary protobuf or JSON, optionally gzip)."""
    max_message_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class PrometheusConfig:
    enabled: bool = True
    endpoint: str = "127.0.0.1:9464"
    """host:port of the pull endpoint; metrics are served at /metrics."""


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


@dataclass(frozen=True)
class ExportConfig:
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    otlp: OtlpMetricExportConfig = field(default_factory=OtlpMetricExportConfig)
    cardinality: CardinalityConfig = field(default_factory=CardinalityConfig)


@dataclass(frozen=True)
class TlsConfig:
    """TLS on both receivers when cert_file and key_file are set; mutual TLS when client_ca_file is set too."""

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    """CA that client certificates must chain to; set: clients without such a certificate are refused."""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file and self.key_file)


@dataclass(frozen=True)
class AuthConfig:
    """Bearer-token authentication on both receivers (``authorization: Bearer <token>``)."""

    bearer_token_env: str | None = None
    """Name of the environment variable holding the token (keeps the secret out of the config file)."""
    bearer_token_file: str | None = None

    def token(self) -> str | None:
        if self.bearer_token_env:
            value = os.environ.get(self.bearer_token_env)
            if not value:
                raise ConfigError(f"receiver.auth: environment variable {self.bearer_token_env} is empty")
            return value
        if self.bearer_token_file:
            return Path(self.bearer_token_file).read_text().strip()
        return None


@dataclass(frozen=True)
class ReceiverConfig:
    otlp_grpc: OtlpGrpcReceiverConfig = field(default_factory=OtlpGrpcReceiverConfig)
    otlp_http: OtlpHttpReceiverConfig = field(default_factory=OtlpHttpReceiverConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)


@dataclass(frozen=True)
class EvaluationConfig:
    interval_seconds: float = 10.0
    """How often drift is recomputed over the current horizon."""


@dataclass(frozen=True)
class PrivacyConfig:
    """Keyed hashing (HMAC-SHA256) of categorical values before they are sketched: sketches, baselines and
    metrics then never hold the raw values (e-mail addresses, user ids). Drift statistics are unchanged,
    because hashing keeps categories distinct. Baselines must be built with the same key
    (``otel-ml baseline build --hash-key-env``)."""

    hash_key_env: str | None = None
    """Name of the environment variable holding the key; unset: no hashing."""
    hash_features: list[str] = field(default_factory=list)
    """Features to hash; empty: every categorical feature."""


@dataclass(frozen=True)
class StateConfig:
    dir: str = "./otel-ml-state"
    """Where the processor keeps what must survive a restart: journal, checkpoints, pinned references."""
    durable: bool = True
    """Answer an OTLP export only once it is on disk (journal + fsync). Off: faster, loses data on a crash."""
    checkpoint_interval_seconds: float = 30.0
    """How often the whole state is written, bounding how much journal a restart replays."""
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    """Windows that leave the horizon are archived here, compacted by merging as they age."""


@dataclass(frozen=True)
class ServiceConfig:
    receiver: ReceiverConfig = field(default_factory=ReceiverConfig)
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    windows: WindowConfig = field(default_factory=WindowConfig)
    sketch: SketchConfig = field(default_factory=SketchConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    baseline_dir: str | None = None
    """Directory of baseline files written by ``otel-ml baseline build`` (any file name)."""
    state: StateConfig = field(default_factory=StateConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    instance_id: str | None = None
    """``service.instance.id`` of the exported metrics; default: host name and process id."""
    log_level: str = "INFO"


# Environment variables and the field (dotted path) each sets.
ENV_VARS = {
    "OTEL_ML_OTLP_GRPC_ENDPOINT": "receiver.otlp_grpc.endpoint",
    "OTEL_ML_OTLP_HTTP_ENDPOINT": "receiver.otlp_http.endpoint",
    "OTEL_ML_PROMETHEUS_ENDPOINT": "export.prometheus.endpoint",
    "OTEL_ML_OTLP_METRICS_ENDPOINT": "export.otlp.endpoint",
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
        if dataclasses.is_dataclass(current):
            changes[key] = _merge(current, value or {}, where)
        elif value is None or current is None:
            changes[key] = value
        else:
            changes[key] = _coerce(value, current, where)
    return dataclasses.replace(obj, **changes)


def _dotted(path: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


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
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        cfg = _merge(cfg, data)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            cfg = _merge(cfg, _dotted(dotted, value))
    if cfg.windows.window_seconds <= 0 or cfg.windows.horizon_seconds < cfg.windows.window_seconds:
        raise ConfigError("windows: need window_seconds > 0 and horizon_seconds >= window_seconds")
    methods = {"auto", "ks", "chi2", "psi", "js", "hellinger", "wasserstein", "linf"}
    for key, entry in cfg.drift.features.items():
        if not isinstance(entry, dict) or not set(entry) <= {"method", "threshold"}:
            raise ConfigError(f"drift.features.{key}: expected a mapping with method and/or threshold")
        if entry.get("method", "auto") not in methods:
            raise ConfigError(f"drift.features.{key}.method: one of {', '.join(sorted(methods))}")
    return cfg
