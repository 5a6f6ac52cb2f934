"""Where spans come in over HTTP: OTLP/HTTP ``POST /v1/traces``, binary protobuf or JSON, optionally gzip.

Answers as the OTLP/HTTP spec says: 200 with an ExportTraceServiceResponse in the request's encoding
(partial_success for rejected ML spans), 400 with a google.rpc.Status for a payload that cannot be
parsed, 413 over the size limit, 415 for other content types, 404 elsewhere.
``GET /healthz`` answers 200 while the process serves; ``GET /readyz`` 200 when the processor can accept data
and 503 with the reason when it cannot (e.g. its state cannot be written). Neither needs the bearer token.
"""

from __future__ import annotations

import hmac
import logging
import ssl
import threading
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_ml.decode.batch import DecodeResult
from otel_ml.receiver.common import export_response, refusal_of
from otel_ml.receiver.config import OtlpHttpReceiverConfig, TlsConfig

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class OtlpHttpTraceReceiver:
    """HTTP server for ``POST /v1/traces``; hands each request to ``consume`` (bytes or a parsed message)."""

    def __init__(self, config: OtlpHttpReceiverConfig,
                 consume: Callable[[bytes | ExportTraceServiceRequest], DecodeResult],
                 tls: TlsConfig | None = None, bearer_token: str | None = None,
                 readiness: Callable[[], tuple[bool, str]] | None = None) -> None:
        self.config = config
        self._consume = consume
        self._readiness = readiness or (lambda: (True, "ready"))
        self.tls = tls or TlsConfig()
        self._expected_auth = f"Bearer {bearer_token}".encode() if bearer_token else None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def start(self) -> None:
        host, _, port = self.config.endpoint.rpartition(":")
        self._server = ThreadingHTTPServer((host.strip("[]"), int(port)), self._handler())
        self._server.daemon_threads = True
        if self.tls.enabled:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self.tls.cert_file, self.tls.key_file)  # type: ignore[arg-type]
            if self.tls.client_ca_file:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(self.tls.client_ca_file)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-http", daemon=True)
        self._thread.start()
        log.info("OTLP/HTTP trace receiver on %s://%s:%d/v1/traces", "https" if self.tls.enabled else "http", host,
                 self.port)

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self
        limit = self.config.max_message_bytes

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes, content_type: str, **headers: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(body)

            def _error(self, code: int, message: str, content_type: str, status: status_pb2.Status | None = None,
                       **headers: str) -> None:
                if status is None:
                    grpc_code = {400: 3, 413: 8, 503: 14}.get(code, 2)  # INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...
                    status = status_pb2.Status(code=grpc_code, message=message)
                body = (json_format.MessageToJson(status).encode() if content_type == JSON
                        else status.SerializeToString())
                self._send(code, body, content_type, **headers)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/healthz":
                    self._send(200, b"ok\n", "text/plain")
                elif path == "/readyz":
                    ready, why = receiver._readiness()
                    self._send(200 if ready else 503, why.encode() + b"\n", "text/plain; charset=utf-8")
                else:
                    self._send(404, b"GET serves /healthz and /readyz; spans go to POST /v1/traces\n", "text/plain")

            def do_POST(self) -> None:
                if receiver._expected_auth is not None:
                    given = self.headers.get("Authorization", "").encode()
                    if not hmac.compare_digest(given, receiver._expected_auth):  # constant time
                        self.rfile.read(int(self.headers.get("Content-Length") or 0))
                        self._send(401, b"", "text/plain", WWW_Authenticate="Bearer")
                        return
                content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
                reply_type = JSON if content_type == JSON else PROTOBUF
                if self.path.split("?")[0] != "/v1/traces":
                    self._error(404, "only POST /v1/traces is served", reply_type)
                    return
                if content_type not in (PROTOBUF, JSON):
                    self._error(415, f"unsupported Content-Type {content_type!r}; use {PROTOBUF} or {JSON}",
                                reply_type)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > limit:
                    self.rfile.read(length)  # drain so the connection stays usable
                    self._error(413, f"request of {length} bytes is over the limit of {limit}", reply_type)
                    return
                body = self.rfile.read(length)
                encoding = self.headers.get("Content-Encoding", "").lower()
                try:
                    if encoding == "gzip":
                        body = _gunzip(body, limit)
                    elif encoding not in ("", "identity"):
                        self._error(415, f"unsupported Content-Encoding {encoding!r}", reply_type)
                        return
                    if content_type == JSON:
                        message = json_format.Parse(body.decode("utf-8"), ExportTraceServiceRequest(),
                                                    ignore_unknown_fields=True)
                        result = receiver._consume(message)
                    else:
                        result = receiver._consume(body)
                except Exception as e:
                    refusal = refusal_of(e)
                    headers = {} if refusal.retry_after_seconds is None else {
                        "Retry_After": str(max(1, round(refusal.retry_after_seconds)))}
                    self._error(refusal.http_status, refusal.message, reply_type, refusal.status(), **headers)
                    return
                response = export_response(result)
                out = (json_format.MessageToJson(response).encode() if reply_type == JSON
                       else response.SerializeToString())
                self._send(200, out, reply_type)

        return Handler


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress, refusing output over ``limit`` bytes (a small gzip bomb must not exhaust memory)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(data, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise ValueError(f"decompressed request is over the limit of {limit} bytes")
    return out

