"""What a receiver does to a request before the processor applies it: decode, then hash what privacy asks for.

Runs in the main process or in a receiver worker process, so it imports only the decoder (no sketches, no
storage, no SDK): a worker starts in a fraction of the time and memory.
"""

from __future__ import annotations

import time

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_ml.decode import DecodeLimits, DecodeResult, decode_request
from otel_ml.decode.batch import SPAN_IDS_BYTES
from otel_ml.decode.genai import GenAiConfig
from otel_ml.decode.outcomes import decode_logs_request
from otel_ml.decode.privacy import hash_batch, hash_labels, hashes_prediction

TRACES = "traces"
LOGS = "logs"

EXAMPLES_EVERY_NS = 1_000_000_000
"""A (model, version)'s requests keep their spans' trace and span ids (what example predictions point at:
profile/exemplars.py) at most once a second in each decoding process. The ids of every span would make each
journal record 13% larger and each apply 13% slower (``python -m bench.costs``), for examples that one request a
second keeps as fresh as anyone reads them; a model with fewer requests keeps the ids of every one."""
_ids_kept_at: dict[tuple[str, str], int] = {}
_NO_IDS = np.empty((0, SPAN_IDS_BYTES), np.uint8)


def keep_ids_once_a_second(result: DecodeResult, now_ns: int | None = None, every_ns: int = EXAMPLES_EVERY_NS
                           ) -> None:
    """Drop the span ids of ``result``'s batches whose (model, version) kept them less than ``every_ns`` ago (in
    this process)."""
    now = time.monotonic_ns() if now_ns is None else now_ns
    for batch in result.batches:
        if not len(batch.span_ids):
            continue
        last = _ids_kept_at.get(batch.key)
        if (last is not None and now - last < every_ns) or not batch.span_ids[:, :16].any():
            batch.span_ids = _NO_IDS  # (all-zero trace ids: spans without one, which no back end can show)
        else:
            _ids_kept_at[batch.key] = now
    if len(_ids_kept_at) > 100_000:  # models come and go: forget them all rather than grow
        _ids_kept_at.clear()


def decode_for_ingest(data: bytes | ExportTraceServiceRequest, limits: DecodeLimits, hash_key: bytes | None,
                      hash_features: list[str], signal: str = TRACES, genai: GenAiConfig | None = None,
                      ids_every_ns: int | None = EXAMPLES_EVERY_NS) -> DecodeResult:
    """Decode a request (an OTLP trace export, or a logs export with ``signal="logs"``: ground truth) and hash
    its categorical values (``hash_key`` set), before anything is sketched or journaled. A module-level
    function, so a ``functools.partial`` of it pickles to worker processes. ``genai``: whether (and how) GenAI
    spans are predictions (default: they are). ``ids_every_ns``: how often a (model, version) keeps its spans' ids
    (``keep_ids_once_a_second``); None: every request (the result a function of the request alone)."""
    result = decode_logs_request(data, limits, genai is None or (genai.enabled and genai.evaluations)) \
        if signal == LOGS else decode_request(data, limits, genai)
    if ids_every_ns is not None:
        keep_ids_once_a_second(result, every_ns=ids_every_ns)
    if hash_key is not None:
        for batch in result.batches:
            hash_batch(batch, hash_key, hash_features)
        if hashes_prediction(hash_features):
            for labels in result.labels:  # a text label is compared with a text prediction: hashed alike
                hash_labels(labels, hash_key)
    return result
