"""What multivariate drift (PCA reconstruction error, otel_ml/profile/reconstruction.py) costs at ingest.

    .venv/bin/python -m bench.multivariate_cost

Per batch of 512 rows, in-process and measured in the same run: each row's reconstruction error at 20 and at 200
numeric features (standard normal inputs mixed through a random matrix, so a few components carry the variance),
beside the window update (sketches of every column) of the same batch, which is what ingest costs without it.
Prints a Markdown table: µs per row, and the window update with the error column added as a ratio of without.

A second table: the correlation test's moments (profile/comoments.py) at 10 features inside the window update of
20 numeric features, and a 384-d ``ml.embedding``: decoding a 512-row batch span that carries one against the same
span without it (both by the compiled decoder), its projection, and the window update of its 17 columns.
"""

from __future__ import annotations

import time

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otel_ml import semconv
from otel_ml.decode.batch import ColumnarBatch
from otel_ml.decode.embedding import embedding_columns
from otel_ml.decode.limits import DecodeLimits
from otel_ml.decode.otlp import decode_request
from otel_ml.profile.comoments import Comoments
from otel_ml.profile.model import ModelProfile
from otel_ml.profile.reconstruction import Reconstruction
from otel_ml.profile.sketch import NUMERIC

ROWS = 512


def per_call(fn, repeat: int = 200) -> float:  # type: ignore[no-untyped-def]
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    print("## Multivariate drift at ingest (bench/multivariate_cost.py)\n")
    print("Command: `.venv/bin/python -m bench.multivariate_cost`.\n")
    print("| numeric features | components (65% of variance) | reconstruction error, µs per row | window update, "
          "µs per row | window update + error vs without |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for d in (20, 200):
        mix = rng.normal(0, 1, (d, d)) * np.where(rng.random((d, d)) < 0.1, 1.0, 0.05)
        reference = rng.normal(0, 1, (20_000, d)) @ mix
        names = [f"f{i}" for i in range(d)]
        model = Reconstruction.fit({n: reference[:, i] for i, n in enumerate(names)}, {})
        x = rng.normal(0, 1, (ROWS, d)) @ mix
        numeric = {n: x[:, i] for i, n in enumerate(names)}
        errors = per_call(lambda: model.errors(numeric, {}, ROWS))  # noqa: B023
        kinds = dict.fromkeys(names, NUMERIC)
        plain = ColumnarBatch("m", "", ROWS, np.zeros(ROWS, np.int64), np.ones(ROWS), numeric=dict(numeric))
        with_error = ColumnarBatch("m", "", ROWS, np.zeros(ROWS, np.int64), np.ones(ROWS),
                                   numeric={**numeric, semconv.MULTIVARIATE_FEATURE: model.errors(numeric, {}, ROWS)})
        profile, profile2 = ModelProfile("m", ""), ModelProfile("m", "")
        update = per_call(lambda: profile.update(plain, kinds))  # noqa: B023
        kinds2 = {**kinds, semconv.MULTIVARIATE_FEATURE: NUMERIC}
        update2 = per_call(lambda: profile2.update(with_error, kinds2))  # noqa: B023
        us = 1e6 / ROWS
        print(f"| {d} | {model.components.shape[0]} | {errors * us:.2f} | {update * us:.2f} | "
              f"{(update2 + errors) / update:.2f}× |")
    correlations_and_embeddings(rng)


def batch_request(rows: int, features: dict[str, np.ndarray], vectors: np.ndarray | None) -> bytes:
    """One OTLP request: a batch span of ``rows`` predictions, its features as arrays, maybe an ``ml.embedding``."""
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add(name="predict", start_time_unix_nano=1,
                                                                end_time_unix_nano=2)

    def attr(key: str, value: AnyValue) -> None:
        span.attributes.append(KeyValue(key=key, value=value))

    attr(semconv.MODEL_NAME, AnyValue(string_value="m"))
    attr(semconv.BATCH_SIZE, AnyValue(int_value=rows))
    for name, column in features.items():
        value = AnyValue()
        value.array_value.values.extend(AnyValue(double_value=float(x)) for x in column)
        attr(semconv.FEATURE_PREFIX + name, value)
    if vectors is not None:
        value = AnyValue()
        value.array_value.values.extend(AnyValue(double_value=float(x)) for x in vectors.ravel())
        attr(semconv.EMBEDDING, value)
        attr(semconv.EMBEDDING_DIMENSION, AnyValue(int_value=vectors.shape[1]))
    return req.SerializeToString()


def correlations_and_embeddings(rng: np.random.Generator) -> None:
    us = 1e6 / ROWS
    names = [f"f{i}" for i in range(20)]
    x = rng.normal(0, 1, (ROWS, 20)) @ rng.normal(0, 1, (20, 20))
    numeric = {n: x[:, i] for i, n in enumerate(names)}
    kinds = dict.fromkeys(names, NUMERIC)
    batch = ColumnarBatch("m", "", ROWS, np.zeros(ROWS, np.int64), np.ones(ROWS), numeric=numeric)
    basis = Comoments.chosen(numeric, 10)
    plain, correlated = ModelProfile("m", ""), ModelProfile("m", "")
    update = per_call(lambda: plain.update(batch, kinds))
    update_corr = per_call(lambda: correlated.update(batch, kinds, basis))
    print("\n| what (per row, batches of 512) | µs per row | vs the baseline beside it |")
    print("|---|---|---|")
    print(f"| window update, 20 numeric features | {update * us:.2f} | 1.00× |")
    print(f"| same, with the correlation moments of 10 of them | {update_corr * us:.2f} | "
          f"{update_corr / update:.2f}× |")
    vectors = rng.normal(0, 1, (ROWS, 384))
    without = batch_request(ROWS, numeric, None)
    with_embedding = batch_request(ROWS, numeric, vectors)
    limits = DecodeLimits()
    decode_plain = per_call(lambda: decode_request(without, limits), repeat=20)
    decode_embedding = per_call(lambda: decode_request(with_embedding, limits), repeat=20)
    project = per_call(lambda: embedding_columns(vectors))
    columns = embedding_columns(vectors)
    emb_batch = ColumnarBatch("m", "", ROWS, np.zeros(ROWS, np.int64), np.ones(ROWS), numeric={**numeric, **columns})
    emb_kinds = {**kinds, **dict.fromkeys(columns, NUMERIC)}
    emb_profile = ModelProfile("m", "")
    update_emb = per_call(lambda: emb_profile.update(emb_batch, emb_kinds))
    print(f"| decode, the span's 20 features (compiled decoder) | {decode_plain * us:.2f} | 1.00× |")
    print(f"| decode, the same span with a 384-d ml.embedding (projection included) | "
          f"{decode_embedding * us:.2f} | {decode_embedding / decode_plain:.1f}× |")
    print(f"| projection alone (16 directions and the norm) | {project * us:.2f} | |")
    print(f"| window update, 20 features + the embedding's 17 columns | {update_emb * us:.2f} | "
          f"{update_emb / update:.2f}× of 20 features |")


if __name__ == "__main__":
    main()
