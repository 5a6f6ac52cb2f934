"""TLS, mutual TLS and bearer tokens on the receivers, with the real SDK exporters; keyed hashing of categories."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_ml.decode.privacy import hash_category
from tests.support import make_batches, select, start_serve, wait_for

TOKEN = "s3cret-token"


@pytest.fixture()
def secure_serve(pki: Path, tmp_path: Path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""receiver:
  tls:
    cert_file: {pki / 'server.crt'}
    key_file: {pki / 'server.key'}
    client_ca_file: {pki / 'ca.crt'}
  auth:
    bearer_token_env: TEST_OTELML_TOKEN
""")
    monkeypatch.setenv("TEST_OTELML_TOKEN", TOKEN)
    sp = start_serve(tmp_path / "state", "--config", str(cfg))
    yield sp
    sp.stop()


def grpc_exporter(sp, pki: Path, client: str | None = "client", token: str | None = TOKEN) -> OTLPSpanExporter:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.crt").read_bytes(),
        private_key=(pki / f"{client}.key").read_bytes() if client else None,
        certificate_chain=(pki / f"{client}.crt").read_bytes() if client else None)
    headers = {"authorization": f"Bearer {token}"} if token else None
    return OTLPSpanExporter(endpoint=f"https://{sp.grpc_endpoint}", credentials=creds, headers=headers, timeout=5)


def test_mtls_and_token_with_the_sdk_exporters(secure_serve, pki: Path, monkeypatch) -> None:
    sp = secure_serve
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's own CA file; this machine sets them.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    batch = make_batches(1, 10)[0]
    assert grpc_exporter(sp, pki).export(batch) == SpanExportResult.SUCCESS
    http = HttpSpanExporter(endpoint=f"https://127.0.0.1:{sp.http_port}/v1/traces",
                            certificate_file=str(pki / "ca.crt"), client_key_file=str(pki / "client.key"),
                            client_certificate_file=str(pki / "client.crt"),
                            headers={"authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert http.export(batch) == SpanExportResult.SUCCESS
    assert wait_for(lambda: sum(s.value for s in select(sp.scrape(), "ml_predictions_total")) == 20, what="20")


def test_refused_without_token_certificate_or_tls(secure_serve, pki: Path) -> None:
    sp = secure_serve
    batch = make_batches(1, 5)[0]
    assert grpc_exporter(sp, pki, token=None).export(batch) == SpanExportResult.FAILURE
    assert grpc_exporter(sp, pki, token="wrong").export(batch) == SpanExportResult.FAILURE
    assert grpc_exporter(sp, pki, client=None).export(batch) == SpanExportResult.FAILURE
    assert grpc_exporter(sp, pki, client="rogue").export(batch) == SpanExportResult.FAILURE
    plain = OTLPSpanExporter(endpoint=f"http://{sp.grpc_endpoint}", insecure=True, timeout=3,
                             headers={"authorization": f"Bearer {TOKEN}"})
    assert plain.export(batch) == SpanExportResult.FAILURE
    # Straight gRPC to see the status: a valid certificate but no token is UNAUTHENTICATED.
    creds = grpc.ssl_channel_credentials((pki / "ca.crt").read_bytes(), (pki / "client.key").read_bytes(),
                                         (pki / "client.crt").read_bytes())
    with grpc.secure_channel(sp.grpc_endpoint, creds) as ch:
        export = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as err:
            export(b"", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # HTTP: TLS with a client certificate but no token → 401; no client certificate → handshake refused.
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
    req = urllib.request.Request(f"https://127.0.0.1:{sp.http_port}/v1/traces", data=b"",
                                 headers={"Content-Type": "application/x-protobuf"})
    with pytest.raises(urllib.error.HTTPError) as http_err:
        urllib.request.urlopen(req, timeout=5, context=ctx)
    assert http_err.value.code == 401
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(req, timeout=5, context=ssl.create_default_context(cafile=str(pki / "ca.crt")))
    assert sum(s.value for s in select(sp.scrape(), "ml_predictions_total")) == 0


def test_the_pages_and_api_take_the_receivers_tls_and_token(secure_serve, pki: Path) -> None:
    """The UI listener is HTTPS with the receivers' certificate, asks for their client certificate, and for the
    token (Bearer, or Basic with the token as password: what a browser's login prompt sends)."""
    sp = secure_serve
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
    url = f"https://127.0.0.1:{sp.ui_port}/api/v1/models"

    def status(context: ssl.SSLContext, authorization: str | None) -> int:
        req = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
        try:
            with urllib.request.urlopen(req, timeout=5, context=context) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert status(ctx, f"Bearer {TOKEN}") == 200
    assert status(ctx, "Basic " + base64.b64encode(f"me:{TOKEN}".encode()).decode()) == 200
    assert status(ctx, None) == 401 and status(ctx, "Bearer wrong") == 401
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):  # no client certificate
        status(ssl.create_default_context(cafile=str(pki / "ca.crt")), f"Bearer {TOKEN}")
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP on the TLS port
        urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models", timeout=5)


def test_categorical_values_are_hashed_before_sketching(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("privacy:\n  hash_key_env: TEST_OTELML_HASH_KEY\n  hash_features: [email]\n"
                   "export:\n  detail: all\n")  # all: the unseen ratio of 0 is exported too
    os.environ["TEST_OTELML_HASH_KEY"] = "k3y"
    try:
        csv = tmp_path / "ref.csv"
        csv.write_text("email,plan\n" + "".join(f"user{i % 7}@x.org,pro\n" for i in range(200)))
        baselines = tmp_path / "b"
        baselines.mkdir()
        subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "m", "--input", str(csv),
                        "--output", str(baselines / "m.json"), "--hash-key-env", "TEST_OTELML_HASH_KEY",
                        "--hash-feature", "email"], check=True, capture_output=True)
        text = (baselines / "m.json").read_text()
        sp = start_serve(tmp_path / "state", "--config", str(cfg), "--baseline-dir", str(baselines),
                         "--evaluation-interval", "0.3")
    finally:
        del os.environ["TEST_OTELML_HASH_KEY"]
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"http://{sp.grpc_endpoint}", insecure=True)))
        tracer = provider.get_tracer("t")
        for i in range(150):
            tracer.start_span("p", attributes={"ml.model.name": "m", "ml.feature.email": f"user{i % 7}@x.org",
                                               "ml.feature.plan": "pro"}).end()
        provider.shutdown()

        def decision():
            got = select(sp.scrape(), "ml_drift_detected", ml_model_name="m", ml_feature_name="email",
                         ml_drift_method="overall")
            unseen = select(sp.scrape(), "ml_feature_unseen_ratio", ml_model_name="m", ml_feature_name="email")
            return (got, unseen) if got and unseen else None

        got, unseen = wait_for(decision, what="email compared")
        assert got[0].value == 0 and unseen[0].value == 0  # hashed on both sides: same categories
        state_files = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
        # Journal records hold categories as numpy UCS-4, checkpoints as UTF-8: look for both spellings.
        for encoding in ("utf-8", "utf-32-le"):
            assert "@x.org".encode(encoding) not in state_files and "@x.org" not in text
        hashed = hash_category("user1@x.org", b"k3y")
        assert hashed.encode("utf-32-le") in state_files or hashed.encode() in state_files  # hashes are kept
    finally:
        sp.stop()


