"""Receiver worker processes (receiver/workers.py): the same answers and counts as one process, through the
real SDK exporter, plus what is specific to them: a worker killed under traffic is replaced, and nothing is
left running after shutdown or after the main process is killed. (On a machine with more than one CPU every
other serve test runs with workers too: the default is one per extra CPU.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.support import free_port, select, wait_for

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid):
            out.append(int(stat.parent.name))
    return out


def workers_of(pid: int) -> list[int]:
    """The receiver worker processes (multiprocessing also starts a resource tracker: not a worker). A child that
    exits between the listing and the read (the killed worker being reaped) is skipped."""
    workers = []
    for c in children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes():
                workers.append(c)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return workers


def send(endpoint: str, model: str, n: int) -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://{endpoint}", insecure=True),
                                                   max_export_batch_size=100, schedule_delay_millis=50))
    tracer = provider.get_tracer("t")
    for i in range(n):
        tracer.start_span("p", attributes={"ml.model.name": model, "ml.feature.x": float(i)}).end()
    provider.shutdown()


def predictions(sp, model: str) -> float:
    got = select(sp.scrape(), "ml_predictions_total", ml_model_name=model)
    return got[0].value if got else 0.0


@pytest.mark.parametrize("processes", ["0", "2"])
def test_counts_are_the_same_with_and_without_workers(serve_factory, processes: str) -> None:
    """(partial_success and INVALID_ARGUMENT through workers: test_e2e.py, parametrized the same way.)"""
    sp = serve_factory("--receiver-processes", processes)
    assert len(workers_of(sp.proc.pid)) == int(processes)
    send(sp.grpc_endpoint, "w", 1000)
    wait_for(lambda: predictions(sp, "w") == 1000, what="1000 predictions counted")


def test_a_killed_worker_is_replaced_and_traffic_continues(serve_factory) -> None:
    sp = serve_factory("--receiver-processes", "2")
    send(sp.grpc_endpoint, "k", 500)
    wait_for(lambda: predictions(sp, "k") == 500, what="first 500")
    victim = workers_of(sp.proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(set(workers_of(sp.proc.pid)) - {victim}) == 2, what="a replacement worker")
    send(sp.grpc_endpoint, "k", 500)  # the SDK retries what hit the dead worker
    wait_for(lambda: predictions(sp, "k") >= 1000, what="1000 predictions after the restart")
    assert "restarting it" in "".join(sp.log)


def test_workers_stop_with_the_processor_and_after_kill_9(serve_factory, tmp_path: Path) -> None:
    sp = serve_factory("--receiver-processes", "2")
    workers = workers_of(sp.proc.pid)
    assert len(workers) == 2
    assert sp.stop() == 0
    wait_for(lambda: not any(Path(f"/proc/{w}").exists() for w in workers), timeout=10, what="workers gone")

    sp = serve_factory("--receiver-processes", "2", state_dir=tmp_path / "second")
    workers = workers_of(sp.proc.pid)
    sp.proc.kill()  # kill -9 of the main process: its workers see their pipe close and exit
    sp.proc.wait()
    wait_for(lambda: not any(Path(f"/proc/{w}/status").exists() and "zombie" not in
                             Path(f"/proc/{w}/status").read_text() for w in workers), timeout=10,
             what="orphaned workers gone")


def test_a_receiver_worker_imports_no_sketches_storage_or_sdk() -> None:
    """A spawned worker imports the parent's main module (the CLI) and what unpickling its spec needs; none of
    that may pull in the processor's heavy parts (memory and start time of every worker)."""
    import subprocess
    import sys

    code = ("import sys, otel_ml.cli, otel_ml.receiver.workers, otel_ml.receiver.ingest; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'sqlite3', 'yaml', 'datasketches',"
            " '_datasketches', 'aiohttp') or m.startswith(('opentelemetry.sdk', 'otel_ml.profile', 'otel_ml.state', "
            "'otel_ml.core', 'otel_ml.labels', 'otel_ml.analyze', 'otel_ml.service', 'otel_ml.config'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out


def test_a_second_processor_on_a_busy_port_fails_naming_it(serve_factory, tmp_path: Path) -> None:
    """SO_REUSEPORT would let a second otel-ml with receiver workers silently share the first one's gRPC port and
    take part of its traffic; busy HTTP and Prometheus ports must say which endpoint, too."""
    import subprocess
    import sys

    first = serve_factory("--receiver-processes", "1")
    ports = {"--otlp-grpc-endpoint": first.grpc_port, "--otlp-http-endpoint": first.http_port,
             "--prometheus-endpoint": first.prom_port, "--ui-endpoint": first.ui_port}
    setting = {"--otlp-grpc-endpoint": "receiver.otlp_grpc.endpoint", "--otlp-http-endpoint":
               "receiver.otlp_http.endpoint", "--prometheus-endpoint": "export.prometheus.endpoint",
               "--ui-endpoint": "ui.endpoint"}
    for flag, port in ports.items():
        for workers in ("0", "1"):
            args = [f"127.0.0.1:{free_port()}" if f != flag else f"127.0.0.1:{port}" for f in ports]
            out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "serve", "--state-dir",
                                  str(tmp_path / f"s{flag}{workers}"), "--receiver-processes", workers,
                                  *[x for f, a in zip(ports, args) for x in (f, a)]],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 2, (flag, workers, out.stdout, out.stderr)
            assert f"{setting[flag]}) on 127.0.0.1:{port}" in out.stderr, (flag, workers, out.stderr)


