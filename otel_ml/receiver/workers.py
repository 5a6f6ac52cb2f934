"""OTLP/gRPC receiving and decoding in worker processes, so ingest uses more than one core.

Why processes: one Python process runs Python code on one core at a time (the GIL). Receiving a request
and decoding it needs no shared state, so that half of the work runs in ``worker_processes`` workers; the
windows, the journal, drift evaluation and the exporters stay in the main process, which applies what the
workers decoded. Each worker runs the ordinary ``OtlpTraceReceiver`` on the configured endpoint (with
SO_REUSEPORT, so the kernel spreads connections over the workers), decodes, and sends the result to the main
process as a journal record (``DecodeResult.to_bytes``, ~3.5x smaller than the request) over a pipe. The
main process applies it and makes it durable exactly as for an in-process request, and answers; only then
does the worker answer the sender. Admission control, UNAVAILABLE + RetryInfo and partial_success are the
same as in-process. A worker exits when the main process goes away (its pipe closes); the main process
restarts a worker that died (its unanswered senders retry, as OTLP senders do).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from otel_ml.decode.batch import DecodeResult
from otel_ml.receiver.common import AdmissionControl, Refusal, Refused, refusal_of
from otel_ml.receiver.config import OtlpGrpcReceiverConfig, TlsConfig
from otel_ml.receiver.otlp_grpc import OtlpTraceReceiver

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<QQ")  # request id, size of the request as received (for admission)
_REFUSED = 0  # request id of a notice that the worker refused a request itself (overloaded)


@dataclass(frozen=True)
class Accepted:
    """The main process's reply for a request it applied: what the worker's answer (partial_success) needs."""

    spans_accepted: int
    rejected: dict[str, int]
    examples: dict[str, str]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs; pickled to it at start."""

    receiver: OtlpGrpcReceiverConfig
    tls: TlsConfig
    bearer_token: str | None
    decode: Callable[..., DecodeResult]
    """Module-level function (or partial of one): (request bytes, signal=traces|logs) → DecodeResult, privacy
    hashing included."""
    max_inflight_bytes: int
    retry_after_seconds: float
    log_level: int = logging.INFO


