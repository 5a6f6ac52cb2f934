"""Request bodies held open against the in-flight bound (issue 30 case 2): a processor's resident memory while
``--connections`` OTLP/HTTP senders each announce a body of just under the size limit, send most of it and stall.

    .venv/bin/python -m bench.stalled_bodies [--connections 40] [--hold 10]

A real ``otel-ml serve`` with the default limits (``limits.max_inflight_bytes`` 128 MiB, OTLP/HTTP
``max_message_bytes`` 20 MiB, ``http.body_timeout_seconds`` 30): each sender announces 20 MiB - 1 bytes, sends
18 MiB in 1 MiB pieces (a refused one is answered 503 and closed) and stops. VmRSS is sampled every 0.1 s from
before the first sender to ``--hold`` seconds after the last; the figure is the peak above the idle processor.
Before issue 30 a body counted against the bound only once received whole: 40 such senders of 60 MB took RSS from
229 MB to 2,992 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.ingest import free_port
from bench.shared_memory import rss_kib

MIB = 1 << 20


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=40)
    ap.add_argument("--hold", type=float, default=10.0)
    args = ap.parse_args()
    state = Path(tempfile.mkdtemp(prefix="otel-ml-bench-stalled-"))
    http = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "otel_ml.cli", "serve", "--state-dir", str(state),
                             "--otlp-grpc-endpoint", f"127.0.0.1:{free_port()}",
                             "--otlp-http-endpoint", f"127.0.0.1:{http}",
                             "--prometheus-endpoint", f"127.0.0.1:{free_port()}", "--no-ui",
                             "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mib(proc.pid))
            time.sleep(0.1)

    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("otel-ml serving")
        time.sleep(2)
        idle = rss_mib(proc.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        length = 20 * MIB - 1
        held: list[socket.socket] = []
        refused = 0
        chunk = b"\x0a" * MIB
        for _ in range(args.connections):
            s = socket.create_connection(("127.0.0.1", http), timeout=10)
            s.sendall(f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                      f"Content-Length: {length}\r\n\r\n".encode())
            try:
                for _ in range(18):
                    s.sendall(chunk)
            except OSError:  # answered and closed while sending
                pass
            held.append(s)
        time.sleep(args.hold)
        for s in held:
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError, ConnectionResetError):
                refused += s.recv(64).startswith(b"HTTP/1.1 503")
            s.close()
        stop.set()
        sampler.join()
        time.sleep(2)
        after = rss_mib(proc.pid)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(timeout=60)
    print(f"{args.connections} senders of a 20 MiB - 1 body, 18 MiB sent each, then stalled; held {args.hold:g} s.\n")
    print("| idle RSS MiB | peak RSS MiB | peak above idle MiB | limits.max_inflight_bytes MiB | answered 503 | "
          "RSS after MiB |")
    print("|---|---|---|---|---|---|")
    print(f"| {idle:.0f} | {peak[0]:.0f} | {peak[0] - idle:.0f} | 128 | {refused} of {args.connections} | "
          f"{after:.0f} |")


if __name__ == "__main__":
    main()