def test_two_settings_on_one_port_fail_the_start_naming_both_and_leave_nothing_running(tmp_path: Path) -> None:
    """The CI once gave the gRPC receiver and the UI the same free port: each was free when checked, the UI's bind
    failed after the receiver worker had started, and the worker's supervisor tried to restart it during the exit
    (a traceback). Two settings on one port are now refused before anything binds, a wildcard host included."""
    import subprocess
    import sys

    port = free_port()
    for ui_host in ("127.0.0.1", "0.0.0.0"):
        out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "serve", "--state-dir", str(tmp_path / ui_host),
                              "--receiver-processes", "1", "--otlp-grpc-endpoint", f"127.0.0.1:{port}",
                              "--ui-endpoint", f"{ui_host}:{port}", "--otlp-http-endpoint", "127.0.0.1:0",
                              "--prometheus-endpoint", f"127.0.0.1:{free_port()}"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (out.stdout, out.stderr)
        assert (f"the UI (ui.endpoint) and the OTLP/gRPC receiver (receiver.otlp_grpc.endpoint) are both set to "
                f"port {port}") in out.stderr, out.stderr
        assert "Traceback" not in out.stderr + out.stdout, out.stderr


@pytest.mark.parametrize("stage", ["http", "receiver", "exporter", "ui", "evaluator"])
def test_a_start_that_fails_half_way_stops_what_it_started(tmp_path: Path, stage: str) -> None:
    """A bind can still fail after the port check (another process takes the port in between): what had started
    (receiver worker processes, the journal, listeners) stops, and a second start in the same directory works."""
    import multiprocessing
    import threading

    from otel_ml.config import load_config
    from otel_ml.service import ProcessorService

    overrides = {"state.dir": str(tmp_path / "s"), "receiver.otlp_grpc.worker_processes": 1,
                 **{k: "127.0.0.1:0" for k in ("receiver.otlp_grpc.endpoint", "receiver.otlp_http.endpoint",
                                                "ui.endpoint", "export.prometheus.endpoint")}}
    before = set(threading.enumerate())
    service = ProcessorService(load_config(None, overrides))
    component = getattr(service, stage)

    def fail() -> None:
        raise OSError(f"{stage} could not bind")

    component.start = fail
    with pytest.raises(OSError, match="could not bind"):
        service.start()
    wait_for(lambda: not (set(threading.enumerate()) - before), timeout=30, what="the started threads to end")
    assert not multiprocessing.active_children()
    again = ProcessorService(load_config(None, overrides))
    again.start()
    again.shutdown()


def test_version_flag() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("otel-ml ")


