"""Where spans come in: the OTLP/gRPC TraceService (and LogsService, for ground-truth log records).

The request stays raw bytes until the consumer's decoder reads it, so a compiled decoder can take
the bytes directly. The answer follows OTLP: success once the batch is applied; rejected ML spans
are reported in ``partial_success`` with a message naming each reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otel_ml.auth import token_matches
from otel_ml.decode.batch import DecodeResult
from otel_ml.receiver.common import export_logs_response, export_response, refusal_of, retry_trailers
from otel_ml.receiver.config import OtlpGrpcReceiverConfig, TlsConfig

log = logging.getLogger(__name__)

TRACE_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}

class OtlpTraceReceiver:
    """gRPC server for ``TraceService/Export`` and ``LogsService/Export``; hands each request's bytes to
    ``consume(data, signal)`` (signal ``traces`` or ``logs``)."""

    def __init__(self, config: OtlpGrpcReceiverConfig, consume: Callable[[bytes, str], DecodeResult],
                 tls: TlsConfig | None = None, bearer_token: str | None = None, reuse_port: bool = False) -> None:
        self.config = config
        self.reuse_port = reuse_port
        """SO_REUSEPORT, for receiver worker processes sharing one port; off otherwise, so that a second
        processor on the same port fails to start instead of silently taking half of the traffic."""
        self._consume = consume
        self.tls = tls or TlsConfig()
        self._token = bearer_token.encode() if bearer_token else None
        self._server: grpc.Server | None = None
        self.port: int | None = None

    def start(self) -> None:
        options = [
            ("grpc.max_receive_message_length", self.config.max_message_bytes),
            ("grpc.so_reuseport", int(self.reuse_port)),
            ("grpc.max_connection_idle_ms", int(self.config.max_connection_idle_seconds * 1000)),
            ("grpc.max_connection_age_ms", int(self.config.max_connection_age_seconds * 1000)),
            ("grpc.max_connection_age_grace_ms", int(self.config.max_connection_age_grace_seconds * 1000)),
        ]
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.config.max_workers, thread_name_prefix="otlp-grpc"),
            options=options,
        )
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(
                self._export,
                request_deserializer=None,  # raw bytes: the decoder parses
                response_serializer=ExportTraceServiceResponse.SerializeToString,
            )},
        )
        logs = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.logs.v1.LogsService",
            {"Export": grpc.unary_unary_rpc_method_handler(
                self._export_logs, request_deserializer=None,
                response_serializer=ExportLogsServiceResponse.SerializeToString)},
        )
        self._server.add_generic_rpc_handlers((handler, logs))
        credentials = None
        if self.tls.enabled:
            client_ca = Path(self.tls.client_ca_file).read_bytes() if self.tls.client_ca_file else None
            credentials = grpc.ssl_server_credentials(
                [(Path(self.tls.key_file).read_bytes(), Path(self.tls.cert_file).read_bytes())],  # type: ignore[arg-type]
                root_certificates=client_ca, require_client_auth=client_ca is not None)
        try:
            self.port = (self._server.add_secure_port(self.config.endpoint, credentials) if self.tls.enabled
                         else self._server.add_insecure_port(self.config.endpoint))
        except RuntimeError:  # grpcio's "Failed to bind to address" (older versions return 0)
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot serve the OTLP/gRPC receiver (receiver.otlp_grpc.endpoint) on "
                          f"{self.config.endpoint}: address in use or not valid")
        self._server.start()
        host = self.config.endpoint.rpartition(":")[0]
        log.info("OTLP/gRPC trace receiver on %s:%d", host, self.port)

    def shutdown(self, grace: float = 2.0) -> None:
        if self._server is not None:
            self._server.stop(grace).wait()

    def _authorized(self, context: grpc.ServicerContext) -> bool:
        if self._token is None:
            return True
        given = next((v for k, v in context.invocation_metadata() if k == "authorization"), "")
        return token_matches(given.decode("utf-8", "replace") if isinstance(given, bytes) else given, self._token)

    def _export(self, request: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        return export_response(self._call(request, context, "traces"))

    def _export_logs(self, request: bytes, context: grpc.ServicerContext) -> ExportLogsServiceResponse:
        return export_logs_response(self._call(request, context, "logs"))

    def _call(self, request: bytes, context: grpc.ServicerContext, signal: str) -> DecodeResult:
        if not self._authorized(context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        try:
            return self._consume(request, signal)
        except Exception as e:
            refusal = refusal_of(e)
            if refusal.retry_after_seconds is not None:
                context.set_trailing_metadata(retry_trailers(refusal.message, refusal.retry_after_seconds))
            context.abort(_GRPC_CODES[refusal.grpc_code], refusal.message)
            raise  # abort raises; for type checkers
