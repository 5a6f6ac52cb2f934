"""Config: precedence (defaults, environment, file, flags), validation with the key named, renamed keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from otel_ml.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_precedence_defaults_env_file_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("windows:\n  window_seconds: 30\nexport:\n  prometheus:\n    endpoint: 127.0.0.1:9999\n")
    env = {"OTEL_ML_PROMETHEUS_ENDPOINT": "127.0.0.1:1111", "OTEL_ML_STATE_DIR": "/tmp/from-env"}
    cfg = load_config(f, {"windows.horizon_seconds": 300}, environ=env)
    assert cfg.windows.window_seconds == 30.0  # file over default
    assert cfg.export.prometheus.endpoint == "127.0.0.1:9999"  # file over env
    assert cfg.state.dir == "/tmp/from-env"  # env over default
    assert cfg.windows.horizon_seconds == 300.0  # flag
    assert load_config(f, {"windows.window_seconds": 10}, environ={}).windows.window_seconds == 10.0


def test_defaults_are_loopback() -> None:
    cfg = load_config(environ={})
    assert cfg.receiver.otlp_grpc.endpoint == "127.0.0.1:4317"
    assert cfg.export.prometheus.endpoint == "127.0.0.1:9464"


@pytest.mark.parametrize("text,message", [
    ("windows:\n  windw_seconds: 3\n", "unknown setting 'windows.windw_seconds'"),
    ("drift:\n  alpha: lots\n", "drift.alpha: expected a number"),
    ("windows: [1, 2]\n", "windows: expected a mapping"),
    ("a: [\n", "not valid YAML"),
    # The first hour's mistakes (issue 15): each fails at start, naming the key.
    ("windows:\n  window_seconds: null\n", "windows.window_seconds: a value is required"),
    ("evaluation:\n  interval_seconds: 0\n", "evaluation.interval_seconds: must be > 0"),
    ("drift:\n  alpha: 5\n", "drift.alpha: a significance level in (0, 1)"),
    ("drift:\n  expected_run_days: 0\n", "drift.expected_run_days: must be > 0"),
    ("drift:\n  alert_for_seconds: 1\n", "drift.alert_for_seconds: at least one evaluation interval"),
    ("drift:\n  min_samples: -5\n", "drift.min_samples: must be a finite number >= 0"),
    ("log_level: LOUD\n", "log_level: one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("windows:\n  window_seconds: 60\n  horizon_seconds: 90\n", "windows.horizon_seconds: a whole number of windows"),
    ("receiver:\n  otlp_grpc:\n    endpoint: nonsense\n", "receiver.otlp_grpc.endpoint: HOST:PORT"),
    ("sketch:\n  kll_k: 2\n", "sketch.kll_k: in [8, 65535]"),
    ("http:\n  max_connections: 0\n", "http.max_connections: must be > 0"),
    ("export:\n  otlp:\n    temporality: sometimes\n", "export.otlp.temporality: cumulative or delta"),
    ("drift:\n  thresholds:\n    pis: 0.2\n", "drift.thresholds.pis: a distance method"),
    ("drift:\n  thresholds:\n    ndcg: 1.5\n", "drift.thresholds.ndcg: an NDCG in (0, 1]"),
    ("drift:\n  thresholds:\n    psi: -1\n", "drift.thresholds.psi: a finite number >= 0"),
    ("drift:\n  thresholds:\n", "drift.thresholds: a mapping of method to threshold"),
    ("ui:\n  trace_url: http://jaeger/trace/\n", "ui.trace_url: empty, or an http(s) URL with {trace_id}"),
    ("ui:\n  trace_url: 'http://j/{traceId}'\n", "ui.trace_url: empty, or an http(s) URL with {trace_id}"),
    ("ui:\n  trace_url: 'http://j/{trace_id}/{x}'\n", "ui.trace_url: empty, or an http(s) URL with {trace_id}"),
])


def test_bad_config_says_where(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(f, environ={})


def test_sample_config_loads() -> None:
    cfg = load_config(REPO / "examples" / "otel-ml.yaml", environ={})
    assert cfg.windows.window_seconds == 60.0 and cfg.drift.alpha is None
    assert 2.3e-4 < cfg.drift.evaluation_alpha < 2.4e-4  # 10 minutes / 30 days


def test_a_renamed_key_still_works_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("limits:\n  max_features_per_model: 7\n")
    assert load_config(f, environ={}).limits.max_profiled_features_per_model == 7
    assert "'limits.max_features_per_model' is deprecated" in caplog.text
    f.write_text("limits:\n  max_features_per_model: 7\n  max_profiled_features_per_model: 8\n")
    with pytest.raises(ConfigError, match="both set"):
        load_config(f, environ={})
    # A setting moved to another section: limits.max_models is models.max_models now.
    f.write_text("limits:\n  max_models: 4\n")
    assert load_config(f, environ={}).models.max_models == 4
    assert load_config(overrides={"limits.max_models": 6}, environ={}).models.max_models == 6
    # The export cap of the same old name is another setting and keeps its name.
    f.write_text("export:\n  cardinality:\n    max_features_per_model: 9\n")
    assert load_config(f, environ={}).export.cardinality.max_features_per_model == 9


def test_the_decoder_gets_only_its_own_limits() -> None:
    from otel_ml.decode import DecodeLimits

    limits = load_config(overrides={"limits.max_batch_size": 5, "limits.max_inflight_bytes": 3}, environ={}).limits
    decode = limits.decode_limits()
    assert type(decode) is DecodeLimits and decode.max_batch_size == 5
    assert not hasattr(decode, "max_inflight_bytes") and limits.max_inflight_bytes == 3


def test_merge_copies_and_rejects_wrong_types() -> None:
    base = load_config(environ={})
    changed = load_config(overrides={"receiver.otlp_grpc.endpoint": "127.0.0.1:1"}, environ={})
    assert base.receiver.otlp_grpc.endpoint == "127.0.0.1:4317"  # defaults untouched
    assert changed.receiver.otlp_grpc.endpoint == "127.0.0.1:1"
    with pytest.raises(ConfigError, match=r"state\.durable: expected true/false"):
        load_config(overrides={"state.durable": "maybe"}, environ={})
    with pytest.raises(ConfigError, match=r"models\.max_models: expected an integer"):
        load_config(overrides={"models.max_models": "many"}, environ={})
    with pytest.raises(ConfigError, match=r"models\.when_full: one of release_idlest, refuse"):
        load_config(overrides={"models.when_full": "panic"}, environ={})
