"""`pip install otel-ml` is the instrumentation alone (opentelemetry-api); the processor is an extra. Installed
for real into a fresh virtual environment (the package registry is reachable here and in CI)."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_client_installs_without_the_processor_and_the_cli_says_what_is_missing(tmp_path: Path) -> None:
    env_dir = tmp_path / "client-venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO)],
                   check=True, capture_output=True, timeout=600)
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                               text=True, check=True).stdout
    heavy = [p for p in ("numpy", "scipy", "grpcio", "datasketches", "opentelemetry-sdk", "aiohttp")
             if f"\n{p}==" in "\n" + installed.lower()]
    assert not heavy, heavy
    code = ("from otel_ml.instrument import ModelMonitor; m = ModelMonitor('churn', '3'); "
            "m.record({'age': 42, 'plan': 'pro'}, prediction=1); "
            "m.record_batch({'age': [1, 2]}, predictions=[0, 1]); print('recorded', m.dropped_values)")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "recorded 0", out.stderr
    serve = subprocess.run([str(env_dir / "bin" / "otel-ml"), "serve"], capture_output=True, text=True, timeout=60)
    assert serve.returncode == 2 and "pip install 'otel-ml[processor]'" in serve.stderr, serve.stderr
