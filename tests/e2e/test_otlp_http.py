"""OTLP/HTTP: the plain OTel SDK's HTTP exporter, JSON payloads, gzip, and the error answers."""

from __future__ import annotations

import gzip
import json
import time
import urllib.error
import urllib.request

import numpy as np
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.support import make_rows, select, send_rows, wait_for


def post(port: int, body: bytes, content_type: str, encoding: str | None = None,
         path: str = "/v1/traces") -> tuple[int, bytes]:
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_sdk_http_exporter(serve_factory) -> None:
    sp = serve_factory("--evaluation-interval", "0.5")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://127.0.0.1:{sp.http_port}/v1/traces"), schedule_delay_millis=100))
    send_rows(provider, "via-http", "", make_rows(np.random.default_rng(1), 400, drifted=False), batch_every=50)
    provider.shutdown()
    got = wait_for(lambda: select(sp.scrape(), "ml_predictions_total", ml_model_name="via-http"), what="count")
    assert got[0].value == 400


def test_json_gzip_and_errors(serve_factory) -> None:
    sp = serve_factory("--evaluation-interval", "0.5")
    now = str(time.time_ns())
    payload = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "ml.model.name", "value": {"stringValue": "json-model"}}]},
        "scopeSpans": [{"spans": [
            {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174", "name": "p",
             "startTimeUnixNano": now, "endTimeUnixNano": now, "kind": 1,
             "attributes": [{"key": "ml.feature.x", "value": {"doubleValue": 1.5}},
                            {"key": "ml.feature.n", "value": {"intValue": "7"}},
                            {"key": "ml.feature.c", "value": {"stringValue": "a"}}],
             "someFutureField": True},
            {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B175", "name": "p",
             "attributes": [{"key": "ml.batch.size", "value": {"intValue": 2}},
                            {"key": "ml.feature.x", "value": {"arrayValue": {"values": [{"doubleValue": 1}]}}}]},
        ]}]}]}
    body = json.dumps(payload).encode()
    code, out = post(sp.http_port, body, "application/json")
    assert code == 200
    answer = json.loads(out)
    assert answer["partialSuccess"]["rejectedSpans"] == "1"
    assert "batch_length_mismatch" in answer["partialSuccess"]["errorMessage"]
    code, out = post(sp.http_port, gzip.compress(body), "application/json", encoding="gzip")
    assert code == 200
    # Binary protobuf answer for a protobuf request; 400 with a google.rpc.Status for garbage.
    code, out = post(sp.http_port, b"\x0a\xff\xff\xff\xff\x0f", "application/x-protobuf")
    assert code == 400 and "malformed" in status_pb2.Status.FromString(out).message
    code, out = post(sp.http_port, b"", "application/x-protobuf")
    assert code == 200 and ExportTraceServiceResponse.FromString(out) == ExportTraceServiceResponse()
    assert post(sp.http_port, b"{}", "text/plain")[0] == 415
    assert post(sp.http_port, b"{}", "application/json", path="/v1/metrics")[0] == 404
    assert post(sp.http_port, b"not gzip", "application/json", encoding="gzip")[0] == 400
    bomb = gzip.compress(b"\0" * (80 * 1024 * 1024))
    assert post(sp.http_port, bomb, "application/x-protobuf", encoding="gzip")[0] == 400
    got = wait_for(lambda: select(sp.scrape(), "ml_predictions_total", ml_model_name="json-model"), what="count")
    assert got[0].value == 2


def test_every_gzip_member_is_read_and_trailing_bytes_refused(serve_factory) -> None:
    """Issue 30 case 3: a body of two gzip members counted only the first member's spans (HTTP 200), and bytes
    after a member were ignored. Now every member is read (as Go's gzip reader, the Collector's, does), a
    truncated or trailing-garbage body is a 400 that keeps nothing, and deflate is read too."""
    import zlib

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    def request(model: str, spans: int) -> bytes:
        req = ExportTraceServiceRequest()
        ss = req.resource_spans.add().scope_spans.add()
        for i in range(spans):
            span = ss.spans.add(name="p", end_time_unix_nano=time.time_ns())
            span.attributes.add(key="ml.model.name").value.string_value = model
            span.attributes.add(key="ml.feature.x").value.double_value = float(i)
        return req.SerializeToString()

    sp = serve_factory("--evaluation-interval", "0.5")
    pb = "application/x-protobuf"
    # Serialized protobuf messages concatenate into one message: two members are one request of 100 + 100 spans.
    code, _ = post(sp.http_port, gzip.compress(request("gz", 100)) + gzip.compress(request("gz", 100)), pb, "gzip")
    assert code == 200
    code, out = post(sp.http_port, gzip.compress(request("gz-bad", 5)) + b"trailing", pb, "gzip")
    assert code == 400 and "after the last member" in status_pb2.Status.FromString(out).message
    code, out = post(sp.http_port, gzip.compress(request("gz-bad", 5))[:-6], pb, "gzip")
    assert code == 400 and "truncated" in status_pb2.Status.FromString(out).message
    assert post(sp.http_port, zlib.compress(request("gz", 7)), pb, "deflate")[0] == 200
    got = wait_for(lambda: [s for s in select(sp.scrape(), "ml_predictions_total", ml_model_name="gz")
                            if s.value == 207], what="all 207 spans of both members and the deflate body")
    assert got
    assert select(sp.scrape(), "ml_predictions_total", ml_model_name="gz-bad") == []


def test_a_grpc_exporter_on_the_http_port_gets_one_line_that_says_so(serve_factory) -> None:
    """Issue 31 case 8: the OTel SDK's gRPC exporter pointed at the OTLP/HTTP port wrote an aiohttp traceback with
    raw HTTP/2 frames per retry. Now: one warning naming the mix-up and the port to use, then silence (rate-limited),
    while ordinary requests go on being served."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    sp = serve_factory()
    exporter = GrpcSpanExporter(endpoint=f"http://127.0.0.1:{sp.http_port}", insecure=True, timeout=2)
    provider = TracerProvider()
    spans = []
    for _ in range(3):
        with provider.get_tracer("app").start_as_current_span("p") as span:
            span.set_attribute("ml.model.name", "m")
            spans.append(span)
    assert exporter.export(spans) == SpanExportResult.FAILURE
    exporter.shutdown()
    line = wait_for(lambda: next((x for x in sp.log if "gRPC (HTTP/2) client on an HTTP port" in x), None),
                    what="the mix-up named in the log")
    assert "WARNING" in line and "4317" in line, line
    assert post(sp.http_port, b"", "application/x-protobuf")[0] == 200
    assert not [x for x in sp.log if "Traceback" in x or "PRI/Upgrade" in x], "".join(sp.log[-20:])
    assert sum("gRPC (HTTP/2) client" in x for x in sp.log) == 1
