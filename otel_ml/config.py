"""One YAML file configures the processor; every section maps onto a component's config dataclass.

Precedence, lowest first: built-in defaults, ``OTEL_ML_*`` environment variables, the config file,
command-line flags. ``examples/otel-ml.yaml`` is the commented sample.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from otel_ml.analyze.drift import DriftConfig
from otel_ml.decode.otlp import DecodeLimits
from otel_ml.decode.privacy import PrivacyConfig
from otel_ml.errors import ConfigError
from otel_ml.export.config import ExportConfig
from otel_ml.http_server import HttpServerConfig
from otel_ml.profile.lifecycle import WHEN_FULL, ModelsConfig
from otel_ml.profile.sketch import SketchConfig
from otel_ml.profile.window import WindowConfig
from otel_ml.receiver.config import ReceiverConfig
from otel_ml.store.archive import ArchiveConfig

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

    def decode_limits(self) -> DecodeLimits:
        """The decoder's part, as a plain DecodeLimits (what receiver worker processes are given)."""
        return DecodeLimits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DecodeLimits)})


RENAMED_KEYS = {"limits.max_features_per_model": "limits.max_profiled_features_per_model",
                "limits.max_models": "models.max_models"}
"""Old setting → its new name: still accepted, with a warning."""


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
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    http: HttpServerConfig = field(default_factory=HttpServerConfig)
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
        cfg = _merge(cfg, _renamed(data) if isinstance(data, dict) else data)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            cfg = _merge(cfg, _renamed(_dotted(dotted, value)))
    if cfg.models.when_full not in WHEN_FULL:
        raise ConfigError(f"models.when_full: one of {', '.join(WHEN_FULL)}, got {cfg.models.when_full!r}")
    if cfg.models.max_models < 1 or cfg.models.idle_ttl_seconds <= 0:
        raise ConfigError("models: need max_models >= 1 and idle_ttl_seconds > 0")
    if cfg.windows.window_seconds <= 0 or cfg.windows.horizon_seconds < cfg.windows.window_seconds:
        raise ConfigError("windows: need window_seconds > 0 and horizon_seconds >= window_seconds")
    methods = {"auto", "ks", "chi2", "psi", "js", "hellinger", "wasserstein", "linf"}
    for key, entry in cfg.drift.features.items():
        if not isinstance(entry, dict) or not set(entry) <= {"method", "threshold"}:
            raise ConfigError(f"drift.features.{key}: expected a mapping with method and/or threshold")
        if entry.get("method", "auto") not in methods:
            raise ConfigError(f"drift.features.{key}.method: one of {', '.join(sorted(methods))}")
    return cfg
