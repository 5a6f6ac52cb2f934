"""``otel-ml replay``: past predictions (a table, or a platform's capture) at their own times."""

from __future__ import annotations

import argparse

from otel_ml.cli.common import (
    capture_options,
    class_columns,
    endpoint_option,
    outcome_options,
    print_notes,
    time_unit_option,
)


def cmd_replay(args: argparse.Namespace) -> int:
    from otel_ml.instrument.outcome import api_url, rejection_summary, report_outcome
    from otel_ml.instrument.replay import ReplayColumns, build_replay, capture_table, replay_summary, send_replay

    table, capture = None, None
    if args.format != "table":  # a platform's capture: its columns are known
        table, columns, capture = capture_table(args.input, args.format, args.mapping, args.max_record_bytes)
    elif args.time_column is None:
        raise ValueError("--time-column is required (the time of each prediction) unless --format names a capture")
    else:
        columns = ReplayColumns(time=args.time_column, prediction=args.prediction_column, score=args.score_column,
                                probability=args.probability_column, prediction_id=args.id_column,
                                target=args.target_column, target_time=args.target_time_column,
                                features=args.feature, exclude=args.exclude or [],
                                class_probability=class_columns(args.class_probability_column),
                                time_unit=args.time_unit)
    replay = build_replay(args.input, args.model, args.model_version, columns, args.batch, args.time_resolution,
                          args.max_request_span, table)
    print_notes([*(capture.warnings() if capture else []), *replay.notes])
    done: list[tuple[int, int]] = []
    reasons: list[str] = []
    outcome = report_outcome((args.api or api_url(args.endpoint)) if replay.labels else None, args.model,
                             args.model_version, replay.labels,
                             lambda: done.append(send_replay(args.endpoint, replay, messages=reasons)), args.wait)
    sent, rejected = done[0]
    print(replay_summary(args.input, args.model, replay, args.endpoint, sent, rejected)
          + (f"\n{rejection_summary(reasons)}" if reasons else "")
          + (f"\nof the {replay.labels} label(s): {outcome}" if outcome else ""))
    # Anything left out (records, rows, spans) is a failure a script must notice, though the rest was sent.
    return 0 if not rejected and not (capture and capture.refused) and not replay.rows_refused else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
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
    capture_options(replay)
    replay.add_argument("--model", required=True)
    replay.add_argument("--model-version", default="")
    replay.add_argument("--time-column", metavar="C",
                        help="when each prediction was made (datetimes, naive: UTC; ISO 8601; Unix time: --time-unit)")
    time_unit_option(replay)
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
    endpoint_option(replay)
    replay.add_argument("--batch", type=int, default=1000, help="rows per span and request (default %(default)s)")
    replay.add_argument("--time-resolution", type=float, default=1.0, metavar="SECONDS",
                        help="times rounded down to this before rows are grouped into spans (default %(default)s)")
    replay.add_argument("--max-request-span", type=float, default=60.0, metavar="SECONDS",
                        help="event time one request may span (default %(default)s, the default window; at most the "
                             "processor's horizon minus a window: it moves its clock to a request's newest span "
                             "first, so older rows in the same request would be late)")
    outcome_options(replay)
    replay.set_defaults(func=cmd_replay)
