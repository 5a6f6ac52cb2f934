"""``otel-ml archive export|list`` and ``otel-ml models list|retire``: what a state directory holds."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from otel_ml.cli.common import time_range
from otel_ml.read.names import printable


def cmd_archive_export(args: argparse.Namespace) -> int:
    from otel_ml.read.archive import export_range, live_window_ns, open_read_only

    start, end = time_range(args.start, args.end)  # both required: ints
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



def add_commands(sub: argparse._SubParsersAction) -> None:
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
