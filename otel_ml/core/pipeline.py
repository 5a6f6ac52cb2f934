"""Where every request goes once a source decoded it: admitted whole or refused whole, made durable by the state
backend, applied to the live models, counted.

Sources: the OTLP/gRPC receiver (in worker processes or in process), OTLP/HTTP, Kafka, and a journal replay at
start (which applies records that were committed already, straight to ``apply``). Apply cannot fail on what the
decoder admitted (decode/limits.py keeps values a sketch cannot take out); should it fail anyway (a bug), the
request is answered INTERNAL, the error counted and logged, and the journal record is replayed the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_ml import semconv as sc
from otel_ml.core.backend import StateBackend
from otel_ml.core.counters import Counters
from otel_ml.core.live import LiveModels
from otel_ml.decode.batch import DecodeResult
from otel_ml.receiver.common import AdmissionControl

log = logging.getLogger(__name__)


class RateLimitedRejectionLog:
    """At most one warning per ``interval`` seconds about rejected spans, with the counts since the last one,
    so a sender stuck on bad data cannot flood the log."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._example = ""
        self._last = 0.0

    def warn(self, result: DecodeResult) -> None:
        with self._lock:
            self._pending.update(result.rejected)
            self._example = result.message() or self._example
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            self._last = now
            counts = ", ".join(f"{reason}={n}" for reason, n in sorted(self._pending.items()))
            self._pending.clear()
        log.warning("rejected spans since the last report: %s; latest: %s", counts, self._example)


class Pipeline:
    """``submit`` is the one entry; ``consume`` decodes first (receivers that decode in this process).

    ``inflight`` bounds the request bytes being worked on (beyond: Overloaded, answered UNAVAILABLE with
    RetryInfo); ``decode`` is the receivers' decoder (bytes or a parsed message, and the signal) for ``consume``."""

    def __init__(self, live: LiveModels, backend: StateBackend, counters: Counters, inflight: AdmissionControl,
                 decode: Callable[..., DecodeResult]) -> None:
        self.live = live
        self.backend = backend
        self.counters = counters
        self.inflight = inflight
        self._decode = decode
        self._rejections = RateLimitedRejectionLog()

    def submit(self, result: DecodeResult, size: int, record: bytes | memoryview | None = None) -> DecodeResult:
        """Commit and apply one decoded request (``size``: its bytes as received; ``record``: its
        ``to_bytes()``, when a worker process sent it so). Raises Overloaded or StorageUnavailable (nothing of it
        was kept)."""
        with self.inflight.admit(size):
            self.backend.commit(result, self.apply, record)
        if result.spans_rejected:
            self._rejections.warn(result)
        return result

    def submit_record(self, record: bytes | memoryview, size: int) -> DecodeResult:
        """``submit`` for a request a receiver worker process decoded, as ``DecodeResult.to_bytes`` encoded it."""
        return self.submit(DecodeResult.from_bytes(record), size, record)

    def consume(self, data: bytes | ExportTraceServiceRequest, signal: str = "traces",
                admitted: bool = False) -> DecodeResult:
        """Decode (an OTLP trace export, or ``signal="logs"``: ground truth), then ``submit``; raises ValueError
        on malformed bytes. ``admitted``: the receiver counted the request against ``inflight`` already (from
        the moment its body started to arrive)."""
        size = 0 if admitted else len(data) if isinstance(data, bytes) else data.ByteSize()
        with self.inflight.admit(size):
            result = self._decode(data, signal=signal)
            self.backend.commit(result, self.apply)
        if result.spans_rejected:
            self._rejections.warn(result)
        return result

    def apply(self, result: DecodeResult, partition: int = 0) -> None:
        """Apply a committed request to the live models (the state backend calls it, in commit order)."""
        with self.live.lock:
            try:
                self.live.apply(result, partition)
            except Exception:
                self.counters.count(sc.METRIC_APPLY_ERRORS, 1)
                log.exception("applying a request failed (a bug: please report it with this log)")
                raise

    def count_refused(self) -> None:
        """A request refused because too much was in flight (here or in a receiver worker process)."""
        self.counters.count(sc.METRIC_REQUESTS_REFUSED, 1, {sc.ATTR_REASON: "overloaded"})
