"""Archived windows through `otel-ml serve` and `otel-ml archive`: kept when they leave the horizon, read back."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_ml.profile import ModelProfile
from otel_ml.state.archive import NS
from tests.support import start_serve


def test_windows_leaving_the_horizon_are_archived_and_exported(tmp_path: Path) -> None:
    state = tmp_path / "state"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("state:\n  checkpoint_interval_seconds: 0.2\n")
    sp = start_serve(state, "--config", str(cfg), "--window", "1", "--horizon", "3", "--no-otlp-http")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://{sp.grpc_endpoint}",
                                                                    insecure=True), schedule_delay_millis=50))
    tracer = provider.get_tracer("t")
    t0 = (time.time_ns() // NS - 100) * NS
    for sec in range(30):
        for i in range(50):
            t = t0 + sec * NS + i * 10_000_000
            tracer.start_span("p", attributes={"ml.model.name": "arch", "ml.feature.x": float(sec)},
                              start_time=t).end(end_time=t)
    provider.shutdown()
    assert sp.stop() == 0
    out = tmp_path / "range.json"
    subprocess.run([sys.executable, "-m", "otel_ml.cli", "archive", "export", "--state-dir", str(state),
                    "--model", "arch", "--from", str(t0 / NS), "--to", str(t0 / NS + 20), "--output", str(out)],
                   check=True, capture_output=True)
    profile = ModelProfile.from_json(out.read_text())
    assert profile.rows == 20 * 50
    assert profile.features["x"].min == 0.0 and profile.features["x"].max == 19.0
    # Up to now: the last horizon (still live when the model stopped sending) is exported too.
    everything = tmp_path / "all.json"
    subprocess.run([sys.executable, "-m", "otel_ml.cli", "archive", "export", "--state-dir", str(state),
                    "--model", "arch", "--from", str(t0 / NS), "--to", str(t0 / NS + 60), "--output",
                    str(everything)], check=True, capture_output=True)
    assert ModelProfile.from_json(everything.read_text()).rows == 30 * 50
    listing = subprocess.run([sys.executable, "-m", "otel_ml.cli", "archive", "list", "--state-dir", str(state)],
                             check=True, capture_output=True, text=True).stdout
    kinds = {line.split()[1] for line in listing.splitlines() if line.startswith("arch ")}
    assert kinds == {"live", "window"}, listing
    # The exported range is a baseline like any other.
    baselines = tmp_path / "b"
    baselines.mkdir()
    (baselines / "from-archive.json").write_text(out.read_text())
    sp2 = start_serve(state, "--baseline-dir", str(baselines), "--no-otlp-http")
    try:
        assert any("baseline for model 'arch' version '' loaded" in line for line in sp2.log), sp2.log
    finally:
        sp2.stop()