def test_every_route_reads_the_authorization_header_alike_and_head_metrics_answers(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    """Issue 49 N: /metrics (protected) and OTLP/HTTP refused `bearer` in lower case and extra spaces that the
    pages and API accepted; HEAD /metrics was 404. One parser for every route now (RFC 7235: the scheme is
    case-insensitive), gRPC included."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("receiver:\n  auth:\n    bearer_token_env: TEST_OTELML_TOKEN\n"
                   "export:\n  prometheus:\n    protected: true\n")
    monkeypatch.setenv("TEST_OTELML_TOKEN", TOKEN)
    sp = start_serve(tmp_path / "state", "--config", str(cfg))
    try:
        def status(url: str, authorization: str | None, method: str = "GET", data: bytes | None = None) -> int:
            req = urllib.request.Request(url, data=data, method=method, headers={
                **({"Authorization": authorization} if authorization else {}),
                "Content-Type": "application/x-protobuf"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        routes = [(f"http://127.0.0.1:{sp.prom_port}/metrics", "GET", None),
                  (f"http://127.0.0.1:{sp.prom_port}/metrics", "HEAD", None),
                  (f"http://127.0.0.1:{sp.http_port}/v1/traces", "POST", b""),
                  (f"http://127.0.0.1:{sp.ui_port}/api/v1/models", "GET", None)]
        basic = "Basic " + base64.b64encode(f"prometheus:{TOKEN}".encode()).decode()
        for url, method, data in routes:
            for good in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"  BEARER   {TOKEN}  ", basic):
                assert status(url, good, method, data) == 200, (url, method, good)
            for bad in (None, "Bearer wrong", f"Token {TOKEN}", f"Bearer{TOKEN}"):
                assert status(url, bad, method, data) == 401, (url, method, bad)
        with grpc.insecure_channel(sp.grpc_endpoint) as ch:
            export = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            export(b"", metadata=(("authorization", f"bearer  {TOKEN}"),), timeout=5)  # accepted: no error
            with pytest.raises(grpc.RpcError) as err:
                export(b"", metadata=(("authorization", "bearer wrong"),), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        sp.stop()
