"""``otel-ml labels send``: ground truth from a file."""

from __future__ import annotations

import argparse

from otel_ml.cli.common import endpoint_option, outcome_options, print_notes, time_unit_option


def cmd_labels_send(args: argparse.Namespace) -> int:
    from otel_ml.instrument.labels import read_labels, send_labels
    from otel_ml.instrument.outcome import api_url, rejection_summary, report_outcome

    notes: list[str] = []
    times = None
    if args.format == "sagemaker":  # Model Monitor's ground-truth records: ids and labels are known
        from otel_ml.instrument.capture import read_sagemaker_ground_truth

        ids, values, refused = read_sagemaker_ground_truth(args.input)
        if refused:
            notes.append(f"{len(refused)} record(s) refused:\n" + "\n".join(f"  {w}: {why}" for w, why in refused[:5]))
    elif args.id_column is None or args.label_column is None:
        raise ValueError("--id-column and --label-column are required unless --format names ground-truth records")
    else:
        ids, values, times = read_labels(args.input, args.id_column, args.label_column, args.time_column,
                                         args.time_resolution, args.time_unit, notes)
    print_notes(notes)
    done: list[tuple[int, int]] = []
    reasons: list[str] = []

    def send() -> None:
        done.append(send_labels(args.endpoint, args.model, args.model_version, ids, values, args.batch,
                                as_spans=args.as_signal == "spans", times=times, messages=reasons))

    outcome = report_outcome(args.api or api_url(args.endpoint), args.model, args.model_version, len(ids), send,
                             args.wait)
    sent, rejected = done[0]
    print(f"sent {sent} label(s) for model {args.model!r} to {args.endpoint}"
          + (f"; rejected: {rejected}" if rejected else "") + (f"\n{rejection_summary(reasons)}" if reasons else "")
          + (f"\n{outcome}" if outcome else ""))
    return 0 if not rejected and not any("refused" in n for n in notes) else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    labels = sub.add_parser("labels", help="ground truth")
    lsub = labels.add_subparsers(dest="labels_command", required=True)
    send = lsub.add_parser("send", help="send labels from a CSV/Parquet file (a warehouse export) over OTLP",
                           description="Read ids and labels from a file and send them to the processor (or a "
                                       "Collector) as OTLP ground-truth log records or spans (ml.batch.size arrays), "
                                       "like any OTLP client.")
    send.add_argument("--input", required=True, metavar="FILE", help=".csv, .parquet or .pq")
    send.add_argument("--model", required=True)
    send.add_argument("--model-version", default="")
    send.add_argument("--format", choices=["table", "sagemaker"], default="table",
                      help="table (default): CSV/Parquet with --id-column and --label-column; sagemaker: SageMaker "
                           "Model Monitor ground-truth JSON Lines (groundTruthData, eventMetadata.eventId)")
    send.add_argument("--id-column", metavar="C", help="the prediction ids (ml.prediction.id) the labels belong to")
    send.add_argument("--label-column", metavar="C", help="the labels")
    endpoint_option(send)
    send.add_argument("--batch", type=int, default=5000, help="labels per log record or span (default %(default)s)")
    send.add_argument("--time-column", metavar="C",
                      help="when each label became known (datetimes, naive: UTC; ISO 8601; Unix time: --time-unit), "
                           "for a backfill: sent in time order, each record at its time (default: all now)")
    time_unit_option(send)
    send.add_argument("--time-resolution", type=float, default=1.0, metavar="SECONDS",
                      help="times rounded down to this before grouping labels into records (default %(default)s)")
    send.add_argument("--as", dest="as_signal", choices=["logs", "spans"], default="logs",
                      help="OTLP log records (default) or spans; spans are what collector-config/sharded.yaml "
                           "routes by model")
    outcome_options(send)
    send.set_defaults(func=cmd_labels_send)