@pytest.mark.parametrize("processes", ["0", "1"])
def test_a_restart_right_after_kill_9_binds_at_once_with_clients_connected(serve_factory, tmp_path: Path,
                                                                           processes: str) -> None:
    """Issue 29: the connections of a killed processor sit in TIME_WAIT for a minute and its receiver workers
    outlived it for a moment; a restart within 0.1 s (systemd's default RestartSec) must bind, while a live
    second instance on the same port is still refused (test above)."""
    import time

    sp = serve_factory("--receiver-processes", processes)
    ports = {"grpc_port": sp.grpc_port, "prom_port": sp.prom_port, "ui_port": sp.ui_port}
    provider = TracerProvider()  # a client whose connection stays open across the kill
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://{sp.grpc_endpoint}",
                                                                    insecure=True), schedule_delay_millis=50))
    tracer = provider.get_tracer("t")
    for i in range(200):
        tracer.start_span("p", attributes={"ml.model.name": "r", "ml.feature.x": float(i)}).end()
    provider.force_flush()
    wait_for(lambda: predictions(sp, "r") == 200, what="200 predictions")
    workers = workers_of(sp.proc.pid)
    sp.proc.kill()
    sp.proc.wait()
    time.sleep(0.1)
    again = serve_factory("--receiver-processes", processes, state_dir=sp.state_dir, **ports)  # fails if it cannot
    assert not any(Path(f"/proc/{w}/status").exists() and "zombie" not in Path(f"/proc/{w}/status").read_text()
                   for w in workers)
    wait_for(lambda: predictions(again, "r") == 200, what="the 200 acknowledged predictions recovered")
    provider.shutdown()


def test_the_first_export_after_metrics_answer_is_accepted(tmp_path: Path) -> None:
    """Issue 29: /metrics and the pages answered before the gRPC receiver listened, so a client that waited for
    them got UNAVAILABLE on its first export. Now every listener that tells readiness opens after the receivers."""
    import threading
    import time
    import urllib.request

    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from tests.support import start_serve

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(end_time_unix_nano=time.time_ns())
    span.attributes.add(key="ml.model.name").value.string_value = "ready"

    for attempt in range(3):
        grpc_port, prom_port = free_port(), free_port()
        started: list = []
        t = threading.Thread(target=lambda d, g, p, out=started: out.append(start_serve(
            d, "--receiver-processes", "1", grpc_port=g, prom_port=p)), args=(tmp_path / f"s{attempt}", grpc_port,
                                                                             prom_port))
        t.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/metrics", timeout=1).read()
                break
            except OSError:
                time.sleep(0.005)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:  # one attempt, no retry
                channel.unary_unary(EXPORT)(request.SerializeToString(), timeout=10)
        finally:  # a failed export must not leave the processor running
            t.join()
            if started:
                started[0].stop()


def test_kafka_decode_processes_give_the_records_of_one_process_in_order_and_survive_a_killed_one(caplog) -> None:
    """receiver/decode_pool.py: what the processes return is, job for job and in order, what decoding in this
    thread returns (a bad message: its ValueError); a process killed during a batch costs nothing but time."""
    import functools

    from bench.loadgen import make_request
    from otel_ml.decode import DecodeLimits, DecodeResult
    from otel_ml.receiver.decode_pool import DecodePool
    from otel_ml.receiver.ingest import decode_for_ingest

    # Every request keeps its span ids (not one a second per model): what decoding returns is then a function of
    # the request alone, here and in the processes.
    decode = functools.partial(decode_for_ingest, limits=DecodeLimits(), hash_key=None, hash_features=[],
                               ids_every_ns=None)
    jobs = [(make_request(64, seed=i, ids=True), "traces", [("t", i % 3, i)]) for i in range(40)]
    jobs[7] = (b"\x0a\xff\xff", "traces", [("t", 1, 7)])
    def same(record: bytes | ValueError) -> bytes | str:
        """A record but for when it was received."""
        if isinstance(record, ValueError):
            return str(record)
        result = DecodeResult.from_bytes(record)
        result.received_ns = 0
        return result.to_bytes()

    here = [same(r) for r in DecodePool(decode, 0).decode(jobs)]
    assert isinstance(here[7], str) and sum(isinstance(h, bytes) for h in here) == 39
    pool = DecodePool(decode, 2)
    pool.start()
    try:
        assert sorted(workers_of(os.getpid())) != []
        for attempt in range(2):
            got = []
            for i, out in enumerate(pool.decode(jobs)):
                if attempt == 1 and i == 3:  # the second time, one process dies mid-batch
                    os.kill(workers_of(os.getpid())[0], signal.SIGKILL)
                got.append(out)
            assert [same(g) for g in got] == here
        assert "a decoding process died" in caplog.text
        assert len(workers_of(os.getpid())) == 2  # started again
    finally:
        pool.shutdown()
    assert workers_of(os.getpid()) == []
