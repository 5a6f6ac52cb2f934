"""``otel-ml``: one module per command group (serve, labels, replay, baseline and compare, report, archive and
models, demo), each with ``add_commands(sub)`` and its ``cmd_*`` functions; ``common`` holds what they share.

Heavier modules (config: scipy, sqlite, yaml...) are imported inside the commands: receiver worker processes are
spawned, and a spawned process imports the parent's main module, which may be this package's ``__main__``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from otel_ml.cli import archive, baseline, demo, labels, replay, report, serve
from otel_ml.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    from importlib.metadata import PackageNotFoundError, version

    parser = argparse.ArgumentParser(prog="otel-ml", description="ML model monitoring built into OpenTelemetry.")
    try:
        parser.add_argument("--version", action="version", version=f"otel-ml {version('otel-ml')}")
    except PackageNotFoundError:  # running from a source tree that was not installed
        parser.add_argument("--version", action="version", version="otel-ml (not installed)")
    sub = parser.add_subparsers(dest="command", required=True)

    try:
        from otel_ml.config import ENV_VARS
    except ModuleNotFoundError as e:  # `pip install otel-ml` is the instrumentation alone
        print(f"otel-ml: the processor's dependencies are not installed ({e.name} is missing): "
              "pip install 'otel-ml[processor]'", file=sys.stderr)
        return 2

    serve.add_commands(sub, ENV_VARS)
    labels.add_commands(sub)
    replay.add_commands(sub)
    baseline.add_commands(sub)
    report.add_commands(sub)
    archive.add_commands(sub)
    demo.add_commands(sub)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, ValueError, RuntimeError) as e:
        print(f"otel-ml: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a missing file, a directory given as a file, no permission
        print(f"otel-ml: {e.filename}: {e.strerror}" if e.filename else f"otel-ml: {e}", file=sys.stderr)
        return 2


__all__ = ["main"]
