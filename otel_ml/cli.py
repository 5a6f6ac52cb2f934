"""``otel-ml``: serve, baseline build, demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from otel_ml.errors import ConfigError
from otel_ml.read.names import printable

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


def cmd_labels_send(args: argparse.Namespace) -> int:
    from otel_ml.instrument.labels import read_labels, send_labels
    from otel_ml.instrument.outcome import api_url, report_outcome

    ids, values, times = read_labels(args.input, args.id_column, args.label_column, args.time_column,
                                     args.time_resolution)
    done: list[tuple[int, int]] = []

    def send() -> None:
        done.append(send_labels(args.endpoint, args.model, args.model_version, ids, values, args.batch,
                                as_spans=args.as_signal == "spans", times=times))

    outcome = report_outcome(args.api or api_url(args.endpoint), args.model, args.model_version, len(ids), send,
                             args.wait)
    sent, rejected = done[0]
    print(f"sent {sent} label(s) for model {args.model!r} to {args.endpoint}"
          + (f"; rejected: {rejected}" if rejected else "") + (f"\n{outcome}" if outcome else ""))
    return 0 if not rejected else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from otel_ml.instrument.outcome import api_url, report_outcome
    from otel_ml.instrument.replay import ReplayColumns, build_replay, capture_table, replay_summary, send_replay

    table = None
    if args.format != "table":  # a platform's capture: its columns are known
        table, columns = capture_table(args.input, args.format, args.mapping)
    elif args.time_column is None:
        raise ValueError("--time-column is required (the time of each prediction) unless --format names a capture")
    else:
        columns = ReplayColumns(time=args.time_column, prediction=args.prediction_column, score=args.score_column,
                                probability=args.probability_column, prediction_id=args.id_column,
                                target=args.target_column, target_time=args.target_time_column,
                                features=args.feature, exclude=args.exclude or [],
                                class_probability=_class_columns(args.class_probability_column))
    replay = build_replay(args.input, args.model, args.model_version, columns, args.batch, args.time_resolution,
                          args.max_request_span, table)
    done: list[tuple[int, int]] = []
    outcome = report_outcome((args.api or api_url(args.endpoint)) if replay.labels else None, args.model,
                             args.model_version, replay.labels, lambda: done.append(send_replay(args.endpoint, replay)),
                             args.wait)
    sent, rejected = done[0]
    print(replay_summary(args.input, args.model, replay, args.endpoint, sent, rejected)
          + (f"\nof the {replay.labels} label(s): {outcome}" if outcome else ""))
    return 0 if not rejected else 1


def _time_range(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """``--from``/``--to`` in ns (None where not given); a ValueError naming both when ``--from`` is later."""
    from otel_ml.read.archive import parse_time_ns

    lo = parse_time_ns(start, "--from") if start else None
    hi = parse_time_ns(end, "--to") if end else None
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"--from {start} is later than --to {end}")
    return lo, hi


def _outcome_options(parser: argparse.ArgumentParser) -> None:
    """How ``labels send`` and ``replay`` learn what the processor did with the labels they sent."""
    parser.add_argument("--api", metavar="URL", help="the processor's JSON API, read back after sending to say what "
                                                     "became of the labels (default: http://HOST:9465, HOST of "
                                                     "--endpoint)")
    parser.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                        help="how long to wait for the processor to count them (default %(default)s; 0: do not ask)")


def _segment_bins(specs: list[str], segment_by: list[str] | None) -> dict[str, list[float]]:
    """``--segment-bins COL=E1,E2,...`` as {column: increasing edges}; ValueError naming what is wrong."""
    out: dict[str, list[float]] = {}
    for spec in specs:
        name, _, edges = spec.partition("=")
        try:
            values = [float(e) for e in edges.split(",") if e.strip()]
        except ValueError:
            values = []
        if not values or values != sorted(set(values)) or name not in (segment_by or []):
            raise ValueError(f"--segment-bins {spec!r}: want COL=E1,E2,... with increasing numbers, COL one of "
                             f"--segment-by ({', '.join(segment_by or []) or 'none given'})")
        out[name] = values
    return out


def _class_columns(pairs: list[str] | None) -> dict[str, str]:
    """``--class-probability-column CLASS=COLUMN`` (repeated) as class → column."""
    out = {}
    for pair in pairs or []:
        cls, sep, col = pair.partition("=")
        if not sep or not cls or not col:
            raise ValueError(f"--class-probability-column wants CLASS=COLUMN, got {pair!r}")
        out[cls] = col
    return out


@contextlib.contextmanager
def _reference_file(args: argparse.Namespace) -> Iterator[str]:
    """``--input``, or (``--format`` a capture) its rows' features and outputs as a Parquet file for as long as the
    baseline is built: one profiling path for every reference."""
    if args.format == "table":
        yield args.input
        return
    import pyarrow.parquet as pq

    from otel_ml.instrument.capture import ID_COLUMN, TIME_COLUMN
    from otel_ml.instrument.replay import capture_table

    table, _ = capture_table(args.input, args.format, args.mapping)
    with tempfile.TemporaryDirectory(prefix="otel-ml-capture-") as d:
        path = str(Path(d) / "reference.parquet")
        pq.write_table(table.drop_columns([TIME_COLUMN, ID_COLUMN]), path)
        yield path


def cmd_baseline_build(args: argparse.Namespace) -> int:
    from otel_ml import semconv
    from otel_ml.decode.privacy import load_key
    from otel_ml.profile.baseline import build_baseline, describe_columns
    from otel_ml.profile.comoments import MAX_FEATURES as COMOMENT_MAX_FEATURES
    from otel_ml.profile.sketch import SketchConfig

    if args.chunks < 0:
        raise ValueError(f"--chunks must be >= 0 (0: none), got {args.chunks}")
    if args.segment_by and not (1 <= len(args.segment_by) <= 4 and args.max_segments >= 2):
        raise ValueError(f"--segment-by takes 1 to 4 columns and --max-segments at least 2, got "
                         f"{len(args.segment_by)} and {args.max_segments}")
    if not 0 <= args.correlation_features <= COMOMENT_MAX_FEATURES:
        raise ValueError(f"--correlation-features must be 0 to {COMOMENT_MAX_FEATURES}, "
                         f"got {args.correlation_features}")
    time_like: set[str] = set()
    with _reference_file(args) as path:
        profile = build_baseline(
            path, args.model, args.model_version, prediction_column=args.prediction_column,
            score_column=args.score_column, exclude=args.exclude or [], categorical=args.categorical or [],
            sketch=SketchConfig(kll_k=args.kll_k), hash_key=load_key(args.hash_key_env),
            hash_features=args.hash_feature or [], chunks=args.chunks, time_like=time_like,
            target_column=args.target_column, probability_column=args.probability_column,
            positive_class=args.positive_class,
            class_probability_columns=_class_columns(args.class_probability_column),
            multivariate=args.multivariate, correlation_features=args.correlation_features,
            embedding_column=args.embedding_column, segment_by=args.segment_by or (),
            max_segments=args.max_segments, segment_bins=_segment_bins(args.segment_bins or [], args.segment_by))
    output = Path(args.output or f"{args.model}-{args.model_version or 'any'}.baseline.json")
    columns = describe_columns(profile, time_like)
    keep = set(args.keep or [])
    if unknown := sorted(keep - {c["column"] for c in columns}):  # as --exclude names a column that is not there
        raise ValueError(f"{args.input}: --keep names no column {', '.join(unknown)}; columns are "
                         f"{', '.join(c['column'] for c in columns)}")
    # Id- and time-like columns drift at every comparison and tell nothing: left out unless --keep names them.
    left_out = {c["column"] for c in columns if c["warning"] and c["column"] not in keep}
    left_out -= {semconv.PREDICTION_FEATURE, semconv.PREDICTION_SCORE_FEATURE,
                 semconv.PREDICTION_PROBABILITY_FEATURE}
    profile.drop_features(left_out)
    output.write_text(profile.to_json())
    print(f"{'COLUMN':<28} {'KIND':<12} {'MISSING':>8} {'DISTINCT':>9}  NOTE")
    for c in columns:
        distinct = "" if c["distinct"] is None else str(c["distinct"])
        note = (f"LEFT OUT, {c['warning'].split(';')[0]} (--keep {c['column']} to profile it)"
                if c["column"] in left_out else c["warning"])
        print(f"{printable(c['column']):<28} {c['kind']:<12} {c['missing']:>8.1%} {distinct:>9}  {note}")
        if c["warning"] and c["column"] not in left_out:
            print(f"otel-ml: warning: column {c['column']!r} is {c['warning']} (kept: --keep)", file=sys.stderr)
    if left_out:
        print(f"otel-ml: left out of the baseline: {', '.join(sorted(left_out))} (id- or time-like; --keep COLUMN "
              "to profile one anyway)", file=sys.stderr)
    kinds = profile.kinds()
    if profile.performance is not None:
        shown = ", ".join(f"{k} {v[0]:.4g}" for k, v in profile.performance.profile.metrics(
            profile.performance.positive_class).items())
        print(f"reference performance: {shown}")
    print(f"baseline for model {args.model!r} version {args.model_version!r}: {profile.rows} rows, "
          f"{len(kinds)} features ({sum(k == 'numeric' for k in kinds.values())} numeric, "
          f"{sum(k == 'categorical' for k in kinds.values())} categorical) → {output}")
    return 0


def _level(text: str) -> float:
    """An argparse type: a significance level in (0, 1)."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a significance level in (0, 1), got {text}")
    return value


