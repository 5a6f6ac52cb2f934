"""Real external processes for integration tests: the Collector built from our manifest, a Prometheus server.

Each is skipped with a clear message when it is not installed, and fails instead under CI=true (CI runs
scripts/setup-test-deps.sh, so a missing binary there is a setup bug, not a reason to skip).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
COLLECTOR = REPO / "build" / "otelcol-ml"


def require(what: str, present: bool, how: str) -> None:
    if present:
        return
    message = f"{what} is not installed ({how})"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " — CI must have it: scripts/setup-test-deps.sh")
    pytest.skip(message)


def require_collector() -> Path:
    require("the OpenTelemetry Collector", COLLECTOR.exists(), "scripts/build-collector.sh builds it; needs Go")
    return COLLECTOR


def require_prometheus() -> str:
    path = shutil.which("prometheus")
    require("Prometheus", path is not None, "Debian package prometheus; scripts/setup-test-deps.sh")
    return path  # type: ignore[return-value]


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text() if log else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s:\n{log.read_text() if log else ''}")


@dataclass
class Process:
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_collector(config: Path, workdir: Path, env: dict[str, str], name: str = "otelcol") -> tuple[Process, int]:
    """Start the Collector with ``config``; returns the process and its self-metrics port (ready when open)."""
    binary = require_collector()
    self_port = free_port()
    full_env = {**os.environ, "OTELCOL_SELF_METRICS_PORT": str(self_port), **env}
    log = workdir / f"{name}.log"
    proc = subprocess.Popen([str(binary), "--config", str(config)], env=full_env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    p = Process(proc, log)
    wait_port(self_port, proc=proc, log=log)
    return p, self_port


@dataclass
class Prometheus:
    process: Process
    port: int

    def query(self, promql: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        body = json.loads(urllib.request.urlopen(url, timeout=10).read())
        assert body["status"] == "success", body
        return body["data"]["result"]


def start_prometheus(workdir: Path, targets: list[str], rule_files: list[Path] = ()) -> Prometheus:
    binary = require_prometheus()
    port = free_port()
    cfg = workdir / "prometheus.yml"
    rules = "".join(f"  - {p}\n" for p in rule_files)
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        + (f"rule_files:\n{rules}" if rule_files else "")
        + "scrape_configs:\n  - job_name: otel-ml\n    static_configs:\n      - targets: ["
        + ", ".join(f"'{t}'" for t in targets) + "]\n")
    log = workdir / "prometheus.log"
    proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    p = Process(proc, log)
    wait_port(port, proc=proc, log=log)
    return Prometheus(p, port)
