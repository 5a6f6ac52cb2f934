"""Where spans come in over HTTP: OTLP/HTTP ``POST /v1/traces``, binary protobuf or JSON, optionally gzip.

Answers as the OTLP/HTTP spec says: 200 with an ExportTraceServiceResponse in the request's encoding
(partial_success for rejected ML spans), 400 with a google.rpc.Status for a payload that cannot be
parsed, 401 without the bearer token, 408 for a body that does not arrive, 413 over the size limit, 415 for
other content types, 503 with Retry-After and RetryInfo when overloaded or unable to write its state, 404
elsewhere. ``GET /healthz`` answers 200 while the process serves; ``GET /readyz`` 200 when the processor can
accept data and 503 with the reason when it cannot. Neither needs the bearer token.

Served by the processor's one HTTP server (otel_ml/http_server.py: timeouts, connection cap, TLS off the
accept path); the work of a request (parse, decode, apply, journal) runs in its handler threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_ml.auth import token_matches
from otel_ml.decode.batch import DecodeResult
from otel_ml.http_server import HttpServer, Listener, health_routes, server_tls_context
from otel_ml.receiver.common import (
    AdmissionControl,
    Overloaded,
    decompress,
    export_logs_response,
    export_response,
    refusal_of,
)
from otel_ml.receiver.config import OtlpHttpReceiverConfig, TlsConfig

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
Reply = tuple[int, bytes, str, dict[str, str]]


class OtlpHttpTraceReceiver:
    """``POST /v1/traces`` (and health) on the HttpServer; hands each request to ``consume`` (bytes or a parsed
    message)."""

    def __init__(self, config: OtlpHttpReceiverConfig,
                 consume: Callable[..., DecodeResult],
                 tls: TlsConfig | None = None, bearer_token: str | None = None,
                 readiness: Callable[[], tuple[bool, str]] | None = None, server: HttpServer | None = None,
                 admission: AdmissionControl | None = None) -> None:
        """``consume(message, signal, admitted)``: a request's bytes (or parsed JSON message) into the pipeline.
        With ``admission``, a request's bytes count against the in-flight bound from the moment its body starts
        to arrive (its Content-Length, or the size limit when it has none), and ``consume`` is told so."""
        self.config = config
        self._consume = consume
        self._admission = admission
        self.tls = tls or TlsConfig()
        self._token = bearer_token.encode() if bearer_token else None
        self._readiness = readiness or (lambda: (True, "ready"))
        self._own_server = server is None
        self.server = server or HttpServer()
        self._listener: Listener | None = None
        self.port: int | None = None

    def start(self) -> None:
        self.server.start()
        ctx = (server_tls_context(self.tls.cert_file, self.tls.key_file, self.tls.client_ca_file)  # type: ignore[arg-type]
               if self.tls.enabled else None)
        self._listener = self.server.listen("the OTLP/HTTP receiver (receiver.otlp_http.endpoint)",
                                            self.config.endpoint, [
                                                ("POST", "/v1/traces", self._traces),
                                                ("POST", "/v1/logs", self._logs),
                                                *health_routes(self._readiness),
                                                ("*", "/{tail:.*}", self._not_found)],
                                            ctx, self.config.max_message_bytes)
        self.port = self._listener.port
        log.info("OTLP/HTTP trace receiver on %s://%s:%d/v1/traces", "https" if self.tls.enabled else "http",
                 self.config.endpoint.rpartition(":")[0], self.port)

    def shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._own_server:
            self.server.shutdown()

    # --- handlers (on the event loop) ----------------------------------------------------------------
    async def _not_found(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="spans go to POST /v1/traces, ground-truth logs to POST /v1/logs; "
                                             "GET /healthz and /readyz tell health\n")

    async def _traces(self, request: web.Request) -> web.Response:
        return await self._export(request, "traces")

    async def _logs(self, request: web.Request) -> web.Response:
        return await self._export(request, "logs")

    async def _export(self, request: web.Request, signal: str) -> web.Response:
        if not token_matches(request.headers.get("Authorization", ""), self._token):
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        reply_type = JSON if content_type == JSON else PROTOBUF
        limit = self.config.max_message_bytes
        if request.content_length is not None and request.content_length > limit:
            return _reply(*_error(413, f"request of {request.content_length} bytes is over the limit of {limit}",
                                  reply_type), close=True)
        if self._admission is None:
            return await self._receive(request, content_type, reply_type, signal)
        # Bodies being received count against limits.max_inflight_bytes too: many slow senders of large bodies
        # must not hold (max_connections × the size limit) of memory.
        try:
            with self._admission.admit(request.content_length if request.content_length is not None else limit):
                return await self._receive(request, content_type, reply_type, signal)
        except Overloaded as e:
            return _reply(*_error(503, str(e), reply_type, headers={
                "Retry-After": str(max(1, round(e.retry_after_seconds)))}), close=True)

    async def _receive(self, request: web.Request, content_type: str, reply_type: str, signal: str) -> web.Response:
        limit = self.config.max_message_bytes
        try:  # wait_for, not asyncio.timeout: that is Python 3.11+, and 3.10 is supported
            body = await asyncio.wait_for(request.read(), self.server.config.body_timeout_seconds)
        except web.HTTPRequestEntityTooLarge:
            return _reply(*_error(413, f"request over the limit of {limit} bytes", reply_type), close=True)
        except (TimeoutError, asyncio.TimeoutError):  # one class from 3.11 on, two before
            return _reply(*_error(408, "the request body did not arrive in time", reply_type), close=True)
        encoding = request.headers.get("Content-Encoding", "").lower()
        return _reply(*await self.server.blocking(self._handle, content_type, encoding, body, reply_type, signal))

    # --- the request's work (in a handler thread) ----------------------------------------------------
    def _handle(self, content_type: str, encoding: str, body: bytes, reply_type: str, signal: str = "traces") -> Reply:
        if content_type not in (PROTOBUF, JSON):
            return _error(415, f"unsupported Content-Type {content_type!r}; use {PROTOBUF} or {JSON}", reply_type)
        try:
            if encoding in ("gzip", "deflate"):
                body = decompress(body, self.config.max_message_bytes, encoding)
            elif encoding not in ("", "identity"):
                return _error(415, f"unsupported Content-Encoding {encoding!r}", reply_type)
            if content_type == JSON:
                message = json_format.Parse(body.decode("utf-8"), ExportLogsServiceRequest() if signal == "logs"
                                            else ExportTraceServiceRequest(), ignore_unknown_fields=True)
                result = self._consume(message, signal, self._admission is not None)
            else:
                result = self._consume(body, signal, self._admission is not None)
        except Exception as e:
            refusal = refusal_of(e)
            headers = {} if refusal.retry_after_seconds is None else {
                "Retry-After": str(max(1, round(refusal.retry_after_seconds)))}
            return _error(refusal.http_status, refusal.message, reply_type, refusal.status(), headers)
        response = export_logs_response(result) if signal == "logs" else export_response(result)
        out = json_format.MessageToJson(response).encode() if reply_type == JSON else response.SerializeToString()
        return 200, out, reply_type, {}


def _error(code: int, message: str, content_type: str, status: status_pb2.Status | None = None,
           headers: dict[str, str] | None = None) -> Reply:
    if status is None:
        grpc_code = {400: 3, 408: 4, 413: 8, 415: 3, 503: 14}.get(code, 2)  # INVALID_ARGUMENT, DEADLINE_EXCEEDED...
        status = status_pb2.Status(code=grpc_code, message=message)
    body = json_format.MessageToJson(status).encode() if content_type == JSON else status.SerializeToString()
    return code, body, content_type, headers or {}


def _reply(code: int, body: bytes, content_type: str, headers: dict[str, str], close: bool = False) -> web.Response:
    response = web.Response(status=code, body=body, content_type=content_type, headers=headers)
    if close:  # the rest of an unread body would be taken for the next request
        response.force_close()
    return response


