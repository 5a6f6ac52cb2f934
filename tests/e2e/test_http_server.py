"""Slow, idle and too many clients against the processor's HTTP server (otel_ml/http_server.py), while the OTel
SDK's HTTP exporter sends real traffic: its requests keep succeeding, the server's threads and memory stay
bounded, and idle connections are closed after the configured timeouts. All on loopback, bounded in count and
time."""

from __future__ import annotations

import gzip
import os
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.support import ServeProcess, make_batches, select, start_serve, wait_for

IDLE = 2.0  # seconds, the configured idle and TLS handshake timeouts


def serve(tmp_path: Path, extra_config: str = "", max_connections: int = 5000) -> ServeProcess:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"http:\n  idle_timeout_seconds: {IDLE}\n  tls_handshake_timeout_seconds: {IDLE}\n"
                   f"  max_connections: {max_connections}\n" + extra_config)
    return start_serve(tmp_path / "state", "--config", str(cfg), "--receiver-processes", "0")


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def closed_by_server(sockets: list[socket.socket]) -> int:
    """How many of ``sockets`` the server has closed (reading gives EOF or an error, not 'would block')."""
    n = 0
    for s in sockets:
        s.setblocking(False)
        try:
            s.recv(65536)
            n += 1  # b"" (EOF) or an error response before closing
        except BlockingIOError:
            pass
        except OSError:
            n += 1
    return n


def predictions(sp: ServeProcess) -> float:
    return sum(s.value for s in select(sp.scrape(), "ml_predictions_total"))


def test_2000_half_open_connections_cost_no_threads_and_are_closed_while_clients_are_served(tmp_path: Path) -> None:
    sp = serve(tmp_path)
    half_open: list[socket.socket] = []
    try:
        before_threads, before_rss = threads(sp.proc.pid), rss_mb(sp.proc.pid)
        for _ in range(2000):
            s = socket.create_connection(("127.0.0.1", sp.http_port), timeout=5)
            s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Le")  # half a header, then silence
            half_open.append(s)
        exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{sp.http_port}/v1/traces", timeout=5)
        for batch in make_batches(5, 20):
            assert exporter.export(batch) == SpanExportResult.SUCCESS
        during_threads, during_rss = threads(sp.proc.pid), rss_mb(sp.proc.pid)
        print(f"threads {before_threads} -> {during_threads}, RSS {before_rss:.0f} -> {during_rss:.0f} MB "
              "with 2000 half-open connections")
        assert during_threads - before_threads <= 16  # at most the handler pool, not one per connection
        assert during_rss - before_rss < 40
        assert wait_for(lambda: closed_by_server(half_open) == 2000 or None, timeout=IDLE * 5, interval=0.5,
                        what="every half-open connection closed after the idle timeout")
        assert predictions(sp) == 100
    finally:
        for s in half_open:
            s.close()
        sp.stop()


def test_one_silent_tls_client_blocks_nobody_and_is_dropped(tmp_path: Path, pki: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    tls = f"receiver:\n  tls:\n    cert_file: {pki / 'server.crt'}\n    key_file: {pki / 'server.key'}\n"
    sp = serve(tmp_path, tls)
    try:
        silent = socket.create_connection(("127.0.0.1", sp.http_port), timeout=10)  # never sends a ClientHello
        exporter = HttpSpanExporter(endpoint=f"https://127.0.0.1:{sp.http_port}/v1/traces",
                                    certificate_file=str(pki / "ca.crt"), timeout=5)
        started = time.monotonic()
        for batch in make_batches(5, 20):
            assert exporter.export(batch) == SpanExportResult.SUCCESS
        assert time.monotonic() - started < IDLE  # not held up by the silent client's handshake
        assert wait_for(lambda: closed_by_server([silent]) == 1 or None, timeout=IDLE * 5, interval=0.5,
                        what="the silent TLS client dropped after the handshake timeout")
        assert predictions(sp) == 100
    finally:
        sp.stop()


def test_at_the_cap_half_open_connections_make_room_for_real_clients(tmp_path: Path) -> None:
    """Issue 30 case 7: with the listener's connections all taken by half-sent requests, a real client was reset
    (and an attacker reconnecting every idle timeout kept it so). At the cap a new connection now closes the one
    idle longest, half-open ones first: a client's export goes through, its keep-alive connection survives more
    half-open ones, and the open connections never exceed the cap."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("http:\n  idle_timeout_seconds: 120\n  max_connections: 50\n")
    sp = start_serve(tmp_path / "state", "--config", str(cfg), "--receiver-processes", "0")
    held: list[socket.socket] = []

    def half_open(n: int) -> None:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", sp.http_port), timeout=5)
            s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Le")  # half a header, then silence
            held.append(s)
    try:
        half_open(80)
        exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{sp.http_port}/v1/traces", timeout=5)
        batches = make_batches(4, 20)
        assert exporter.export(batches[0]) == SpanExportResult.SUCCESS
        half_open(80)  # the exporter's connection completed a request: the half-open ones go first
        for batch in batches[1:]:
            assert exporter.export(batch) == SpanExportResult.SUCCESS
        time.sleep(0.5)
        closed = closed_by_server(held)
        assert 160 - closed <= 49, closed  # the cap holds: 50 with the exporter's
        assert predictions(sp) == 80
    finally:
        for s in held:
            s.close()
        sp.stop()


def test_metrics_listener_serves_metrics_gzip_and_health_and_nothing_else(tmp_path: Path) -> None:
    sp = serve(tmp_path)
    try:
        base = f"http://127.0.0.1:{sp.prom_port}"
        req = urllib.request.Request(f"{base}/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            assert b"otel_ml_storage_errors_total" in gzip.decompress(r.read())
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as r:
            assert r.status == 200
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}/anything", timeout=10)
        assert e.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{sp.http_port}/", timeout=10)
        assert e.value.code == 404
    finally:
        sp.stop()


def test_a_protected_metrics_endpoint_wants_the_certificate_and_the_token(tmp_path: Path, pki: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    monkeypatch.setenv("TEST_OTELML_TOKEN", "s3cret")
    sp = serve(tmp_path, f"""receiver:
  tls:
    cert_file: {pki / 'server.crt'}
    key_file: {pki / 'server.key'}
    client_ca_file: {pki / 'ca.crt'}
  auth:
    bearer_token_env: TEST_OTELML_TOKEN
export:
  prometheus:
    protected: true
""")
    try:
        url = f"https://127.0.0.1:{sp.prom_port}/metrics"
        with_cert = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        with_cert.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
        req = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(req, context=with_cert, timeout=10) as r:
            assert b"otel_ml_storage_errors_total" in r.read()
        with pytest.raises(urllib.error.HTTPError) as e:  # certificate but no token
            urllib.request.urlopen(url, context=with_cert, timeout=10)
        assert e.value.code == 401
        without_cert = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(req, context=without_cert, timeout=10).read()
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP is not served
            urllib.request.urlopen(f"http://127.0.0.1:{sp.prom_port}/metrics", timeout=10).read()
    finally:
        sp.stop()
