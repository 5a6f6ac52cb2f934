"""Fixtures and settings of every test; the helpers they use are in tests/support.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support import ServeProcess, start_serve

# The fuzz target needs atheris, which only scripts/fuzz-decoder.sh installs; it is not a test module.
collect_ignore = ["fuzz_decoder.py"]

# CI: the same generated examples every run, so a red run is reproducible and not a roll of the dice.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tests/unit: in process, no process started (``-m unit``, under a minute); tests/e2e: `otel-ml serve`,
    Kafka, the Collector, Prometheus, chromium (``-m e2e``)."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "unit" in parts:
            item.add_marker(pytest.mark.unit)
        elif "e2e" in parts:
            item.add_marker(pytest.mark.e2e)


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
