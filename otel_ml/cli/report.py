"""``otel-ml report``: one self-contained HTML (or JSON) report of a model from the archive."""

from __future__ import annotations

import argparse
from pathlib import Path

from otel_ml.cli.common import level, time_range


def cmd_report(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from otel_ml.config import SETTINGS_FILE, load_config, recorded_settings
    from otel_ml.ui.report import build_report, build_version_report

    # Decided as the processor decides: its recorded settings (or --config), --alpha on top.
    if args.config:
        cfg, settings = load_config(args.config), f"the settings of {args.config}"
    else:
        recorded = recorded_settings(args.state_dir)
        cfg, settings = ((recorded, f"the processor's settings ({SETTINGS_FILE} in the state directory)")
                         if recorded is not None else (load_config(environ={}), "default settings (the state "
                                                       f"directory has no readable {SETTINGS_FILE}; --config FILE)"))
    drift = dataclasses.replace(cfg.drift, alpha=args.alpha) if args.alpha is not None else cfg.drift
    if args.compare_versions:
        a, b = args.compare_versions
        html, doc = build_version_report(args.state_dir, args.model, a, b, *time_range(args.start, args.end), drift,
                                         cfg.performance)
        text = html if args.format == "html" else json.dumps(doc, indent=1, allow_nan=False) + "\n"
        Path(args.output).write_text(text, encoding="utf-8")
        found = sorted(k for k, v in doc["decisions"].items() if v)
        print(f"model {args.model!r}: version {b!r} against {a!r} ({doc['rows_b']:,} and {doc['rows_a']:,} rows): "
              f"{', '.join(found) or 'no difference found'} → {args.output} (decided with {settings})")
        return 0
    html, report, documents = build_report(args.state_dir, args.model, args.model_version,
                                           *time_range(args.start, args.end), args.reference,
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



def add_commands(sub: argparse._SubParsersAction) -> None:
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
    rep_.add_argument("--alpha", type=level, default=None, help="family-wise level (default: the processor's)")
    rep_.add_argument("--config", metavar="FILE", help="decide with this processor config (default: the settings "
                                                        "the processor recorded in --state-dir)")
    rep_.add_argument("--max-charts", type=int, default=30, help="features drawn in full (default 30)")
    rep_.add_argument("--format", choices=("html", "json"), default="html",
                      help="html (default), or json: the documents the API serves for the range (drift, performance)")
    rep_.add_argument("--compare-versions", nargs=2, metavar=("A", "B"),
                      help="version B against version A over the range instead (a canary, a shadow: inputs, "
                           "outputs, performance, errors, latency; docs/statistics.md, Version against version)")
    rep_.add_argument("--output", required=True, metavar="FILE")
    rep_.set_defaults(func=cmd_report)
