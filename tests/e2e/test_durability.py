"""Acknowledged data survives kill -9; a corrupted state file is quarantined; an unusable state dir fails clearly."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.support import make_batches, select, start_serve, wait_for


def counted(sp) -> float:
    return sum(s.value for s in select(sp.scrape(), "ml_predictions_total"))


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    state = tmp_path / "state"
    args = ("--evaluation-interval", "0.5", "--no-otlp-http")
    batch_size, n_batches, kills = 20, 150, 3
    batches = make_batches(n_batches, batch_size)  # before the server starts: nothing to clean up if it fails
    sp = start_serve(state, *args)
    port = sp.grpc_port
    acked = 0
    attempts = 0
    done = threading.Event()

    def send() -> None:
        nonlocal acked, attempts
        # The SDK's exporter retries UNAVAILABLE and connection failures with backoff; a batch whose export
        # still failed is exported again, as a BatchSpanProcessor user would.
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True, timeout=30)
        for batch in batches:
            while True:
                attempts += 1
                if exporter.export(batch) == SpanExportResult.SUCCESS:
                    acked += len(batch)
                    break
        done.set()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    rng = random.Random(5)
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 1.5))
            sp.proc.send_signal(signal.SIGKILL)
            sp.proc.wait()
            time.sleep(rng.uniform(0.1, 0.5))
            sp = start_serve(state, *args, grpc_port=port)
        assert done.wait(120), "sender did not finish"
        sent = n_batches * batch_size
        assert acked == sent
        final = wait_for(lambda: (c := counted(sp)) >= acked and c, timeout=10, what="every acknowledged span")
        # At-least-once: a batch made durable but killed before its answer is sent again (one batch per kill).
        print(f"kill -9 x{kills}: sent={sent} acknowledged={acked} counted={final} export calls={attempts}")
        assert acked <= final <= acked + kills * batch_size, (acked, final)
        assert sum(s.value for s in select(sp.scrape(), "otel_ml_spans_accepted_total")) == final
    finally:
        sp.stop()


def test_graceful_restart_keeps_windows_and_counters(tmp_path: Path) -> None:
    state = tmp_path / "state"
    sp = start_serve(state, "--no-otlp-http", "--evaluation-interval", "0.5")
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{sp.grpc_port}", insecure=True)
    for batch in make_batches(10, 30):
        assert exporter.export(batch) == SpanExportResult.SUCCESS
    before = wait_for(lambda: counted(sp) == 300 and sp.scrape(), what="300 counted")
    assert sp.stop() == 0
    assert (state / "otel-ml.db").exists()
    # a supervisor's SIGTERM is answered in the log: what it is doing, then that it is done (issue 31 case 9)
    stopped = wait_for(lambda: (lines := [x for x in sp.log if x.startswith("otel-ml stop")])[1:] and lines,
                       timeout=10, what="the shutdown lines")
    assert stopped[0].startswith("otel-ml stopping (SIGTERM)") and stopped[-1].startswith("otel-ml stopped in "), \
        stopped
    sp = start_serve(state, "--no-otlp-http", "--evaluation-interval", "0.5")
    try:
        assert counted(sp) == 300
        assert any("restored 3 model(s)" in line for line in sp.log)
        assert select(sp.scrape(), "otel_ml_spans_received_total")[0].value == \
            select(before, "otel_ml_spans_received_total")[0].value
    finally:
        sp.stop()


def test_corrupted_state_file_is_quarantined(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "otel-ml.db").write_bytes(b"this is not an SQLite database" * 100)
    sp = start_serve(state, "--no-otlp-http")
    try:
        assert any("moved to" in line and "quarantine" in line for line in sp.log)
        assert list((state / "quarantine").glob("otel-ml.db*"))
        assert select(sp.scrape(), "otel_ml_state_recovered_total", kind="database")[0].value == 1
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{sp.grpc_port}", insecure=True)
        assert exporter.export(make_batches(1, 5)[0]) == SpanExportResult.SUCCESS
    finally:
        sp.stop()


def test_unwritable_state_dir_fails_at_startup(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "serve", "--state-dir", str(blocker / "state"),
                          "--otlp-grpc-endpoint", "127.0.0.1:0", "--prometheus-endpoint", "127.0.0.1:0",
                          "--no-otlp-http", "--no-ui"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "not writable" in out.stderr
