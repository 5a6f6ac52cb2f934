"""One HTTP server for every HTTP surface of the processor: OTLP/HTTP, /metrics, health (and the UI to come).

Built on aiohttp, chosen on measurement (docs/benchmarks.md, "OTLP/HTTP ingest"): with 200 connections that
sent half a request header and stopped, aiohttp and hypercorn closed all of them after their idle timeout and
served other clients meanwhile, on one thread; uvicorn kept all 200 open (its keep-alive timeout does not cover
a request being received); aiohttp parses HTTP in C (hypercorn's h11 is pure Python). The hand-made
``ThreadingHTTPServer`` it replaces ran the TLS handshake in its accept loop (one silent TLS client blocked
every other) and held a thread per connection with no timeout.

How each listener stays healthy:
- one event loop in one thread serves every connection; blocking work (applying a request: decode, journal
  commit) runs in a bounded thread pool (``handler_threads``), so a slow client costs a coroutine, not a thread;
- ``idle_timeout_seconds``: a connection that sends nothing for that long, between requests or stuck in one's
  headers, is closed; a request body must arrive within ``body_timeout_seconds`` (else 408);
- ``max_connections`` per listener (less if the open-file limit is lower): at the cap a new connection is let in by
  closing the one idle longest, half-open ones (no request ever completed) first; only when every connection has
  a request in progress is the new one closed at once (clients retry);
- TLS handshakes run in the event loop, never in the accept path, and give up after
  ``tls_handshake_timeout_seconds``;
- HTTP/1.1 keep-alive; gzip responses where the client accepts them; graceful shutdown (requests in progress
  finish, up to ``shutdown_timeout_seconds``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from aiohttp import web

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class HttpServerConfig:
    """YAML ``http``: connection limits of every HTTP listener (OTLP/HTTP, Prometheus)."""

    idle_timeout_seconds: float = 15.0
    """A connection that sends nothing for this long (between requests, or inside a request's headers) is closed."""
    body_timeout_seconds: float = 30.0
    """A request's body must have arrived this long after its headers; else 408 and the connection is closed."""
    max_connections: int = 1_000
    """Open connections per listener (fewer if the open-file limit is lower). At the cap a new connection closes
    the one idle longest, half-open ones first, so clients completing requests keep theirs."""
    tls_handshake_timeout_seconds: float = 10.0
    handler_threads: int = 16
    """Threads applying requests (decode, journal commit); more waiting requests queue in the event loop."""
    page_threads: int = 2
    """Threads rendering pages and API documents: their own, so that any number of page requests never takes a
    thread from ingest or /metrics (and, being few, leaves them most of the interpreter)."""
    page_queue: int = 8
    """Page requests waiting for a page thread beyond this are answered 503 with Retry-After at once."""
    page_timeout_seconds: float = 20.0
    """A page not rendered within this (waiting included) is answered 503; its work still finishes in its thread
    (and still counts against ``page_queue`` until then)."""
    shutdown_timeout_seconds: float = 5.0


class Listener:
    """One listening socket of an HttpServer: its port, and how to stop it."""

    def __init__(self, server: HttpServer, runner: web.AppRunner, aio_server: asyncio.AbstractServer,
                 port: int) -> None:
        self._server = server
        self._runner = runner
        self._aio_server = aio_server
        self.port = port

    def close(self) -> None:
        self._server.call(self._close())

    async def _close(self) -> None:
        self._aio_server.close()  # no new connections
        await self._runner.cleanup()  # requests in progress finish (shutdown_timeout), then connections close


class _Connections:
    """The open connections of one listener and its cap. At the cap a new connection is let in by closing the
    connection that has waited longest without a request in progress, preferring one that never completed a
    request (half-open, or stuck in its headers): 1,000 half-sent requests cannot lock real clients out, and a
    client that completes requests keeps its connection while there is any other to close."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: dict[asyncio.BaseTransport, _Capped] = {}

    def make_room(self) -> bool:
        idle = [c for c in self.open.values() if not c.busy]
        if not idle:
            return False
        victim = min(idle, key=lambda c: (c.completed > 0, c.last_active))
        victim.evict()
        return True


class _Capped(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted in its listener's ``_Connections`` when made (asyncio may
    create the protocols of several accepted connections before making any, so the count is exact; a TLS
    connection counts once its handshake is done, until then the handshake timeout bounds it). When made at the
    cap, another connection makes room for it, or (every one busy with a request) it is closed at once."""

    def __init__(self, handler: asyncio.Protocol, connections: _Connections) -> None:
        self._handler = handler
        self._connections = connections
        self._refused = False
        self.transport: asyncio.BaseTransport | None = None
        self.last_active = time.monotonic()
        self.busy = 0
        """Requests of this connection being handled."""
        self.completed = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        connections = self._connections
        if len(connections.open) >= connections.cap and not connections.make_room():
            self._refused = True
            transport.close()
            return
        self.transport = transport
        connections.open[transport] = self
        self._handler.connection_made(transport)

    def evict(self) -> None:
        assert self.transport is not None
        self._connections.open.pop(self.transport, None)
        self.transport.abort()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._refused:
            if self.transport is not None:
                self._connections.open.pop(self.transport, None)
            self._handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            self.last_active = time.monotonic()
            self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._refused else self._handler.eof_received()

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()


def connection_cap(configured: int, listeners: int = 3, reserve: int = 256) -> int:
    """``http.max_connections``, or less when the process may not open that many files: the soft limit on open
    files is raised to the hard one first (the default soft limit, 1024, is below one listener's default cap)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    except (ImportError, ValueError, OSError):
        return configured
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(16, min(configured, (soft - reserve) // listeners))


class Busy(Exception):
    """Too many page requests in progress: answer 503 with Retry-After ``retry_after_seconds``."""

    def __init__(self, message: str, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class ProtocolMixUpLog(logging.Filter):
    """aiohttp logs a request it cannot parse as an ERROR with a traceback and the raw bytes, once per attempt: a
    gRPC exporter pointed at an HTTP port wrote screens of HTTP/2 frames per retry. Instead: one line naming the
    mix-up and what to do, at most once per ``interval`` seconds per kind (with the count since the last line).

    >>> f = ProtocolMixUpLog(interval=60)
    >>> def attempt() -> logging.LogRecord:
    ...     error = ValueError("400, message: Pause on PRI/Upgrade")
    ...     return logging.LogRecord("aiohttp.server", logging.ERROR, "", 0, "Error handling request from %s",
    ...                              ("127.0.0.1",), (ValueError, error, None))
    >>> first = attempt()
    >>> f.filter(first), first.getMessage().split(":")[0], f.filter(attempt())
    (True, 'a gRPC (HTTP/2) client on an HTTP port, from 127.0.0.1', False)
    """

    KINDS: ClassVar[dict[str, str]] = {
        "grpc": "a gRPC (HTTP/2) client on an HTTP port, from {peer}: point gRPC exporters at the OTLP/gRPC "
                "endpoint (--otlp-grpc-endpoint, 4317 by default); OTLP/HTTP exporters use 4318",
        "tls": "a TLS client on a plain-HTTP port, from {peer}: use http:// or configure tls on the listener",
        "malformed": "an unparseable HTTP request from {peer} ({detail}); answered 400",
    }

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None or not str(record.msg).startswith("Error handling request"):
            return True
        text = str(error)
        if "PRI" in text and "Upgrade" in text:
            kind = "grpc"
        elif "\\x16\\x03" in text:  # a TLS handshake record, as the parser shows the bytes
            kind = "tls"
        elif type(error).__name__ in ("BadHttpMessage", "BadStatusLine", "BadHttpMethod", "LineTooLong",
                                      "InvalidHeader", "InvalidURLError", "TransferEncodingError",
                                      "ContentLengthError"):
            kind = "malformed"
        else:
            return True  # a real error in a handler: its traceback is wanted
        now = time.monotonic()
        with self._lock:
            self._since[kind] = self._since.get(kind, 0) + 1
            if now - self._last.get(kind, -math.inf) < self.interval:
                return False
            self._last[kind] = now
            count, self._since[kind] = self._since[kind], 0
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        detail = text.splitlines()[0][:120] if text else type(error).__name__
        record.msg = self.KINDS[kind].format(peer=peer, detail=detail) + (
            f" ({count} such requests in the last {self.interval:g} s)" if count > 1 else "")
        record.args = ()
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_PROTOCOL_MIX_UP_LOG = ProtocolMixUpLog()


class HttpServer:
    """An event loop in a thread carrying any number of listeners; ``start`` before ``listen``."""

    def __init__(self, config: HttpServerConfig | None = None) -> None:
        self.config = config or HttpServerConfig()
        server_log = logging.getLogger("aiohttp.server")
        if _PROTOCOL_MIX_UP_LOG not in server_log.filters:
            server_log.addFilter(_PROTOCOL_MIX_UP_LOG)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(self.config.handler_threads, thread_name_prefix="otel-ml-http")
        self._page_pool = ThreadPoolExecutor(self.config.page_threads, thread_name_prefix="otel-ml-pages")
        self._pages_in_progress = 0
        """Page jobs submitted and not finished (running or waiting for a page thread); only the loop changes it."""
        self._listeners: list[Listener] = []

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop.run_forever, name="otel-ml-http-loop", daemon=True)
            self._thread.start()

    def call(self, coro: Awaitable[T], timeout: float = 30.0) -> T:
        """Run a coroutine on the server's loop from another thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn(*args)`` in the handler thread pool (from a handler)."""
        return await self._loop.run_in_executor(self._pool, fn, *args)

    async def page(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` (a page or API document) in the page threads, or raise Busy at once when
        ``page_queue`` requests already wait for them, or when it is not done within ``page_timeout_seconds``."""
        cfg = self.config
        if self._pages_in_progress >= cfg.page_threads + cfg.page_queue:
            raise Busy(f"{self._pages_in_progress} page requests in progress; retry later", 1.0)
        self._pages_in_progress += 1
        job = self._loop.run_in_executor(self._page_pool, fn, *args)
        job.add_done_callback(lambda _job: self._page_done())
        try:
            return await asyncio.wait_for(asyncio.shield(job), cfg.page_timeout_seconds)
        except TimeoutError:
            raise Busy(f"the page was not ready within {cfg.page_timeout_seconds:g} s; retry later",
                       cfg.page_timeout_seconds) from None

    def _page_done(self) -> None:
        self._pages_in_progress -= 1

    def listen(self, name: str, endpoint: str, routes: list[tuple[str, str, Handler]],
               ssl_context: ssl.SSLContext | None = None, max_body_bytes: int = 1024 * 1024) -> Listener:
        """Serve ``routes`` ((method, path, handler)) on ``endpoint`` (host:port); raises OSError naming
        ``name`` and the endpoint when it cannot bind."""
        host, _, port = endpoint.rpartition(":")
        try:
            listener = self.call(self._listen(host.strip("[]"), int(port), routes, ssl_context, max_body_bytes))
        except OSError as e:
            raise OSError(f"cannot serve {name} on {endpoint}: {e.strerror or e}") from e
        self._listeners.append(listener)
        return listener

    async def _listen(self, host: str, port: int, routes: list[tuple[str, str, Handler]],
                      ssl_context: ssl.SSLContext | None, max_body_bytes: int) -> Listener:
        connections = _Connections(connection_cap(self.config.max_connections))

        @web.middleware
        async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
            conn = connections.open.get(request.transport)  # type: ignore[arg-type]
            if conn is None:
                return await handler(request)
            conn.busy += 1
            try:
                return await handler(request)
            finally:
                conn.busy -= 1
                conn.completed += 1
                conn.last_active = time.monotonic()

        app = web.Application(client_max_size=max_body_bytes, middlewares=[count_requests])
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        # read_bufsize: an OTLP request is often hundreds of KB; with aiohttp's 64 KB default the transport is
        # paused and resumed several times per request.
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=self.config.idle_timeout_seconds,
                               auto_decompress=False, shutdown_timeout=self.config.shutdown_timeout_seconds,
                               read_bufsize=min(max_body_bytes, 2 << 20))
        await runner.setup()
        factory = runner.server
        assert factory is not None

        def protocol() -> asyncio.Protocol:
            return _Capped(factory(), connections)

        aio_server = await self._loop.create_server(
            protocol, host, port, ssl=ssl_context, reuse_address=True,
            ssl_handshake_timeout=self.config.tls_handshake_timeout_seconds if ssl_context else None)
        return Listener(self, runner, aio_server, aio_server.sockets[0].getsockname()[1])

    def shutdown(self) -> None:
        for listener in self._listeners:
            try:
                listener.close()
            except Exception as e:  # a listener that fails to stop must not keep the others open
                log.warning("stopping an HTTP listener failed: %s", e)
        self._listeners.clear()
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._page_pool.shutdown(wait=False, cancel_futures=True)


def health_routes(readiness: Callable[[], tuple[bool, str]]) -> list[tuple[str, str, Callable]]:
    """``GET /healthz`` (alive) and ``GET /readyz`` (able to accept data), for every listener that wants them."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        ready, why = readiness()
        return web.Response(status=200 if ready else 503, text=why + "\n")

    return [("GET", "/healthz", healthz), ("GET", "/readyz", readyz)]


def server_tls_context(cert_file: str, key_file: str, client_ca_file: str | None) -> ssl.SSLContext:
    """TLS 1.2+ server context; mutual TLS when ``client_ca_file`` is given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca_file)
    return ctx
