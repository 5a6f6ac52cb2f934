"""Where spans become columns: OTLP trace requests → one ColumnarBatch per (model, version)."""

from otel_ml.decode.batch import ColumnarBatch, DecodeResult
from otel_ml.decode.otlp import DecodeLimits, decode_request

__all__ = ["ColumnarBatch", "DecodeLimits", "DecodeResult", "decode_request"]
