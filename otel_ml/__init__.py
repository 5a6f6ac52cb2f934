"""otel-ml: ML model monitoring built into OpenTelemetry.

The public surface, what users and other tools may rely on:

- ``otel_ml.instrument`` (``ModelMonitor``): serving code records predictions as spans; needs opentelemetry-api
  only;
- ``otel_ml.semconv``: the span attribute and metric names;
- the ``otel-ml`` command, its YAML configuration (examples/otel-ml.yaml), the span attributes it reads
  (docs/semantic-conventions.md) and the metrics it exports (docs/metrics.md).

Everything else (``config``, ``service``, ``cli``, ``receiver``, ``decode``, ``profile``, ``analyze``,
``export``, ``store``) is the processor's own code: importable, but it may change in any release.
"""