def cmd_baseline_show(args: argparse.Namespace) -> int:
    from otel_ml.profile.model import ModelProfile
    from otel_ml.read.views import profile_document

    doc = profile_document(ModelProfile.read(args.file))
    if args.json:
        print(json.dumps(doc, indent=2, allow_nan=False))
        return 0
    print(f"model {doc['model']!r} version {doc['version']!r}: {doc['rows']:,} rows, {len(doc['features'])} features")
    print(f"{'FEATURE':<28} {'KIND':<12} {'COUNT':>10} {'MISSING':>8}  DISTRIBUTION")
    for name, f in doc["features"].items():
        if f["kind"] == "numeric":
            q = f["quantiles"]
            dist = ("–" if f["mean"] is None else
                    f"mean {f['mean']:.4g}  p5 {q['0.05']:.4g}  p50 {q['0.5']:.4g}  p95 {q['0.95']:.4g}  "
                    f"[{f['min']:.4g}, {f['max']:.4g}]")
        else:
            top = ", ".join(f"{c['category']!r} {c['share']:.1%}" for c in f["top_categories"][:5])
            dist = f"{f['distinct']}{'' if f['distinct_exact'] else '+'} distinct; top: {top}"
        missing = "–" if f["missing_ratio"] is None else f"{f['missing_ratio']:.1%}"
        print(f"{printable(name):<28} {f['kind']:<12} {f['count']:>10,} {missing:>8}  {dist}")
    perf = doc.get("performance")
    if perf:
        print(f"performance on {perf['labeled']:,} labelled rows ({perf['task']}"
              + (f", positive class {perf['positive_class']!r}" if perf["positive_class"] else "")
              + (f", calibration map of {perf['calibration_knots']} knots" if perf["calibration_knots"] else "")
              + "):")
        for name, m in perf["metrics"].items():
            spread = "" if m["chunk_std"] is None else f"  (± {m['chunk_std']:.3g} from chunk to chunk)"
            print(f"  {name:<10} {m['value']:.4g}{spread}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from otel_ml.analyze.drift import DriftConfig
    from otel_ml.profile.model import ModelProfile
    from otel_ml.read.compare import comparison_rows

    rows = comparison_rows(ModelProfile.read(args.reference), ModelProfile.read(args.current),
                           DriftConfig(alpha=args.alpha))
    if args.format == "json":
        print(json.dumps(rows, indent=2, allow_nan=False))
    elif args.format == "csv":
        import csv

        methods = sorted({m for r in rows for m in r["scores"]})
        fields = ["name", "kind", "status", "drift_detected", "withheld_reason", "p_value", "threshold",
                  "effect_method", "effect", "reference_count", "current_count", "missing_ratio",
                  "type_mismatch_ratio", "unseen_ratio", "out_of_range_ratio"]
        writer = csv.writer(sys.stdout)
        writer.writerow(fields + methods)
        for r in rows:
            writer.writerow([r[f] if r[f] is not None else "" for f in fields]
                            + [r["scores"].get(m) if r["scores"].get(m) is not None else "" for m in methods])
    else:
        print(f"{'FEATURE':<28} {'STATUS':<9} {'P-VALUE':>10} {'EFFECT':>18} {'REF N':>9} {'CUR N':>9}  NOTE")
        for r in rows:
            p = "–" if r["p_value"] is None else f"{r['p_value']:.3g}"
            e = "–" if r["effect"] is None else f"{r['effect_method']} {r['effect']:.3g}"
            print(f"{printable(r['name']):<28} {r['status']:<9} {p:>10} {e:>18} {r['reference_count']:>9,} "
                  f"{r['current_count']:>9,}  {r['withheld_reason'] or ', '.join(r['quality_problems'])}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from otel_ml.config import SETTINGS_FILE, load_config, recorded_settings
    from otel_ml.ui.report import build_report

    # Decided as the processor decides: its recorded settings (or --config), --alpha on top.
    if args.config:
        cfg, settings = load_config(args.config), f"the settings of {args.config}"
    else:
        recorded = recorded_settings(args.state_dir)
        cfg, settings = ((recorded, f"the processor's settings ({SETTINGS_FILE} in the state directory)")
                         if recorded is not None else (load_config(environ={}), "default settings (the state "
                                                       f"directory has no readable {SETTINGS_FILE}; --config FILE)"))
    drift = dataclasses.replace(cfg.drift, alpha=args.alpha) if args.alpha is not None else cfg.drift
    html, report, documents = build_report(args.state_dir, args.model, args.model_version,
                                           *_time_range(args.start, args.end), args.reference,
                                           args.baseline_dir, drift, args.max_charts, cfg.performance,
                                           dict(cfg.export.effect_size), settings)
    text = html if args.format == "html" else json.dumps(documents, indent=1, allow_nan=False) + "\n"
    Path(args.output).write_text(text, encoding="utf-8")
    drifting = [f.feature for f in report.features if f.overall.detected]
    perf = documents["performance"]
    degraded = sorted(set(perf["degraded"]) | set(perf["estimated_degraded"])) if perf else []
    print(f"report of model {args.model!r} version {args.model_version!r}: {report.current_rows:,} rows, "
          f"{len(drifting)} of {len(report.features)} features drifting"
          + (f", {perf['labeled']:,} labelled, degraded: {', '.join(degraded) or 'none'}" if perf else "")
          + f" → {args.output} ({len(text.encode()) / 1e6:.2f} MB; decided with {settings})")
    return 0


def cmd_archive_export(args: argparse.Namespace) -> int:
    from otel_ml.read.archive import export_range, live_window_ns, open_read_only

    start, end = _time_range(args.start, args.end)  # both required: ints
    conn = open_read_only(args.state_dir)
    try:
        profile = export_range(conn, args.model, args.model_version, start or 0, end or 0, live_window_ns(conn))
    finally:
        conn.close()
    Path(args.output).write_text(profile.to_json())
    print(f"{profile.rows} rows of model {args.model!r} version {args.model_version!r} → {args.output}")
    return 0


def cmd_archive_list(args: argparse.Namespace) -> int:
    from otel_ml.read.archive import live_window_ns, open_read_only, summary

    conn = open_read_only(args.state_dir)
    try:
        rows = summary(conn, live_window_ns(conn))
    finally:
        conn.close()

    def iso(ns: int) -> str:
        return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%MZ")

    print(f"{'MODEL':<24} {'VERSION':<12} {'RESOLUTION':<10} {'PROFILES':>8}  FROM              TO")
    for r in rows:
        print(f"{printable(r['model']):<24} {printable(r['version']):<12} {r['resolution']:<10} {r['profiles']:>8}  "
              f"{iso(r['from_ns'])} "
              f"{iso(r['to_ns'])}")
    print("live: windows still in the horizon at the last checkpoint; `archive export` covers every row shown")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    import json

    from otel_ml.read.archive import models_in_checkpoint, open_read_only

    conn = open_read_only(args.state_dir)
    try:
        _, rows = models_in_checkpoint(conn)
    finally:
        conn.close()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'MODEL':<24} {'VERSION':<12} {'STATUS':<9} {'IDLE (event time)':<18} {'REFERENCE':<11} ROWS")
    for r in rows:
        idle = f"{r['idle_seconds'] / 3600:.1f} h" if r["idle_seconds"] >= 3600 else f"{r['idle_seconds']:.0f} s"
        print(f"{printable(r['model']):<24} {printable(r['version']):<12} {r['status']:<9} {idle:<18} "
              f"{r['reference']:<11} {r['rows']}")
    print(f"{sum(r['status'] == 'live' for r in rows)} live, {sum(r['status'] == 'released' for r in rows)} "
          "released (as of the last checkpoint)")
    return 0


def cmd_models_retire(args: argparse.Namespace) -> int:
    from otel_ml.state.control import write_control_request

    path = write_control_request(args.state_dir, {"action": "retire", "model": args.model,
                                                  "version": args.model_version,
                                                  "drop_reference": args.drop_reference})
    what = f"model {args.model!r}" + (f" version {args.model_version!r}" if args.model_version is not None else "")
    print(f"queued: retire {what} ({path}); the processor applies it within evaluation.interval_seconds, or at "
          "its next start")
    return 0


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

    serve_help = SERVE_HELP + ", ".join(f"{k} ({v})" for k, v in ENV_VARS.items())
    serve = sub.add_parser("serve", help="run the processor", description=serve_help,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_serve_flags(serve)
    serve.set_defaults(func=cmd_serve)

    labels = sub.add_parser("labels", help="ground truth")
    lsub = labels.add_subparsers(dest="labels_command", required=True)
    send = lsub.add_parser("send", help="send labels from a CSV/Parquet file (a warehouse export) over OTLP",
                           description="Read ids and labels from a file and send them to the processor (or a "
                                       "Collector) as OTLP ground-truth log records or spans (ml.batch.size arrays), "
                                       "like any OTLP client.")
    send.add_argument("--input", required=True, metavar="FILE", help=".csv, .parquet or .pq")
    send.add_argument("--model", required=True)
    send.add_argument("--model-version", default="")
    send.add_argument("--id-column", required=True, metavar="C")
    send.add_argument("--label-column", required=True, metavar="C")
    send.add_argument("--endpoint", default="127.0.0.1:4317", metavar="HOST:PORT",
                      help="OTLP/gRPC (default %(default)s)")
    send.add_argument("--batch", type=int, default=5000, help="labels per log record or span (default %(default)s)")
    send.add_argument("--time-column", metavar="C",
                      help="when each label became known (datetimes, naive ones UTC; ISO 8601 text; Unix seconds), "
                           "for a backfill: sent in time order, each record at its time (default: all now)")
    send.add_argument("--time-resolution", type=float, default=1.0, metavar="SECONDS",
                      help="times rounded down to this before grouping labels into records (default %(default)s)")
    send.add_argument("--as", dest="as_signal", choices=["logs", "spans"], default="logs",
                      help="OTLP log records (default) or spans; spans are what collector-config/sharded.yaml "
                           "routes by model")
    _outcome_options(send)
    send.set_defaults(func=cmd_labels_send)

    replay = sub.add_parser(
        "replay", help="send past predictions (and their labels) from a CSV/Parquet file, each at its own time",
        description="Backfill: read a table of past predictions and send them over OTLP to the processor (or a "
                    "Collector) as batch spans at their own times, in time order, and their labels (--target-column) "
                    "as ground truth at theirs, so the windows, the archive, the pages and `otel-ml report` show that "
                    "period as if it had been monitored live (run the processor with a --horizon that covers it, or "
                    "read the archive). Features: every column not named by another option, or --feature. "
                    "--format sagemaker|vertex|azureml reads what an ML platform captured instead (SageMaker Data "
                    "Capture, Vertex AI request-response log rows, Azure ML data collector files; a file or a "
                    "directory of them; --mapping names unnamed columns and outputs; docs/capture.md): each "
                    "captured row at its capture time, with the captured request/correlation id as "
                    "ml.prediction.id for labels sent later.")
    replay.add_argument("--input", required=True, metavar="FILE",
                        help=".csv, .parquet or .pq (or a capture file, or a directory of capture files)")
    replay.add_argument("--format", choices=["table", "sagemaker", "vertex", "azureml"], default="table",
                        help="table (default): CSV/Parquet with the columns named below; sagemaker: SageMaker Data "
                             "Capture JSON Lines; vertex: Vertex AI request-response log rows (JSON Lines or CSV "
                             "exported from BigQuery); azureml: Azure ML data collector JSON Lines (model_inputs and "
                             "model_outputs)")
    replay.add_argument("--mapping", metavar="FILE",
                        help="with a capture --format: JSON naming the payloads' columns and outputs "
                             '({"features": [...], "outputs": [...], "output_keys": {...}})')
    replay.add_argument("--model", required=True)
    replay.add_argument("--model-version", default="")
    replay.add_argument("--time-column", metavar="C",
                        help="when each prediction was made (datetimes, naive ones UTC; ISO 8601 text; Unix seconds)")
    replay.add_argument("--prediction-column", metavar="C", help="ml.prediction")
    replay.add_argument("--score-column", metavar="C", help="ml.prediction.score")
    replay.add_argument("--probability-column", metavar="C", help="ml.prediction.probability (of the positive class)")
    replay.add_argument("--class-probability-column", action="append", metavar="CLASS=C",
                        help="a multiclass model's probability of CLASS (ml.prediction.probability.CLASS); repeat "
                             "for each class")
    replay.add_argument("--id-column", metavar="C", help="ml.prediction.id (what labels join on)")
    replay.add_argument("--target-column", metavar="C", help="the true outcome, sent as labels of --id-column")
    replay.add_argument("--target-time-column", metavar="C",
                        help="when each outcome became known (default: the prediction's time; empty: no label yet)")
    replay.add_argument("--feature", action="append", metavar="C", help="a feature column (default: every other)")
    replay.add_argument("--exclude", action="append", metavar="C", help="a column that is not a feature")
    replay.add_argument("--endpoint", default="127.0.0.1:4317", metavar="HOST:PORT",
                        help="OTLP/gRPC (default %(default)s)")
    replay.add_argument("--batch", type=int, default=1000, help="rows per span and request (default %(default)s)")
    replay.add_argument("--time-resolution", type=float, default=1.0, metavar="SECONDS",
                        help="times rounded down to this before rows are grouped into spans (default %(default)s)")
    replay.add_argument("--max-request-span", type=float, default=60.0, metavar="SECONDS",
                        help="event time one request may span (default %(default)s, the default window; at most the "
                             "processor's horizon minus a window: it moves its clock to a request's newest span "
                             "first, so older rows in the same request would be late)")
    _outcome_options(replay)
    replay.set_defaults(func=cmd_replay)

    baseline = sub.add_parser("baseline", help="reference profiles")
    bsub = baseline.add_subparsers(dest="baseline_command", required=True)
    build = bsub.add_parser("build", help="profile a CSV/Parquet file of training (reference) data",
                            description="Write a baseline profile for one model from a CSV or Parquet file. "
                                        "Every column is a feature named like its ml.feature.<name> attribute.")
    build.add_argument("--model", required=True, help="ml.model.name the baseline is for")
    build.add_argument("--model-version", default="",
                       help="ml.model.version; omit to use the baseline for every version without its own")
    build.add_argument("--input", required=True, metavar="FILE",
                       help=".csv, .parquet or .pq (or, with --format, what an ML platform captured)")
    build.add_argument("--format", choices=["table", "sagemaker", "vertex", "azureml"], default="table",
                       help="a capture (as otel-ml replay --format reads it) as the reference: its rows' features "
                            "and outputs (prediction, prediction.probability, prediction.score)")
    build.add_argument("--mapping", metavar="FILE", help="with --format: the capture's mapping (docs/capture.md)")
    build.add_argument("--output", metavar="FILE",
                       help="default: MODEL-VERSION.baseline.json (VERSION is 'any' without --model-version)")
    build.add_argument("--prediction-column", metavar="C", help="column profiled as the prediction (ml.prediction)")
    build.add_argument("--score-column", metavar="C", help="column profiled as ml.prediction.score")
    build.add_argument("--target-column", metavar="C",
                       help="ground truth: stores the reference's performance (and its chunk-to-chunk spread)")
    build.add_argument("--probability-column", metavar="C",
                       help="probability of the positive class (ml.prediction.probability): with --target-column, "
                            "also the calibration map label-free estimates use")
    build.add_argument("--class-probability-column", action="append", metavar="CLASS=C",
                       help="a multiclass model's probability of CLASS (ml.prediction.probability.CLASS); repeat for "
                            "each class. With --target-column: per-class calibration maps for multiclass estimates, "
                            "and one-vs-rest ROC AUC and log loss of the reference")
    build.add_argument("--multivariate", action="store_true",
                       help="also fit a PCA of the features (65%% of their variance): the processor then tests each "
                            "row's reconstruction error as the feature '(multivariate)', which drifts when features "
                            "stop moving together as they did, even if no single one changes")
    build.add_argument("--embedding-column", metavar="C",
                       help="a column of vectors ('[0.1, 0.2, ...]' cells, or a Parquet list): the model's "
                            "ml.embedding, profiled as the processor does, by its projections '(embedding).0'..'.15' "
                            "and its norm")
    build.add_argument("--correlation-features", type=int, default=10, metavar="N",
                       help="keep the pairwise moments of the N numeric features with the most values (default 10; "
                            "0: none, at most 64): the processor tests their correlations for a change, the row "
                            "'(correlation)', and lists the pairs that changed most")
    build.add_argument("--segment-by", action="append", metavar="COL",
                       help="segment the reference by this column's values (repeat for combinations): the processor "
                            "segments the model's windows the same way and compares each segment with its own")
    build.add_argument("--segment-bins", action="append", metavar="COL=E1,E2,...",
                       help="with --segment-by of a numeric column: its segments are the intervals between these "
                            "edges (age=18,30,50: <18, [18..30), [30..50), >=50), not its values")
    build.add_argument("--max-segments", type=int, default=20, metavar="N",
                       help="with --segment-by: segments kept, the rest pooled as (other) (default 20)")
    build.add_argument("--positive-class", metavar="CLASS",
                       help="the positive class of a binary classifier (default: 1, true, yes or positive)")
    build.add_argument("--exclude", action="append", metavar="C", help="column to leave out (ids, timestamps)")
    build.add_argument("--keep", action="append", metavar="C",
                       help="an id- or time-like column to profile anyway (they are left out by default)")
    build.add_argument("--categorical", action="append", metavar="C",
                       help="treat this column as categorical even if its values are numbers")
    build.add_argument("--kll-k", type=int, default=200, help="KLL accuracy parameter (default 200)")
    build.add_argument("--chunks", type=int, default=10,
                       help="also keep this many consecutive parts of the file, for drift.learned_thresholds "
                            "(default 10; 0: none)")
    build.add_argument("--hash-key-env", metavar="VAR",
                       help="hash categorical values with the key in this environment variable, as the processor "
                            "does with privacy.hash_key_env")
    build.add_argument("--hash-feature", action="append", metavar="C",
                       help="hash only these categorical features (default: all), like privacy.hash_features")
    build.set_defaults(func=cmd_baseline_build)

    show = bsub.add_parser("show", help="what a profile file holds, per feature",
                           description="Read any profile file (a baseline, a pinned reference under STATE/pinned, an "
                                       "`archive export`): per feature its kind, count, missing share, and quantiles "
                                       "or top categories.")
    show.add_argument("file", metavar="FILE")
    show.add_argument("--json", action="store_true", help="the same as JSON (every quantile, top 20 categories)")
    show.set_defaults(func=cmd_baseline_show)

    cmp_ = sub.add_parser("compare", help="drift table of two profile files, as the processor computes it",
                          description="Compare CURRENT with REFERENCE (any two profile files: baselines, pinned "
                                      "references, archive exports) with the processor's tests and distances.")
    cmp_.add_argument("reference", metavar="REFERENCE")
    cmp_.add_argument("current", metavar="CURRENT")
    cmp_.add_argument("--format", choices=("text", "json", "csv"), default="text")
    cmp_.add_argument("--alpha", type=_level, default=None,
                      help="family-wise level (default: the processor's, drift.expected_run_days)")
    cmp_.set_defaults(func=cmd_compare)

    rep_ = sub.add_parser("report", help="one self-contained HTML report of a model from the archive",
                          description="The UI's views for a past range of one model, drawn from the archived "
                                      "windows under a state directory: one HTML file, no external URLs.")
    rep_.add_argument("--state-dir", required=True, metavar="DIR", help="the processor's state.dir")
    rep_.add_argument("--model", required=True, help="ml.model.name")
    rep_.add_argument("--model-version", default="", help="ml.model.version (default: none)")
    rep_.add_argument("--from", dest="start", metavar="TIME", help="ISO 8601 or Unix seconds (default: all)")
    rep_.add_argument("--to", dest="end", metavar="TIME")
    rep_.add_argument("--reference", metavar="FILE", help="a profile file (default: the model's baseline from "
                                                          "--baseline-dir or, without it, from the baseline "
                                                          "directory the processor used; else its pinned reference)")
    rep_.add_argument("--baseline-dir", metavar="DIR")
    rep_.add_argument("--alpha", type=_level, default=None, help="family-wise level (default: the processor's)")
    rep_.add_argument("--config", metavar="FILE", help="decide with this processor config (default: the settings "
                                                        "the processor recorded in --state-dir)")
    rep_.add_argument("--max-charts", type=int, default=30, help="features drawn in full (default 30)")
    rep_.add_argument("--format", choices=("html", "json"), default="html",
                      help="html (default), or json: the documents the API serves for the range (drift, performance)")
    rep_.add_argument("--output", required=True, metavar="FILE")
    rep_.set_defaults(func=cmd_report)

    archive = sub.add_parser("archive", help="windows archived under a state directory")
    asub = archive.add_subparsers(dest="archive_command", required=True)
    export = asub.add_parser(
        "export", help="merge a past time range of one model into a profile file (usable as a baseline)",
        description="Merge every archived window of a model inside [--from, --to) into one profile: offline "
                    "analysis of any past range without the raw data, or a baseline from last week's traffic.")
    export.add_argument("--state-dir", required=True, metavar="DIR", help="the processor's state.dir")
    export.add_argument("--model", required=True, help="ml.model.name")
    export.add_argument("--model-version", default="", help="ml.model.version (default: none)")
    export.add_argument("--from", dest="start", required=True, metavar="TIME",
                        help="ISO 8601 (e.g. 2026-11-20T00:00:00Z) or Unix seconds")
    export.add_argument("--to", dest="end", required=True, metavar="TIME")
    export.add_argument("--output", required=True, metavar="FILE", help="profile file to write (JSON)")
    export.set_defaults(func=cmd_archive_export)
    alist = asub.add_parser("list", help="what the archive (and the live horizon) holds, per model and version",
                            description="Read-only: per model, version and resolution, how many profiles and the "
                                        "time they cover, as of the last checkpoint.")
    alist.add_argument("--state-dir", required=True, metavar="DIR", help="the processor's state.dir")
    alist.set_defaults(func=cmd_archive_list)

    models = sub.add_parser("models", help="the (model, version)s a processor keeps live, and retiring them")
    msub = models.add_subparsers(dest="models_command", required=True)
    mlist = msub.add_parser(
        "list", help="live and released (model, version)s, as of the last checkpoint",
        description="Read-only, from the state directory (the processor may be running): each (model, version) "
                    "with its status (live or released), event time since its last data (live) or since its "
                    "release, whether its reference is pinned, and the rows in its live windows.")
    mlist.add_argument("--state-dir", required=True, metavar="DIR", help="the processor's state.dir")
    mlist.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    mlist.set_defaults(func=cmd_models_list)
    retire = msub.add_parser(
        "retire", help="release a model (or one version) now",
        description="Queues a request in the state directory; the processor applies it within one evaluation "
                    "interval (or at its next start): the model's windows are archived and its memory and "
                    "series freed. A later span for it starts it again.")
    retire.add_argument("--state-dir", required=True, metavar="DIR", help="the processor's state.dir")
    retire.add_argument("--model", required=True, help="ml.model.name")
    retire.add_argument("--model-version", metavar="V", help="only this version (default: every version)")
    retire.add_argument("--drop-reference", action="store_true",
                        help="also delete its pinned reference (default: keep it for its return)")
    retire.set_defaults(func=cmd_models_retire)

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

    def cmd_demo(a: argparse.Namespace) -> int:
        from otel_ml.demo import run_demo

        return run_demo(a.duration, a.drift_after, a.otlp_grpc_endpoint, a.prometheus_endpoint, a.rate,
                        a.ui_endpoint)

    demo.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, ValueError, RuntimeError) as e:
        print(f"otel-ml: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a missing file, a directory given as a file, no permission
        print(f"otel-ml: {e.filename}: {e.strerror}" if e.filename else f"otel-ml: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
