"""``otel-ml baseline build|show`` and ``otel-ml compare``: reference profiles and profile files."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from otel_ml.cli.common import capture_options, class_columns, level, print_notes
from otel_ml.read.names import printable


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



def _pass_labels(specs: list[str]) -> dict[str, list[str]]:
    """``--pass-labels EVALUATION=L1,L2`` as {evaluation: [labels]}."""
    out = {}
    for spec in specs:
        name, _, labels = spec.partition("=")
        if not name or not labels.strip(","):
            raise ValueError(f"--pass-labels {spec!r}: want EVALUATION=LABEL[,LABEL...]")
        out[name] = [x for x in labels.split(",") if x]
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

    table, _, capture = capture_table(args.input, args.format, args.mapping, args.max_record_bytes)
    print_notes(capture.warnings())  # the rows replay would refuse are refused here too, and said alike
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
            numeric=args.numeric or [],
            sketch=SketchConfig(kll_k=args.kll_k), hash_key=load_key(args.hash_key_env),
            hash_features=args.hash_feature or [], chunks=args.chunks, time_like=time_like,
            target_column=args.target_column, probability_column=args.probability_column,
            positive_class=args.positive_class,
            class_probability_columns=class_columns(args.class_probability_column),
            multivariate=args.multivariate, correlation_features=args.correlation_features,
            embedding_column=args.embedding_column, segment_by=args.segment_by or (),
            max_segments=args.max_segments, segment_bins=_segment_bins(args.segment_bins or [], args.segment_by),
            pass_labels=_pass_labels(args.pass_labels or []), attribution_prefix=args.attribution_column_prefix)
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
    if profile.performance is not None and profile.performance.profile.task is not None:
        shown = ", ".join(f"{k} {v[0]:.4g}" for k, v in profile.performance.profile.metrics(
            profile.performance.positive_class).items())
        print(f"reference performance: {shown}")
    for name, ev in (profile.performance.profile.evaluations if profile.performance is not None else {}).items():
        print(f"reference evaluation {name}: {ev.n} results, pass rate {ev.pass_rate()[0]:.4g}, mean score "
              f"{ev.mean_score()[0]:.4g}")
    print(f"baseline for model {args.model!r} version {args.model_version!r}: {profile.rows} rows, "
          f"{len(kinds)} features ({sum(k == 'numeric' for k in kinds.values())} numeric, "
          f"{sum(k == 'categorical' for k in kinds.values())} categorical) → {output}")
    return 0


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



def add_commands(sub: argparse._SubParsersAction) -> None:
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
    capture_options(build)
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
    build.add_argument("--pass-labels", action="append", metavar="EVALUATION=L1,L2",
                       help="an LLM model's evaluation whose labels L1, L2, ... are a pass, every other a fail (as "
                            "the processor's genai.pass_labels); columns gen_ai.evaluation.<name>.score and .label "
                            "of the table are its past evaluation results: the reference of its evaluations")
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
    build.add_argument("--attribution-column-prefix", metavar="P",
                       help="columns P<feature> (e.g. shap_income with P=shap_) are each row's attribution to "
                            "<feature>, as ml.attribution.<feature> on spans: the reference of the attribution "
                            "ranking (the row '(attribution)') and of each attribution's distribution")
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
    build.add_argument("--numeric", action="append", metavar="C",
                       help="treat this text column as numbers (text columns, digit codes like \"16\" included, are "
                            "categorical otherwise)")
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
    cmp_.add_argument("--alpha", type=level, default=None,
                      help="family-wise level (default: the processor's, drift.expected_run_days)")
    cmp_.set_defaults(func=cmd_compare)
