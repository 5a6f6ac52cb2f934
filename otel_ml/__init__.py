"""otel-ml: ML model monitoring built into OpenTelemetry.

The public surface, what users and other tools may rely on:

- ``otel_ml.instrument`` (``ModelMonitor``): serving code records predictions as spans; needs opentelemetry-api
  only;
- ``otel_ml.semconv``: the span attribute and metric names;
- ``otel_ml.Client`` (the JSON API of a running processor, as DataFrames) and ``otel_ml.compare`` (the drift
  table of two profile files), for notebooks (``otel_ml.notebook``);
- the ``otel-ml`` command, its YAML configuration (examples/otel-ml.yaml), the span attributes it reads
  (docs/semantic-conventions.md) and the metrics it exports (docs/metrics.md).

Everything else (``config``, ``service``, ``cli``, ``receiver``, ``decode``, ``profile``, ``analyze``,
``export``, ``store``, ``ui``) is the processor's own code: importable, but it may change in any release.
"""

from typing import Any

__all__ = ["Client", "compare"]


def __getattr__(name: str) -> Any:
    # Imported on use: ``import otel_ml`` must work with opentelemetry-api alone (the instrumentation).
    if name in __all__:
        from otel_ml import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'otel_ml' has no attribute {name!r}")
