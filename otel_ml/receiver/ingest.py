"""What a receiver does to a request before the processor applies it: decode, then hash what privacy asks for.

Runs in the main process or in a receiver worker process, so it imports only the decoder (no sketches, no
storage, no SDK): a worker starts in a fraction of the time and memory.
"""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_ml.decode import DecodeLimits, DecodeResult, decode_request
from otel_ml.decode.genai import GenAiConfig
from otel_ml.decode.outcomes import decode_logs_request
from otel_ml.decode.privacy import hash_batch, hash_labels, hashes_prediction

TRACES = "traces"
LOGS = "logs"


def decode_for_ingest(data: bytes | ExportTraceServiceRequest, limits: DecodeLimits, hash_key: bytes | None,
                      hash_features: list[str], signal: str = TRACES, genai: GenAiConfig | None = None) -> DecodeResult:
    """Decode a request (an OTLP trace export, or a logs export with ``signal="logs"``: ground truth) and hash
    its categorical values (``hash_key`` set), before anything is sketched or journaled. A module-level
    function, so a ``functools.partial`` of it pickles to worker processes. ``genai``: whether (and how) GenAI
    spans are predictions (default: they are)."""
    result = decode_logs_request(data, limits, genai is None or (genai.enabled and genai.evaluations)) \
        if signal == LOGS else decode_request(data, limits, genai)
    if hash_key is not None:
        for batch in result.batches:
            hash_batch(batch, hash_key, hash_features)
        if hashes_prediction(hash_features):
            for labels in result.labels:  # a text label is compared with a text prediction: hashed alike
                hash_labels(labels, hash_key)
    return result
