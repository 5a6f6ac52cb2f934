"""``otel-ml demo``: the processor and generated traffic with a drift partway through."""

from __future__ import annotations

import argparse


def cmd_demo(a: argparse.Namespace) -> int:
    from otel_ml.demo import run_demo

    return run_demo(a.duration, a.drift_after, a.otlp_grpc_endpoint, a.prometheus_endpoint, a.rate,
                    a.ui_endpoint)


def add_commands(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="processor plus generated traffic with a drift partway through")
    demo.add_argument("--duration", type=float, default=120.0, help="seconds to run (default 120)")
    demo.add_argument("--drift-after", type=float, default=50.0, help="seconds before the drift starts")
    demo.add_argument("--otlp-grpc-endpoint", default="127.0.0.1:4317", metavar="HOST:PORT",
                      help="where the demo's processor receives spans (default 127.0.0.1:4317)")
    demo.add_argument("--prometheus-endpoint", default="127.0.0.1:9464", metavar="HOST:PORT",
                      help="where it serves /metrics (default 127.0.0.1:9464)")
    demo.add_argument("--ui-endpoint", default="127.0.0.1:9465", metavar="HOST:PORT",
                      help="where it serves its pages (default 127.0.0.1:9465)")
    demo.add_argument("--rate", type=float, default=300.0, help="predictions per second")
    demo.set_defaults(func=cmd_demo)
