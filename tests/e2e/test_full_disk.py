"""A full disk under the state directory, on a real small filesystem (a tmpfs the test mounts).

What must hold: a request is counted if and only if it was acknowledged; while the state cannot be written,
requests are answered UNAVAILABLE with RetryInfo (HTTP 503 + Retry-After), the processor is not ready and
says why in a metric; it recovers by itself when space comes back; a kill -9 after the episode restores
exactly what was acknowledged. Mounting needs root: skipped otherwise, required under CI=true as root."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support import ServeProcess, select, start_serve, wait_for

SPANS_PER_REQUEST = 500


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode:
        why = f"cannot mount a tmpfs for the full-disk test: {done.stderr.strip() or done.returncode}"
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the filesystem has not one byte left; returns it (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return filler


def requests(n: int) -> list[bytes]:
    """``n`` OTLP requests of SPANS_PER_REQUEST prediction spans each, from the real SDK's encoder."""
    collect = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(collect))
    tracer = provider.get_tracer("full-disk-test")
    out = []
    for r in range(n):
        for i in range(SPANS_PER_REQUEST):
            attrs = {"ml.model.name": "disk", **{f"ml.feature.f{k}": float(i * k + r) for k in range(12)}}
            tracer.start_span("predict", attributes=attrs).end()
        out.append(encode_spans(collect.get_finished_spans()).SerializeToString())
        collect.clear()
    return out


def counted(sp: ServeProcess) -> float:
    return sum(s.value for s in select(sp.scrape(), "ml_predictions_total"))


def metric(sp: ServeProcess, name: str, **labels: str) -> float | None:
    found = select(sp.scrape(), name, **labels)
    return found[0].value if found else None


def readyz(sp: ServeProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{sp.http_port}/readyz", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def export(stub: TraceServiceStub, data: bytes) -> grpc.RpcError | None:
    """Send one request; None when acknowledged, the error when refused (which must be retryable)."""
    try:
        stub.Export(ExportTraceServiceRequest.FromString(data), timeout=30)
        return None
    except grpc.RpcError as e:
        return e


def assert_retryable(error: grpc.RpcError) -> None:
    assert error.code() == grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())
    assert "cannot write its state" in error.details()
    trailers = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])  # what the Collector reads
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and info.retry_delay.ToNanoseconds() > 0
    assert error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]) == info  # the Python SDK


@pytest.mark.parametrize("receiver_processes", ["0", "1"])
def test_full_disk_refuses_retryably_counts_only_what_was_acknowledged_and_recovers(
        small_disk: Path, tmp_path: Path, receiver_processes: str) -> None:
    config = tmp_path / "otel-ml.yaml"
    config.write_text("state:\n  checkpoint_interval_seconds: 1\n")
    args = ("--config", str(config), "--receiver-processes", receiver_processes, "--evaluation-interval", "0.5")
    state = small_disk / "state"
    before, during, after = requests(4), requests(10), requests(4)
    sp = start_serve(state, *args)
    acked = 0
    try:
        with grpc.insecure_channel(sp.grpc_endpoint) as channel:
            stub = TraceServiceStub(channel)
            for data in before:
                assert export(stub, data) is None
                acked += SPANS_PER_REQUEST
            assert counted(sp) == acked
            assert readyz(sp)[0] == 200
            assert metric(sp, "otel_ml_storage_healthy") == 1
            assert metric(sp, "otel_ml_storage_errors_total", op="journal") == 0  # there before the first error

            filler = fill(small_disk)
            refused = []
            for data in during:
                error = export(stub, data)
                if error is None:  # space the database still had (e.g. a reused WAL page) is used, and counted
                    acked += SPANS_PER_REQUEST
                else:
                    assert_retryable(error)
                    refused.append(error)
                assert counted(sp) == acked  # a refused request left no trace in memory
            assert len(refused) >= len(during) - 2, f"only {len(refused)} of {len(during)} refused on a full disk"
            status, why = readyz(sp)
            assert status == 503 and "state storage failing" in why
            with urllib.request.urlopen(f"http://127.0.0.1:{sp.http_port}/healthz", timeout=10) as alive:
                assert alive.status == 200  # alive, only not ready
            assert metric(sp, "otel_ml_storage_healthy") == 0
            assert metric(sp, "otel_ml_storage_errors_total", op="journal") >= len(refused)
            http = urllib.request.Request(f"http://127.0.0.1:{sp.http_port}/v1/traces", data=during[0],
                                          headers={"Content-Type": "application/x-protobuf"})
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(http, timeout=30)
            assert answer.value.code == 503 and int(answer.value.headers["Retry-After"]) >= 1
            assert counted(sp) == acked
            log = "".join(sp.log)
            assert log.count("cannot write state") == 1, "one log line per episode, not per request"

            filler.unlink()
            for data in after[:2]:  # recovers by itself: no restart, no operator
                assert export(stub, data) is None
                acked += SPANS_PER_REQUEST
            assert counted(sp) == acked
            assert readyz(sp)[0] == 200  # the journal writes again: ready at once
            # Healthy once every kind of write succeeded again: the checkpoint that failed meanwhile is retried
            # within its interval (1 s here).
            wait_for(lambda: metric(sp, "otel_ml_storage_healthy") == 1, timeout=10, what="storage healthy again")
            assert "succeed again" in "".join(sp.log)

        # A stop on a full disk: its final checkpoint cannot be written; the journal still has everything.
        filler = fill(small_disk)
        assert sp.stop() == 0
        assert "final checkpoint failed" in "".join(sp.log)
        filler.unlink()
        sp = start_serve(state, *args, grpc_port=sp.grpc_port)
        assert counted(sp) == acked
        with grpc.insecure_channel(sp.grpc_endpoint) as channel:
            for data in after[2:]:
                assert export(TraceServiceStub(channel), data) is None
                acked += SPANS_PER_REQUEST
        sp.proc.send_signal(signal.SIGKILL)
        sp.proc.wait()
        sp = start_serve(state, *args, grpc_port=sp.grpc_port)
        assert counted(sp) == acked  # durable state and live state agree: what was acknowledged, once
        assert "quarantine" not in "".join(sp.log)  # the full disk did not corrupt the database
    finally:
        sp.stop()


def test_not_durable_keeps_accepting_on_a_full_disk(small_disk: Path, tmp_path: Path) -> None:
    config = tmp_path / "otel-ml.yaml"
    config.write_text("state:\n  durable: false\n")
    sp = start_serve(small_disk / "state", "--config", str(config), "--receiver-processes", "0")
    try:
        fill(small_disk)
        with grpc.insecure_channel(sp.grpc_endpoint) as channel:
            stub = TraceServiceStub(channel)
            for data in requests(3):
                assert export(stub, data) is None
        wait_for(lambda: counted(sp) == 3 * SPANS_PER_REQUEST, timeout=10, what="every span counted")
        assert readyz(sp)[0] == 200
        assert "state.durable is false" in "".join(sp.log)
    finally:
        sp.stop()
