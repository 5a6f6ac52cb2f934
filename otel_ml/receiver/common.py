"""What every OTLP trace receiver answers for a decoded request, and for one it could not take."""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsPartialSuccess, ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from otel_ml.decode.batch import DecodeResult

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The processor holds as much unfinished work as it may: answer UNAVAILABLE (HTTP 503) with RetryInfo."""

    def __init__(self, message: str, retry_after_seconds: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class StorageUnavailable(Overloaded):
    """The processor's state could not be written (disk full, I/O error): nothing of the request was applied;
    answer UNAVAILABLE (HTTP 503) with RetryInfo so the sender keeps the data and retries."""


class AdmissionControl:
    """Bounds the request bytes being worked on at once; beyond it, ``admit`` raises Overloaded (the sender
    retries after RetryInfo) instead of the process running out of memory. One request is always admitted.

    >>> gate = AdmissionControl(max_bytes=100)
    >>> with gate.admit(80):
    ...     gate.admit(30).__enter__()
    Traceback (most recent call last):
    ...
    otel_ml.receiver.common.Overloaded: otel-ml is busy (80 bytes in flight); retry later
    """

    def __init__(self, max_bytes: int, retry_after_seconds: float = 1.0,
                 on_refuse: Callable[[], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self.retry_after_seconds = retry_after_seconds
        self.on_refuse = on_refuse
        self._lock = threading.Lock()
        self.inflight = 0

    @contextlib.contextmanager
    def admit(self, size: int) -> Iterator[None]:
        with self._lock:
            if self.inflight and self.inflight + size > self.max_bytes:
                busy = self.inflight
                refused = True
            else:
                self.inflight += size
                refused = False
        if refused:
            if self.on_refuse is not None:
                self.on_refuse()
            raise Overloaded(f"otel-ml is busy ({busy} bytes in flight); retry later", self.retry_after_seconds)
        try:
            yield
        finally:
            with self._lock:
                self.inflight -= size


@dataclass(frozen=True)
class Refusal:
    """How a receiver answers a request it could not take, the same over gRPC, HTTP and the worker pipe."""

    message: str
    grpc_code: int
    """google.rpc.Code: 3 INVALID_ARGUMENT, 13 INTERNAL, 14 UNAVAILABLE."""
    http_status: int
    retry_after_seconds: float | None = None
    """Set: the answer carries RetryInfo (and HTTP Retry-After); the sender keeps the data and retries."""

    def status(self) -> status_pb2.Status:
        """The google.rpc.Status of this answer, with RetryInfo when it has a delay."""
        if self.retry_after_seconds is None:
            return status_pb2.Status(code=self.grpc_code, message=self.message)
        return retry_status(self.grpc_code, self.message, self.retry_after_seconds)


class Refused(Exception):
    """A refusal decided elsewhere (a receiver worker's main process), raised where the request came in."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


MALFORMED = (ValueError, EOFError, zlib.error, json_format.ParseError)
"""What parsing a request (protobuf, JSON, gzip) raises on bad bytes."""


def refusal_of(error: BaseException) -> Refusal:
    """The answer to a request whose handling raised ``error``; logs the unexpected ones (bugs)."""
    if isinstance(error, Refused):
        return error.refusal
    if isinstance(error, Overloaded):  # includes StorageUnavailable: nothing was kept, retry later
        return Refusal(str(error), 14, 503, error.retry_after_seconds)
    if isinstance(error, MALFORMED):
        return Refusal(f"malformed ExportTraceServiceRequest: {error}", 3, 400)
    if isinstance(error, (OSError, TimeoutError)):  # not known to be durable: the sender must retry
        return Refusal(f"could not make the request durable: {error}", 14, 503)
    log.error("failed to process an export request", exc_info=error)  # a bug: say so, keep serving
    return Refusal(f"otel-ml failed on this request: {type(error).__name__}", 13, 500)


def submit_until_taken(submit: Callable[[DecodeResult, int, bytes | None], object], stop: threading.Event,
                       result: DecodeResult, size: int, record: bytes | None, where: str) -> bool:
    """What a source that holds its place (Kafka, Kinesis) does with one message: submit it, waiting out each
    refusal (overloaded, storage failing) for its retry delay. False: ``stop`` was set first."""
    while not stop.is_set():
        try:
            submit(result, size, record)
            return True
        except Exception as e:
            refusal = refusal_of(e)
            delay = refusal.retry_after_seconds or 1.0
            log.warning("%s not applied (%s); retrying in %.1f s", where, refusal.message, delay)
            stop.wait(delay)
    return False


def retry_status(code: int, message: str, retry_after_seconds: float) -> status_pb2.Status:
    """A google.rpc.Status carrying RetryInfo, as OTLP asks for throttling answers."""
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromNanoseconds(int(retry_after_seconds * 1e9))
    status = status_pb2.Status(code=code, message=message)
    status.details.add().Pack(info)
    return status


def retry_trailers(message: str, retry_after_seconds: float) -> tuple[tuple[str, bytes], ...]:
    """gRPC trailers for UNAVAILABLE with RetryInfo: both spellings, since Go clients (the Collector) read
    ``grpc-status-details-bin`` and the Python SDK reads ``google.rpc.retryinfo-bin``."""
    status = retry_status(14, message, retry_after_seconds)  # 14 = UNAVAILABLE
    return (("grpc-status-details-bin", status.SerializeToString()),
            ("google.rpc.retryinfo-bin", status.details[0].value))  # the packed RetryInfo's bytes


def export_logs_response(result: DecodeResult) -> ExportLogsServiceResponse:
    """The logs answer: success, with ``partial_success`` naming each reason ground-truth records were rejected."""
    if result.spans_rejected:
        return ExportLogsServiceResponse(partial_success=ExportLogsPartialSuccess(
            rejected_log_records=result.spans_rejected, error_message=result.message()))
    return ExportLogsServiceResponse()


def export_response(result: DecodeResult) -> ExportTraceServiceResponse:
    """Success, with ``partial_success`` naming each rejection reason when ML spans were rejected."""
    if result.spans_rejected:
        return ExportTraceServiceResponse(partial_success=ExportTracePartialSuccess(
            rejected_spans=result.spans_rejected, error_message=result.message()))
    return ExportTraceServiceResponse()


def decompress(data: bytes, limit: int, encoding: str = "gzip") -> bytes:
    """Decompress all of a body, refusing output over ``limit`` bytes in total (a small bomb must not exhaust
    memory). ``encoding``: gzip; deflate or zlib (the zlib format); flate (raw deflate). gzip: every member, as
    Go's gzip reader (the Collector's) reads them; a truncated member or bytes after the last one are an error,
    not ignored (they would be spans lost without a word).

    >>> import gzip
    >>> decompress(gzip.compress(b"ab") + gzip.compress(b"cd"), 10)
    b'abcd'
    >>> decompress(gzip.compress(b"ab") + b"junk", 10)
    Traceback (most recent call last):
    ...
    ValueError: gzip body: 4 bytes after the last member are not a gzip member
    >>> decompress(gzip.compress(b"abc") * 2, 5)
    Traceback (most recent call last):
    ...
    ValueError: decompressed request is over the limit of 5 bytes
    >>> c = zlib.compressobj(wbits=-zlib.MAX_WBITS); decompress(c.compress(b"ab") + c.flush(), 10, "flate")
    b'ab'
    """
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "flate": -zlib.MAX_WBITS}.get(encoding, zlib.MAX_WBITS)
    out = bytearray()
    rest = data
    while True:
        d = zlib.decompressobj(wbits)
        try:
            out += d.decompress(rest, limit + 1 - len(out))
        except zlib.error as e:
            if rest is not data and encoding == "gzip":
                raise ValueError(f"gzip body: {len(rest)} bytes after the last member are not a gzip member") from e
            raise ValueError(f"{encoding} body: not valid {encoding} ({e})") from e
        if len(out) > limit or d.unconsumed_tail:
            raise ValueError(f"decompressed request is over the limit of {limit} bytes")
        if not d.eof:
            raise ValueError(f"{encoding} body: truncated (the stream does not end)")
        rest = d.unused_data
        if not rest:
            return bytes(out)
        if encoding != "gzip":
            raise ValueError(f"{encoding} body: {len(rest)} bytes after the end of the stream")
