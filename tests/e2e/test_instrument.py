"""The instrumentation imports with opentelemetry-api alone (a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys


def test_instrumentation_imports_with_the_api_alone() -> None:
    code = ("import sys; import otel_ml.instrument; "
            "bad = [m for m in ('numpy', 'datasketches', 'opentelemetry.sdk', 'grpc', 'scipy') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
