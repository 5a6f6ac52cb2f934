"""``otel-ml serve``: the processor."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

# Heavier modules (config: scipy, sqlite, yaml...) are imported inside the commands: receiver worker processes
# are spawned, and a spawned process imports the parent's main module, which is this one.
SERVE_HELP = """\
Run the processor: receive prediction spans over OTLP/gRPC and OTLP/HTTP, keep per-feature sketches in tumbling
event-time windows, compare the trailing horizon with each model's reference, and export drift,
data-quality and volume metrics (Prometheus pull endpoint, optional OTLP push).

Settings come from defaults, then OTEL_ML_* environment variables, then --config, then flags.
Environment variables: """


def _add_serve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config file (sample: examples/otel-ml.yaml)")
    p.add_argument("--otlp-grpc-endpoint", metavar="HOST:PORT",
                   help="where to receive OTLP/gRPC trace exports (default 127.0.0.1:4317)")
    p.add_argument("--otlp-http-endpoint", metavar="HOST:PORT",
                   help="where to receive OTLP/HTTP trace exports, POST /v1/traces (default 127.0.0.1:4318)")
    p.add_argument("--no-otlp-http", action="store_true", help="do not start the OTLP/HTTP receiver")
    p.add_argument("--kafka-brokers", metavar="HOST:PORT[,HOST:PORT]",
                   help="also consume OTLP messages from Kafka (the Collector's kafka exporter, otlp_proto)")
    p.add_argument("--kafka-topic", metavar="TOPIC", help="Kafka topic (default otel-ml-spans)")
    p.add_argument("--kafka-group", metavar="GROUP", help="Kafka consumer group (default otel-ml)")
    p.add_argument("--kafka-logs-topic", metavar="TOPIC",
                   help="also consume ground truth as OTLP log records from this topic (the kafka exporter's logs)")
    p.add_argument("--kafka-changelog-topic", metavar="TOPIC",
                   help="shared mode: replicas in the group share models, state in this compacted topic "
                        "(docs/scaling.md)")
    p.add_argument("--kinesis-stream", metavar="STREAM",
                   help="also read OTLP records from this Kinesis data stream (the Collector's awskinesis exporter)")
    p.add_argument("--kinesis-region", metavar="REGION", help="the stream's AWS region (default: the AWS way)")
    p.add_argument("--kinesis-endpoint", metavar="URL",
                   help="Kinesis endpoint URL (a VPC endpoint, a Kinesis-compatible server); default: the region's")
    p.add_argument("--receiver-processes", type=int, metavar="N",
                   help="processes receiving and decoding OTLP/gRPC, and decoding Kafka messages, beside the main "
                        "one (default -1: one per extra CPU, at most 4; 0: one process)")
    p.add_argument("--prometheus-endpoint", metavar="HOST:PORT",
                   help="Prometheus pull endpoint, served at /metrics (default 127.0.0.1:9464)")
    p.add_argument("--ui-endpoint", metavar="HOST:PORT",
                   help="the built-in pages and JSON API, /api/v1 (default 127.0.0.1:9465)")
    p.add_argument("--no-ui", action="store_true", help="do not start the pages and JSON API")
    p.add_argument("--otlp-metrics-endpoint", metavar="URL",
                   help="also push metrics over OTLP/gRPC to this endpoint, e.g. http://127.0.0.1:4317")
    p.add_argument("--baseline-dir", metavar="DIR",
                   help="directory of files from 'otel-ml baseline build' (any name; each says its model)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="where state is kept across restarts: journal, checkpoints, pinned references "
                        "(default ./otel-ml-state)")
    p.add_argument("--window", type=float, metavar="SECONDS", help="tumbling window length (default 60)")
    p.add_argument("--horizon", type=float, metavar="SECONDS",
                   help="trailing horizon compared with the reference; a whole number of windows (default 900). "
                        "Drift only: performance has its own (performance.horizon_seconds, default 86400)")
    p.add_argument("--evaluation-interval", type=float, metavar="SECONDS",
                   help="how often drift is recomputed (default 10)")
    p.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO (default), WARNING")


def _serve_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {
        "receiver.otlp_grpc.endpoint": args.otlp_grpc_endpoint,
        "receiver.otlp_http.endpoint": args.otlp_http_endpoint,
        "receiver.otlp_http.enabled": False if args.no_otlp_http else None,
        "receiver.otlp_grpc.worker_processes": args.receiver_processes,
        "receiver.kafka.decode_processes": args.receiver_processes,
        "receiver.kafka.brokers": args.kafka_brokers,
        "receiver.kafka.topic": args.kafka_topic,
        "receiver.kafka.group": args.kafka_group,
        "receiver.kafka.changelog_topic": args.kafka_changelog_topic,
        "receiver.kafka.logs_topic": args.kafka_logs_topic,
        "receiver.kinesis.decode_processes": args.receiver_processes,
        "receiver.kinesis.stream": args.kinesis_stream,
        "receiver.kinesis.region": args.kinesis_region,
        "receiver.kinesis.endpoint": args.kinesis_endpoint,
        "export.prometheus.endpoint": args.prometheus_endpoint,
        "export.otlp.endpoint": args.otlp_metrics_endpoint,
        "ui.endpoint": args.ui_endpoint,
        "ui.enabled": False if args.no_ui else None,
        "baseline_dir": args.baseline_dir,
        "state.dir": args.state_dir,
        "windows.window_seconds": args.window,
        "windows.horizon_seconds": args.horizon,
        "evaluation.interval_seconds": args.evaluation_interval,
        "log_level": args.log_level,
    }


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_serve(args: argparse.Namespace) -> int:
    from otel_ml.config import load_config
    from otel_ml.service import ProcessorService

    cfg = load_config(args.config, _serve_overrides(args))
    _setup_logging(cfg.log_level)
    service = ProcessorService(cfg)
    try:
        service.start()
    except (RuntimeError, OSError) as e:
        print(f"otel-ml serve: {e}", file=sys.stderr)
        return 2
    http = (f"OTLP/HTTP on {cfg.receiver.otlp_http.endpoint.rpartition(':')[0]}:{service.http_receiver.port}, "
            if service.http_receiver is not None else "")
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):  # before the line below: a supervisor may signal right after it
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGHUP, lambda *_: service.request_reload())  # read the baseline directory again
    ui = (f", UI on {'https' if cfg.receiver.tls.enabled else 'http'}://"
          f"{cfg.ui.endpoint.rpartition(':')[0]}:{service.ui.port}/" if service.ui is not None else "")
    kafka = cfg.receiver.kafka
    grpc = (f"OTLP/gRPC on {cfg.receiver.otlp_grpc.endpoint.rpartition(':')[0]}:{service.receiver.port}, "
            + (f"Kafka topic {kafka.topic}" + (f" (shared, changelog {kafka.changelog_topic})"
                                               if kafka.changelog_topic else "") + ", " if kafka.enabled else "")
            + (f"Kinesis stream {cfg.receiver.kinesis.stream}, " if cfg.receiver.kinesis.enabled else ""))
    print(f"otel-ml serving: {grpc}{http}Prometheus on "
          f"{cfg.export.prometheus.endpoint.rpartition(':')[0]}:{service.exporter.prometheus_port}/metrics{ui}",
          flush=True)
    stop.wait()
    started = time.monotonic()
    print(f"otel-ml stopping ({received[0] if received else 'stop requested'}): finishing requests in progress, "
          "writing state", flush=True)
    service.shutdown()
    print(f"otel-ml stopped in {time.monotonic() - started:.1f} s; state in {cfg.state.dir}", flush=True)
    _exit_after_shutdown(0)
    return 0


def _exit_after_shutdown(code: int) -> None:
    """Leave once the service has stopped in order (state written, worker processes stopped), without the
    interpreter's finalization: there, datasketches' nanobind bindings list every sketch a daemon thread still
    references ("nanobind: leaked 133 instances", ~60 lines on stderr), which is harmless at exit (the memory goes
    with the process) and noise in every supervisor's log."""
    import multiprocessing

    for child in multiprocessing.active_children():  # none after an orderly stop; a straggler goes with us
        child.kill()
        child.join(5)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)



def add_commands(sub: argparse._SubParsersAction, env_vars: dict[str, str]) -> None:
    serve_help = SERVE_HELP + ", ".join(f"{k} ({v})" for k, v in env_vars.items())
    serve = sub.add_parser("serve", help="run the processor", description=serve_help,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_serve_flags(serve)
    serve.set_defaults(func=cmd_serve)