class ReceiverWorkers:
    """Starts ``count`` worker processes and applies what they decode with ``apply(record, request_size)``, the
    record being ``DecodeResult.to_bytes()`` (also what the journal stores, so it is not encoded twice)."""

    def __init__(self, spec: WorkerSpec, count: int, apply: Callable[[memoryview, int], DecodeResult],
                 on_refused: Callable[[], None] | None = None) -> None:
        self.spec = spec
        self.count = count
        self._apply = apply
        self._on_refused = on_refused
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a process with gRPC threads
        self._pool = futures.ThreadPoolExecutor(max_workers=max(4, 2 * count), thread_name_prefix="otel-ml-apply")
        # Every worker is started from this one thread, which lives as long as the workers: a worker's parent-death
        # signal fires when the *thread* that started it ends (Linux), not only when the process does.
        self._spawner = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="otel-ml-spawn")
        self._procs: list[Any] = [None] * count
        self._stopping = threading.Event()
        self.port: int | None = None

    def start(self) -> None:
        refuse_if_taken(self.spec.receiver.endpoint, "the OTLP/gRPC receiver (receiver.otlp_grpc.endpoint)")
        for i in range(self.count):
            self._spawner.submit(self._spawn, i).result()

    def _spawn(self, i: int) -> None:
        ours, theirs = self._ctx.Pipe(duplex=True)
        endpoint = self.spec.receiver.endpoint
        if self.port is not None:  # later workers (and restarts) join the port the first one bound
            endpoint = f"{endpoint.rpartition(':')[0]}:{self.port}"
        spec = dataclasses.replace(self.spec, receiver=dataclasses.replace(self.spec.receiver, endpoint=endpoint))
        proc = self._ctx.Process(target=_worker_main, args=(spec, theirs, os.getpid()), name=f"otel-ml-receiver-{i}",
                                 daemon=True)
        proc.start()
        theirs.close()
        try:
            msg = ours.recv() if ours.poll(60) else ("failed", "did not start within 60 s")
        except EOFError:
            msg = ("failed", f"exited with code {proc.join(5) or proc.exitcode}")
        if msg[0] != "ready":
            proc.kill()
            ours.close()
            raise OSError(f"receiver worker {i} failed: {msg[1]}")
        self.port = self.port or msg[1]
        self._procs[i] = proc
        threading.Thread(target=self._serve_worker, args=(i, ours, proc), name=f"otel-ml-worker-{i}",
                         daemon=True).start()

    def _serve_worker(self, i: int, conn: Connection, proc: Any) -> None:
        send_lock = threading.Lock()

        def handle(message: bytes) -> None:
            req_id, size = _HEADER.unpack_from(message)
            try:  # the record in place: no copy of it before the journal writes it and the decoder's arrays read it
                result = self._apply(memoryview(message)[_HEADER.size:], size)
                reply: Accepted | Refusal = Accepted(result.spans_accepted, dict(result.rejected), result.examples)
            except Exception as e:
                reply = refusal_of(e)
            with send_lock, contextlib.suppress(OSError):  # OSError: the worker is gone; its sender retries
                conn.send((req_id, reply))

        while True:
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):
                break
            if _HEADER.unpack_from(message)[0] == _REFUSED:
                if self._on_refused is not None:
                    self._on_refused()
                continue
            self._pool.submit(handle, message)
        conn.close()
        if self._stopping.is_set():
            return
        proc.join(1)
        log.error("receiver worker %d exited (code %s); restarting it", i, proc.exitcode)
        while not self._stopping.is_set():
            try:
                self._spawner.submit(self._spawn, i).result()
                return
            except OSError as e:
                log.error("restarting receiver worker %d failed: %s", i, e)
                time.sleep(1)

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        for proc in self._procs:
            if proc is not None and proc.is_alive():
                proc.terminate()  # SIGTERM: the worker stops its server, letting calls in progress finish
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            if proc is not None:
                proc.join(max(0.1, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.kill()
        self._pool.shutdown(wait=True, cancel_futures=False)
        self._spawner.shutdown(wait=False, cancel_futures=True)


def refuse_if_taken(endpoint: str, what: str) -> None:
    """Raise OSError naming ``what`` when ``endpoint`` is in use. Workers bind with SO_REUSEPORT, which would
    silently *share* a port held by another process's SO_REUSEPORT sockets (a second otel-ml would take part of
    the traffic); a probe bind without it fails whenever anything listens on the port. With SO_REUSEADDR, as
    every server binds: the connections of a processor that just died (kill -9) linger in TIME_WAIT for a minute
    and must not keep its restart out."""
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or int(port) == 0:
        return  # an ephemeral port is free by definition; a malformed endpoint fails where it is bound
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as e:
            raise OSError(f"cannot serve {what} on {endpoint}: {e.strerror or e}") from e


def refuse_taken_ports(endpoints: list[tuple[str, str]]) -> None:
    """Raise one OSError naming every (what, endpoint) whose fixed port is in use, or set for two things at once
    (each is free before either binds, so only the second bind would fail, half-way through a start)."""
    problems: list[str] = []
    fixed: list[tuple[str, int, str]] = []  # (host, port, what) of the endpoints seen so far
    for what, endpoint in endpoints:
        host, _, port = endpoint.rpartition(":")
        host = host.strip("[]")
        if port.isdigit() and int(port) != 0:
            same = [other for h, p, other in fixed
                    if p == int(port) and (h == host or {h, host} & {"", "0.0.0.0", "::"})]  # a wildcard takes all
            fixed.append((host, int(port), what))
            if same:
                problems.append(f"{what} and {same[0]} are both set to port {port}")
                continue
        try:
            refuse_if_taken(endpoint, what)
        except OSError as e:
            problems.append(str(e))
    if problems:
        raise OSError("; ".join(problems))


# --- inside a worker process -------------------------------------------------------------------------------
class _MainProcess:
    """The worker's side of the pipe: sends decoded requests, waits for the main process's verdict."""

    def __init__(self, conn: Connection, spec: WorkerSpec) -> None:
        self.conn = conn
        self.spec = spec
        # Bounds what this worker holds while decoding and waiting; its refusals are counted by the main process.
        self.admission = AdmissionControl(spec.max_inflight_bytes, spec.retry_after_seconds, self._tell_refused)
        self._lock = threading.Lock()
        self.send_lock = threading.Lock()
        self._next = 0
        self._waiting: dict[int, list] = {}

    def consume(self, data: bytes, signal: str = "traces") -> DecodeResult:
        with self.admission.admit(len(data)):
            result = self.spec.decode(data, signal=signal)
            slot: list = [threading.Event(), None]
            record = result.to_bytes()
            with self._lock:
                self._next += 1  # from 1: 0 is _REFUSED
                req_id = self._next
                self._waiting[req_id] = slot
            with self.send_lock:
                self.conn.send_bytes(_HEADER.pack(req_id, len(data)) + record)
            if not slot[0].wait(60):
                with self._lock:
                    self._waiting.pop(req_id, None)
                raise TimeoutError("the processor did not apply the request within 60 s")
        reply: Accepted | Refusal = slot[1]
        if isinstance(reply, Refusal):
            raise Refused(reply)
        result.spans_accepted, result.rejected, result.examples = reply.spans_accepted, Counter(reply.rejected), \
            reply.examples
        return result

    def _tell_refused(self) -> None:
        with self.send_lock:
            self.conn.send_bytes(_HEADER.pack(_REFUSED, 0))

    def read_replies(self) -> None:
        while True:
            try:
                req_id, reply = self.conn.recv()
            except (EOFError, OSError):
                os._exit(0)  # the main process is gone: stop taking requests nobody can apply
            with self._lock:
                slot = self._waiting.pop(req_id, None)
            if slot is not None:
                slot[1] = reply
                slot[0].set()


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this worker when the main process dies, kill -9 included: its listening socket must not
    outlive the main process and keep a restart from binding (Linux prctl PR_SET_PDEATHSIG; elsewhere the closed
    pipe ends it, a moment later)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the signal was set up
        os._exit(0)


def _worker_main(spec: WorkerSpec, conn: Connection, parent_pid: int = 0) -> None:
    import signal

    if parent_pid and sys.platform.startswith("linux"):
        _die_with_parent(parent_pid)
    logging.basicConfig(level=spec.log_level, format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the main process, which stops the workers
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    main = _MainProcess(conn, spec)
    receiver = OtlpTraceReceiver(spec.receiver, main.consume, spec.tls, spec.bearer_token, reuse_port=True)
    with main.send_lock:  # requests arriving meanwhile wait until "ready" is on the pipe
        try:
            receiver.start()
        except Exception as e:
            conn.send(("failed", f"{type(e).__name__}: {e}"))
            return
        conn.send(("ready", receiver.port))
    threading.Thread(target=main.read_replies, name="otel-ml-replies", daemon=True).start()
    stop.wait()
    receiver.shutdown()
