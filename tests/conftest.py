"""Shared helpers: free loopback ports, an `otel-ml serve` subprocess, Prometheus scraping."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings
from prometheus_client.parser import text_string_to_metric_families

# The fuzz target needs atheris, which only scripts/fuzz-decoder.sh installs; it is not a test module.
collect_ignore = ["fuzz_decoder.py"]

# CI: the same generated examples every run, so a red run is reproducible and not a roll of the dice.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def scrape(port: int) -> list[Sample]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return [Sample(s.name, dict(s.labels), s.value)
            for fam in text_string_to_metric_families(text) for s in fam.samples]


def select(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


@dataclass
class ServeProcess:
    grpc_port: int
    prom_port: int
    http_port: int
    state_dir: Path
    proc: subprocess.Popen
    log: list[str] = field(default_factory=list)
    ui_port: int = 0

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def scrape(self) -> list[Sample]:
        return scrape(self.prom_port)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_serve(state_dir: Path, *extra: str, timeout: float = 30.0, grpc_port: int | None = None,
                prom_port: int | None = None, ui_port: int | None = None) -> ServeProcess:
    """Start `otel-ml serve` on loopback ports (free ones unless given: a restart reuses its ports) and wait
    until it says it is serving."""
    grpc_port, prom_port, http_port = grpc_port or free_port(), prom_port or free_port(), free_port()
    ui_port = ui_port or free_port()
    cmd = [sys.executable, "-m", "otel_ml.cli", "serve", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
           "--otlp-http-endpoint", f"127.0.0.1:{http_port}", "--ui-endpoint", f"127.0.0.1:{ui_port}",
           "--prometheus-endpoint", f"127.0.0.1:{prom_port}", "--state-dir", str(state_dir), *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    sp = ServeProcess(grpc_port, prom_port, http_port, state_dir, proc, ui_port=ui_port)
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sp.log.append(line)
            if line.startswith("otel-ml serving"):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if proc.poll() is not None or time.monotonic() > deadline:
            sp.stop()
            raise RuntimeError("otel-ml serve did not start:\n" + "".join(sp.log))
    return sp


@pytest.fixture()
def serve_factory(tmp_path: Path) -> Iterator:
    started: list[ServeProcess] = []

    def factory(*extra: str, state_dir: Path | None = None, **ports: int) -> ServeProcess:
        sp = start_serve(state_dir or tmp_path / "state", *extra, **ports)
        started.append(sp)
        return sp

    yield factory
    for sp in started:
        sp.stop()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.5, what: str = "condition"):
    """Poll until predicate() returns something truthy; returns it or fails with `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")
