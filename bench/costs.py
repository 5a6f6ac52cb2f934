"""Costs of each stage, in-process: decode, sketch, instrumentation, memory, drift evaluation.

    .venv/bin/python -m bench.costs

Prints a markdown table. Baselines measured in the same run: the protobuf parse alone, and a naive Python walk
over the OTLP span attributes (what a straightforward implementation does before any sketching).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import resource
import statistics
import time
from collections.abc import Callable

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.loadgen import genai_request, make_request
from otel_ml.analyze.drift import compare
from otel_ml.decode import decode_request
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.decode.otlp import COMPILED, decode_request_python
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.sketch import CATEGORICAL, NUMERIC
from otel_ml.profile.window import WindowConfig, WindowedProfile

SPANS = 512


def per_call(fn: Callable[[], object], repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def median_per_call(fn: Callable[[], object], repeat: int, rounds: int = 5) -> float:
    """``per_call``'s median over ``rounds``: one round of a sub-microsecond stage here can come out 2× high when the
    machine is busy for a moment (seen once: the compiled decode at 1.35 µs/span, 0.68 in the next run)."""
    return statistics.median(per_call(fn, repeat) for _ in range(rounds))


def column_pass_costs(batch: ColumnarBatch, kinds: dict[str, str], grids: dict, rounds: int = 7) -> tuple[float, float]:
    """``ModelProfile.update`` per span with the compiled column pass (``_columns.c``: moments, grid bins, category
    counts) and with its numpy fallback, alternated round by round in this process (medians)."""
    from otel_ml.profile import sketch as sketch_module

    compiled = sketch_module._columns
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for use_compiled in (True, False):
            sketch_module._columns = compiled if use_compiled else None
            try:
                times[use_compiled].append(
                    per_call(lambda: ModelProfile("m", "", grids=grids).update(batch, kinds), 30) / SPANS * 1e6)
            finally:
                sketch_module._columns = compiled
    return statistics.median(times[True]), statistics.median(times[False])


def exemplar_costs(batch: ColumnarBatch, kinds: dict[str, str], grids: dict, rounds: int = 9) -> tuple[float, float]:
    """``ModelProfile.update`` per span of a window that is filling, with the spans' ids (example predictions kept)
    and without them, alternated round by round in this process (medians)."""
    bare = dataclasses.replace(batch, span_ids=np.empty((0, 24), np.uint8))
    times: dict[bool, list[float]] = {True: [], False: []}
    windows = {True: ModelProfile("m", "", grids=grids), False: ModelProfile("m", "", grids=grids)}
    for k in range(rounds):
        for ids in (True, False)[:: 1 if k % 2 else -1]:
            source, window = (batch if ids else bare), windows[ids]
            times[ids].append(per_call(lambda s=source, w=window: w.update(s, kinds), 30) / SPANS * 1e6)
    return statistics.median(times[True]), statistics.median(times[False])


def wrong_prediction_costs(rounds: int = 9) -> tuple[float, float, float, float, int]:
    """The label join's side of issue 46, per 512-row request with prediction ids, alternated round by round
    (medians, µs per row): keeping the predictions with their spans' ids against without (the sampled spans,
    labels/spans.py), and joining their labels (40% wrong, the wrong ones' spans looked up) with the spans kept
    against without. Also the bytes a window's 8 wrong predictions serialize to."""
    import tempfile

    from otel_ml.analyze.performance import PerformanceConfig
    from otel_ml.decode.batch import LabelBatch
    from otel_ml.decode.ids import id_hash
    from otel_ml.labels.ground_truth import GroundTruth
    from otel_ml.labels.pending import LabelsConfig

    rng = np.random.default_rng(46)
    t0 = 1_800_000_000 * 10**9
    times: dict[str, list[float]] = {"keep": [], "keep_bare": [], "join": [], "join_bare": []}
    wrong_bytes = 0
    for k in range(rounds):
        for ids in (True, False)[:: 1 if k % 2 else -1]:
            gt = GroundTruth(tempfile.mkdtemp(), LabelsConfig(), PerformanceConfig())
            batches, labels = [], []
            for r in range(20):
                names = np.array([f"p{k}-{r}-{i}" for i in range(SPANS)])
                pred = rng.integers(0, 2, SPANS)
                spans = rng.integers(1, 256, (SPANS, 24), dtype=np.uint8) if ids else np.empty((0, 24), np.uint8)
                at = np.full(SPANS, t0 + r * 10**9, np.int64)
                batches.append(ColumnarBatch("m", "1", SPANS, at, np.ones(SPANS),
                                             categorical={"prediction": pred.astype(str)}, span_end_ns=at,
                                             span_duration_s=np.full(SPANS, np.nan), span_error=np.zeros(SPANS, bool),
                                             span_ids=spans, prediction_id=id_hash("m", names)))
                truth = np.where(rng.random(SPANS) < 0.4, 1 - pred, pred).astype(str)
                labels.append(LabelBatch("m", "", id_hash("m", names), np.full(SPANS, np.nan), truth,
                                         np.full(SPANS, t0 + 3600 * 10**9, np.int64)))
            started = time.perf_counter()
            for b in batches:
                gt.join_predictions(b)
            times["keep" if ids else "keep_bare"].append((time.perf_counter() - started) / (20 * SPANS) * 1e6)
            gt.pending.seal()
            started = time.perf_counter()
            for lb in labels:
                gt.on_labels(lb)
            times["join" if ids else "join_bare"].append((time.perf_counter() - started) / (20 * SPANS) * 1e6)
            window = gt.current("m", "1")
            if ids and window is not None:
                wrong_bytes = len(json.dumps(window.wrong.to_dict()))
    med = {k: statistics.median(v) for k, v in times.items()}
    return med["keep"], med["keep_bare"], med["join"], med["join_bare"], wrong_bytes


def naive_walk(data: bytes) -> dict[str, list]:
    """The baseline: parse, then one Python dict per span, values appended to lists per attribute."""
    req = ExportTraceServiceRequest.FromString(data)
    cols: dict[str, list] = {}
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                row = {}
                for kv in span.attributes:
                    v = kv.value
                    row[kv.key] = getattr(v, v.WhichOneof("value"))
                for k, v in row.items():
                    cols.setdefault(k, []).append(v)
    return cols


def kinds_of(batch: ColumnarBatch) -> dict[str, str]:
    return {**dict.fromkeys(batch.numeric, NUMERIC), **dict.fromkeys(batch.categorical, CATEGORICAL)}


def instrumentation_costs() -> tuple[float, float, float, float]:
    """µs per prediction: bare SDK span with the same attributes, ModelMonitor.record, and per row: a bare SDK
    span with the same 512-row array attributes, and the batch form at 20 features (spans go to a no-op
    processor: the exporter's cost is the same either way)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from otel_ml.instrument import ModelMonitor

    class Discard(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Discard()))
    tracer = provider.get_tracer("bench")
    rng = np.random.default_rng(0)
    features = {f"n{i}": float(rng.normal()) for i in range(18)} | {"c0": "a", "c1": "b"}
    attrs = {"ml.model.name": "m", **{f"ml.feature.{k}": v for k, v in features.items()}, "ml.prediction": 1.0}

    def bare() -> None:
        with tracer.start_as_current_span("ml.predict", attributes=attrs):
            pass

    monitor = ModelMonitor("m", tracer_provider=provider)

    def ours() -> None:
        monitor.record(features, prediction=1.0)

    batch = {k: [v] * 512 for k, v in features.items()}
    preds = [1.0] * 512
    batch_attrs = {"ml.model.name": "m", "ml.batch.size": 512, **{f"ml.feature.{k}": v for k, v in batch.items()},
                   "ml.prediction": preds}

    def bare_batch() -> None:
        with tracer.start_as_current_span("ml.predict", attributes=batch_attrs):
            pass

    def batched() -> None:
        monitor.record_batch(batch, predictions=preds)

    # Each form beside its bare span in alternating rounds, the median of each: on a shared machine one
    # measurement of each in turn moved the ratio by ±15% from run to run.
    times: dict[Callable[[], None], list[float]] = {f: [] for f in (bare, ours, bare_batch, batched)}
    for k in range(9):
        for f, n in ((bare, 1000), (ours, 1000), (bare_batch, 10), (batched, 10))[:: 1 if k % 2 else -1]:
            gc.collect()
            times[f].append(per_call(f, n))
    median = {f: statistics.median(v) for f, v in times.items()}
    return (median[bare] * 1e6, median[ours] * 1e6, median[bare_batch] / 512 * 1e6, median[batched] / 512 * 1e6)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


WIDE_FEATURES = 50


def wide_batch(model: str, window: int, rows: int, rng: np.random.Generator, span_ids: bool = True) -> ColumnarBatch:
    """``rows`` predictions of ``wide_models``' model ``model`` in its one-minute window number ``window``."""
    t = np.full(rows, (1_700_000_000 + window * 60) * 10**9, dtype=np.int64)
    return ColumnarBatch(model, "", rows, t, np.ones(rows),
                         numeric={f"f{i}": rng.normal(size=rows) for i in range(WIDE_FEATURES)},
                         span_end_ns=t[:1], span_duration_s=np.array([0.01]), span_error=np.array([False]),
                         span_rows=np.array([rows]),
                         span_ids=rng.integers(0, 256, (1 if span_ids else 0, 24), dtype=np.uint8))


def wide_models(span_ids: bool = True) -> list[WindowedProfile]:
    """100 models × 50 numeric features, each with a pinned reference (15 one-minute windows) and a full default
    horizon of 15 windows plus the filling one, 1,000 predictions per window; ``span_ids``: the rows' span carries
    trace and span ids, as live spans do (each window keeps example predictions)."""
    rng = np.random.default_rng(1)
    models = []
    for m in range(100):
        wp = WindowedProfile(f"m{m}", "", WindowConfig(), max_features=WIDE_FEATURES)
        models.append(wp)
        for w in range(31):  # 15 windows pinned as reference, then a full horizon of 15 and the next one
            wp.update(wide_batch(f"m{m}", w, 1000, rng, span_ids))
    return models


def evaluate(models: list[WindowedProfile]) -> tuple[float, int]:
    """Seconds to compare every model's horizon with its reference, and the features compared. The first
    evaluation reads every reference sketch and merges the settled windows; the service keeps both between
    evaluations (every 10 s), so the next one costs less: both are reported."""
    start = time.perf_counter()
    evaluated = 0
    for wp in models:
        if wp.reference is not None:
            evaluated += len(compare(wp.reference, wp.current()).features)
    return time.perf_counter() - start, evaluated


def evaluation_only(repeats: int = 5) -> None:
    """``python -m bench.costs --evaluation``: the drift evaluation of 5,000 features alone, first and the next
    ``repeats`` (their median), so a change to the evaluation is measured in seconds, not minutes."""
    for span_ids in (True, False):
        models = wide_models(span_ids)
        first, evaluated = evaluate(models)
        nexts = sorted(evaluate(models)[0] for _ in range(repeats))
        print(f"drift evaluation of {evaluated:,} features, {'with' if span_ids else 'without'} example predictions: "
              f"first {first:.2f} s, next ones median {nexts[repeats // 2]:.2f} s (min {nexts[0]:.2f}, "
              f"max {nexts[-1]:.2f})")
        if span_ids:
            live = sorted(evaluate_under_traffic(models) for _ in range(repeats))
            print(f"drift evaluation of {evaluated:,} features, next ones with 100 predictions into every model's "
                  f"filling window before each: median {live[repeats // 2]:.2f} s (min {live[0]:.2f}, "
                  f"max {live[-1]:.2f})")
        del models


def evaluate_under_traffic(models: list[WindowedProfile], rows: int = 100) -> float:
    """``evaluate`` after ``rows`` more predictions into each model's filling window (untimed), as between two
    evaluations of a processor taking traffic: what changed since the last evaluation is merged again."""
    rng = np.random.default_rng(len(models))
    for k, wp in enumerate(models):
        wp.update(wide_batch(f"m{k}", 30, rows, rng))
    return evaluate(models)[0]


def main() -> None:
    data = make_request(SPANS)
    parse = median_per_call(lambda: ExportTraceServiceRequest.FromString(data), 50) / SPANS * 1e6
    walk = per_call(lambda: naive_walk(data), 20) / SPANS * 1e6
    decode = median_per_call(lambda: decode_request(data), 200) / SPANS * 1e6
    decode_py = per_call(lambda: decode_request_python(data), 20) / SPANS * 1e6
    # LLM calls (issue 45): without captured content the compiled decoder reads them; with it, genai.py does
    genai_plain, genai_content = genai_request(SPANS, content=False), genai_request(SPANS)
    decode_genai = median_per_call(lambda: decode_request(genai_plain), 200) / SPANS * 1e6
    decode_genai_content = per_call(lambda: decode_request(genai_content), 20) / SPANS * 1e6
    batch = decode_request(data).batches[0]
    kinds = kinds_of(batch)
    grids: dict = {}
    ModelProfile("m", "", grids=grids).update(batch, kinds)  # a model's numeric grids are chosen once
    sketch, sketch_numpy = column_pass_costs(batch, kinds, grids)
    with_ids, without_ids = exemplar_costs(batch, kinds, grids)
    bare, ours, bare_row, per_row = instrumentation_costs()
    keep, keep_bare, join, join_bare, wrong_bytes = wrong_prediction_costs()

    # Memory of one window: 20 features after 512 and after 50,000 rows.
    small = ModelProfile("m", "")
    small.update(batch, kinds)
    big = ModelProfile("m", "")
    for _ in range(100):
        big.update(batch, kinds)
    bytes_small = len(small.to_json().encode()) / 20
    bytes_big = len(big.to_json().encode()) / 20
    exemplar_bytes = big.exemplars.nbytes / 20
    exemplar_json = len(json.dumps(big.exemplars.to_dict())) / 20

    # Resident memory at 100 models × 50 features with the default horizon (15 one-minute windows) and a pinned
    # reference, 1,000 predictions per model per window.
    gc.collect()
    rss_before = rss_mb()
    models = wide_models()
    rss_models = rss_mb() - rss_before
    eval_s, evaluated = evaluate(models)
    eval_next_s, _ = evaluate(models)

    print("| measure | value |")
    print("|---|---|")
    print(f"| protobuf parse alone (baseline) | {parse:.2f} µs/span |")
    print(f"| naive Python attribute walk (baseline) | {walk:.2f} µs/span |")
    print(f"| otel-ml decode, pure-Python reference (`decode_request_python`) | {decode_py:.2f} µs/span "
          f"({decode_py / walk:.2f}× the naive walk's time) |")
    print(f"| otel-ml decode, compiled (`decode_request`{'' if COMPILED else ': NOT BUILT, Python ran'}) | "
          f"{decode:.2f} µs/span ({decode / walk:.3f}× the naive walk's time, {decode / parse:.2f}× "
          "the protobuf parse's time) |")
    print(f"| otel-ml decode of GenAI spans (openai-v2 chat calls, `bench.loadgen.genai_request`), compiled | "
          f"{decode_genai:.2f} µs/span ({decode_genai / decode:.2f}× the classic span's) |")
    print(f"| the same with the messages captured on the span (read by `genai.py`: JSON) | "
          f"{decode_genai_content:.2f} µs/span ({decode_genai_content / decode:.1f}× the classic span's) |")
    print(f"| otel-ml sketch update (`ModelProfile.update`, 512-row batch) | {sketch:.2f} µs/span |")
    print(f"| the same with numpy's column pass (`_columns.c` not built: the fallback, and the code before it) | "
          f"{sketch_numpy:.2f} µs/span ({sketch / sketch_numpy:.2f}× is the compiled pass's share of it) |")
    print(f"| the same into a filling window, spans with ids (example predictions kept) against without | "
          f"{with_ids:.2f} against {without_ids:.2f} µs/span ({with_ids / without_ids:.2f}×) |")
    print(f"| the label join's keeping of a 512-row request with prediction ids, spans' ids kept (a sample of 8) "
          f"against none | {keep:.2f} against {keep_bare:.2f} µs/row ({keep / keep_bare:.2f}×) |")
    print(f"| joining their labels (40% wrong; the wrong ones' spans looked up) with spans kept against none | "
          f"{join:.2f} against {join_bare:.2f} µs/label ({join / join_bare:.2f}×) |")
    print(f"| a performance window's wrong predictions (8, classes) | {wrong_bytes:,} bytes serialized |")
    print(f"| bare OTel SDK span with the same 21 attributes | {bare:.1f} µs |")
    print(f"| `ModelMonitor.record` (one prediction) | {ours:.1f} µs ({ours / bare - 1:+.0%} on the bare span) |")
    print(f"| bare OTel SDK span with the same 21 array attributes of 512 rows | {bare_row:.2f} µs per row |")
    print(f"| `ModelMonitor.record_batch`, 512 rows × 20 features | {per_row:.2f} µs per row "
          f"({per_row / bare_row - 1:+.0%} on the bare span) |")
    print(f"| one window, 20 features, 512 rows | {bytes_small:,.0f} bytes per feature (serialized) |")
    print(f"| one window, 20 features, 51,200 rows | {bytes_big:,.0f} bytes per feature (serialized) |")
    print(f"| its example predictions (18 numeric, 2 categorical features) | {exemplar_bytes:,.0f} bytes per feature "
          f"(bound: 320 + category texts), {exemplar_json:,.0f} serialized |")
    print(f"| 100 models × 50 features: reference + 16 windows of 1,000 rows | {rss_models:,.0f} MB resident growth |")
    print(f"| drift evaluation of {evaluated:,} features (reference vs horizon), first | {eval_s:.2f} s |")
    print(f"| drift evaluation of {evaluated:,} features, next ones (caches kept by the service) | "
          f"{eval_next_s:.2f} s |")


if __name__ == "__main__":
    import sys

    evaluation_only() if "--evaluation" in sys.argv[1:] else main()
