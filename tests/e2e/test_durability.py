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


def test_kill_9_keeps_llm_calls_waiting_for_their_evaluations_and_the_evaluations_joined(tmp_path: Path) -> None:
    """Issue 45's calls wait in the pending store for their evaluation results, and joined results are ground truth
    counted in the calls' windows: both must survive kill -9. LLM calls are sent, then results naming their span
    ids as log records (the conventions' second shape), with the processor killed at random moments through both
    phases. Every acknowledged result joins its call (none unmatched: no acknowledged call was lost), each counted
    at least once and at most once more per kill (a durable request killed before its answer is sent again)."""
    import grpc

    from tests.support import LOGS, TRACES, calls_request, evaluation_logs

    state = tmp_path / "state"
    args = ("--evaluation-interval", "0.5", "--no-otlp-http")
    per_request, n_requests, kills = 20, 40, 4  # kills: the four below
    t0 = time.time_ns()
    calls = [calls_request(list(range(r * per_request, (r + 1) * per_request)), t0).SerializeToString()
             for r in range(n_requests)]
    results = [evaluation_logs([(i, {"gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.label":
                                     "pass" if i % 3 else "fail", "gen_ai.evaluation.score.value": (i % 10) / 10})
                                for i in range(r * per_request, (r + 1) * per_request)], t0 + 10**9).SerializeToString()
               for r in range(n_requests)]
    sp = start_serve(state, *args)
    port = sp.grpc_port
    acked = {TRACES: 0, LOGS: 0}
    done = threading.Event()

    def send() -> None:
        for method, bodies in ((TRACES, calls), (LOGS, results)):
            for body in bodies:
                while True:  # as an SDK exporter does: until the processor answers OK
                    try:
                        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                            ch.unary_unary(method)(body, timeout=10)
                        acked[method] += per_request
                        break
                    except grpc.RpcError:
                        time.sleep(0.05)
                time.sleep(0.02)  # requests keep arriving while the kills below happen
        done.set()

    threading.Thread(target=send, daemon=True).start()
    total = per_request * n_requests
    try:
        # Two kills in each phase, at a quarter and three quarters of it: calls waiting, then results joined.
        for method, share in ((TRACES, 0.25), (TRACES, 0.75), (LOGS, 0.25), (LOGS, 0.75)):
            wait_for(lambda m=method, f=share: acked[m] >= f * total, timeout=60, interval=0.01,
                     what=f"{share:.0%} of {method.rsplit('/', 2)[-2]} acknowledged")
            sp.proc.send_signal(signal.SIGKILL)
            sp.proc.wait()
            sp = start_serve(state, *args, grpc_port=port)
        assert done.wait(120), "sender did not finish"
        assert acked[TRACES] == acked[LOGS] == total

        def joined() -> float | None:
            got = sum(s.value for s in select(sp.scrape(), "ml_ground_truth_total", ml_model_name="gen_ai.evaluation",
                                               ml_model_version="relevance"))
            return got if got >= acked[LOGS] else None

        final = wait_for(joined, timeout=30, what="every acknowledged evaluation result joined")
        print(f"kill -9 x{kills}: results acknowledged={acked[LOGS]} joined={final}")
        assert final <= acked[LOGS] + kills * per_request, final
        unmatched = [s for s in select(sp.scrape(), "ml_ground_truth_unmatched_total",
                                       ml_model_name="gen_ai.evaluation") if s.value]
        assert not unmatched, unmatched
    finally:
        sp.stop()
