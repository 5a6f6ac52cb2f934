"""What the tests share: free loopback ports, an `otel-ml serve` subprocess, Prometheus scraping, real external
processes (the Collector built from our manifest, a Prometheus server), requests and spans to send, and the
hypothesis strategies of OTLP attribute values.

External processes are skipped with a clear message when not installed, and fail instead under CI=true (CI runs
scripts/setup-test-deps.sh, so a missing binary there is a setup bug, not a reason to skip).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from bench.ingest import free_port  # one port never handed out twice in a process, for bench and tests
from otel_ml import semconv


# --- processes and ports -----------------------------------------------------------------------------------
@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def scrape(port: int) -> list[Sample]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return [Sample(s.name, dict(s.labels), s.value)
            for fam in text_string_to_metric_families(text) for s in fam.samples]


def select(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


@dataclass
class ServeProcess:
    grpc_port: int
    prom_port: int
    http_port: int
    state_dir: Path
    proc: subprocess.Popen
    log: list[str] = field(default_factory=list)
    ui_port: int = 0

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def scrape(self) -> list[Sample]:
        return scrape(self.prom_port)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_serve(state_dir: Path, *extra: str, timeout: float = 30.0, grpc_port: int | None = None,
                prom_port: int | None = None, ui_port: int | None = None) -> ServeProcess:
    """Start `otel-ml serve` on loopback ports (free ones unless given: a restart reuses its ports) and wait
    until it says it is serving."""
    grpc_port, prom_port, http_port = grpc_port or free_port(), prom_port or free_port(), free_port()
    ui_port = ui_port or free_port()
    cmd = [sys.executable, "-m", "otel_ml.cli", "serve", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
           "--otlp-http-endpoint", f"127.0.0.1:{http_port}", "--ui-endpoint", f"127.0.0.1:{ui_port}",
           "--prometheus-endpoint", f"127.0.0.1:{prom_port}", "--state-dir", str(state_dir), *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    sp = ServeProcess(grpc_port, prom_port, http_port, state_dir, proc, ui_port=ui_port)
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sp.log.append(line)
            if line.startswith("otel-ml serving"):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if proc.poll() is not None or time.monotonic() > deadline:
            sp.stop()
            raise RuntimeError("otel-ml serve did not start:\n" + "".join(sp.log))
    return sp


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.5, what: str = "condition"):
    """Poll until predicate() returns something truthy; returns it or fails with `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


# --- external processes ------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
COLLECTOR = REPO / "build" / "otelcol-ml"


def require(what: str, present: bool, how: str) -> None:
    if present:
        return
    message = f"{what} is not installed ({how})"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " — CI must have it: scripts/setup-test-deps.sh")
    pytest.skip(message)


def require_collector() -> Path:
    require("the OpenTelemetry Collector", COLLECTOR.exists(), "scripts/build-collector.sh builds it; needs Go")
    return COLLECTOR


def require_prometheus() -> str:
    path = shutil.which("prometheus")
    require("Prometheus", path is not None, "Debian package prometheus; scripts/setup-test-deps.sh")
    return path  # type: ignore[return-value]


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text() if log else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s:\n{log.read_text() if log else ''}")


@dataclass
class Process:
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_collector(config: Path, workdir: Path, env: dict[str, str], name: str = "otelcol") -> tuple[Process, int]:
    """Start the Collector with ``config``; returns the process and its self-metrics port (ready when open)."""
    binary = require_collector()
    self_port = free_port()
    full_env = {**os.environ, "OTELCOL_SELF_METRICS_PORT": str(self_port), **env}
    log = workdir / f"{name}.log"
    proc = subprocess.Popen([str(binary), "--config", str(config)], env=full_env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    p = Process(proc, log)
    wait_port(self_port, proc=proc, log=log)
    return p, self_port


@dataclass
class Prometheus:
    process: Process
    port: int

    def query(self, promql: str) -> list[dict]:
        return self.api("query", query=promql)["result"]

    def api(self, endpoint: str, **params: object) -> Any:
        """``/api/v1/<endpoint>`` with ``params``: its ``data``."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{endpoint}?" + urllib.parse.urlencode(params)
        body = json.loads(urllib.request.urlopen(url, timeout=10).read())
        assert body["status"] == "success", body
        return body["data"]


def start_prometheus(workdir: Path, targets: list[str], rule_files: list[Path] = (),
                     flags: tuple[str, ...] = ()) -> Prometheus:
    binary = require_prometheus()
    port = free_port()
    cfg = workdir / "prometheus.yml"
    rules = "".join(f"  - {p}\n" for p in rule_files)
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        + (f"rule_files:\n{rules}" if rule_files else "")
        + "scrape_configs:\n  - job_name: otel-ml\n    static_configs:\n      - targets: ["
        + ", ".join(f"'{t}'" for t in targets) + "]\n")
    log = workdir / "prometheus.log"
    proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}", *flags], stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    p = Process(proc, log)
    wait_port(port, proc=proc, log=log)
    # The port opens before the storage is: until then every API call answers 503 (CI saw one, on a loaded machine).
    wait_for(lambda: _prometheus_ready(port), timeout=60, what=f"Prometheus ready (GET /-/ready; log: {log})")
    return Prometheus(p, port)


def _prometheus_ready(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5).status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):  # 503 (an HTTPError) while it starts
        return False


DASHBOARD = REPO / "examples" / "grafana" / "otel-ml-dashboard.json"
OWN_TEST_PANELS = ("Fairness:", "Attributions:")
"""Dashboard rows whose series need settings the Collector test does not run with: each is checked by its own test
(tests/e2e/test_fairness.py, tests/e2e/test_attribution.py) with ``panels_return_series``."""


def panels_return_series(workdir: Path, prom_port: int, title_prefix: str, models: str, timeout: float = 60) -> int:
    """Start a real Prometheus scraping the processor's ``prom_port`` and wait until every panel of the shipped
    Grafana dashboard whose title starts with ``title_prefix`` returns series for the models ``models`` (a regex);
    returns how many panels were checked."""
    panels = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["title"].startswith(title_prefix)]
    prometheus = start_prometheus(workdir, [f"127.0.0.1:{prom_port}"])
    try:
        for panel in panels:
            for target in panel["targets"]:
                expr = target["expr"].replace("$model", models).replace("$version", ".*").replace("$feature", ".*")
                wait_for(lambda e=expr: prometheus.query(e), timeout=timeout,
                         what=f"panel {panel['title']!r} to return series: {expr}")
    finally:
        prometheus.process.stop()
    return len(panels)


# --- what to send ------------------------------------------------------------------------------------------
def request(*spans: dict[str, object], resource: dict[str, object] | None = None,
            status_codes: list[int] | None = None) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for k, v in (resource or {}).items():
        rs.resource.attributes.append(KeyValue(key=k, value=any_value(v)))
    ss = rs.scope_spans.add()
    for i, attrs in enumerate(spans):
        span = ss.spans.add(name="predict", start_time_unix_nano=T0 + i * 10**6,
                            end_time_unix_nano=T0 + i * 10**6 + 2_000_000)
        if status_codes:
            span.status.code = status_codes[i]
        for k, v in attrs.items():
            span.attributes.append(KeyValue(key=k, value=any_value(v)))
    return req


def any_value(v: object) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, str):
        return AnyValue(string_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(x) for x in v)
        return out
    raise TypeError(v)


T0 = 1_700_000_000 * 10**9


def make_batches(n_batches: int, size: int) -> list[list]:
    """Finished SDK spans, grouped; the test hands them to the real OTLP exporter itself."""
    collect = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(collect))
    tracer = provider.get_tracer("crash-test")
    for i in range(n_batches * size):
        tracer.start_span("predict", attributes={"ml.model.name": f"m{i % 3}", "ml.feature.x": float(i)}).end()
    spans = list(collect.get_finished_spans())
    return [spans[i:i + size] for i in range(0, len(spans), size)]


FEATURES = ["amount", "age", "tenure", "channel", "plan"]


DRIFTED = {"amount", "channel"}


STABLE = {"age", "tenure", "plan", "prediction"}


def make_rows(rng: np.random.Generator, n: int, drifted: bool) -> pd.DataFrame:
    tenure = rng.exponential(5.0, n)
    return pd.DataFrame({
        "amount": rng.lognormal(3.3 if drifted else 3.0, 0.5, n),
        "age": rng.normal(40, 10, n).round().astype(int),
        "tenure": tenure,
        "channel": rng.choice(["web", "app", "store"], n, p=[0.3, 0.3, 0.4] if drifted else [0.5, 0.3, 0.2]),
        "plan": rng.choice(["free", "pro"], n, p=[0.7, 0.3]),
        "label": (tenure > 4).astype(int),
    })


def sdk_provider(sp: ServeProcess, **resource: str) -> TracerProvider:
    """The plain OTel SDK with its OTLP/gRPC exporter: what any instrumented app runs."""
    provider = TracerProvider(resource=Resource.create({"service.name": "e2e-client", **resource}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://{sp.grpc_endpoint}", insecure=True),
        max_queue_size=100_000, max_export_batch_size=512, schedule_delay_millis=100))
    return provider


def send_rows(provider: TracerProvider, model: str, version: str, df: pd.DataFrame,
              event_times_ns: np.ndarray | None = None, batch_every: int = 0) -> None:
    """One span per row (and, with batch_every, every batch_every rows as one array-valued batch span)."""
    tracer = provider.get_tracer("e2e")
    records = df.to_dict("records")
    i = 0
    while i < len(records):
        if batch_every and (i // batch_every) % 2 == 1:
            chunk = records[i:i + batch_every]
            attrs = {"ml.model.name": model, "ml.model.version": version, "ml.batch.size": len(chunk)}
            for f in FEATURES:
                attrs[f"ml.feature.{f}"] = [r[f] for r in chunk]
            attrs["ml.prediction"] = [r["label"] for r in chunk]
            t = None if event_times_ns is None else int(event_times_ns[i])
            tracer.start_span("predict_batch", attributes=attrs, start_time=t).end(end_time=t)
            i += len(chunk)
            continue
        r = records[i]
        attrs = {"ml.model.name": model, "ml.model.version": version, "ml.prediction": r["label"],
                 **{f"ml.feature.{f}": r[f] for f in FEATURES}}
        t = None if event_times_ns is None else int(event_times_ns[i])
        span = tracer.start_span("predict", attributes=attrs, start_time=t)
        span.end(end_time=None if t is None else t + 1_000_000)
        i += 1
    assert provider.force_flush(30_000)


scalars = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), st.text(max_size=40)),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-2**63, 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=20)),
)


def _array(values: list[AnyValue]) -> AnyValue:
    out = AnyValue()
    out.array_value.values.extend(values)
    return out


values = st.one_of(scalars, st.lists(scalars, max_size=6).map(_array),
                   st.lists(st.lists(scalars, max_size=3).map(_array), max_size=3).map(_array))


keys = st.one_of(st.sampled_from(["ml.model.name", "ml.model.version", "ml.batch.size", "ml.sampling.ratio",
                                  "ml.prediction", "ml.prediction.score", "ml.feature.a", "ml.feature.b",
                                  "ml.feature.", "http.route", "ml.prediction.id", "ml.ground_truth"]),
                 st.text(max_size=12).map(lambda s: "ml.feature." + s))


spans = st.lists(st.tuples(keys, values), max_size=8)


def build(span_attrs: list[list[tuple[str, AnyValue]]], resource: list[tuple[str, AnyValue]]) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(KeyValue(key=k, value=v) for k, v in resource)
    ss = rs.scope_spans.add()
    for attrs in span_attrs:
        span = ss.spans.add(end_time_unix_nano=time.time_ns(), **span_context())
        span.attributes.extend(KeyValue(key=k, value=v) for k, v in attrs)
    return req.SerializeToString()


def span_context() -> dict[str, bytes]:
    """A new trace and span id, as every span an SDK sends has (what example predictions keep)."""
    return {"trace_id": os.urandom(16), "span_id": os.urandom(8)}


# --- raw OTLP requests over gRPC, for exact control of ids, labels and timestamps -----------------------------
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def set_attribute(attrs, key: str, value: object) -> None:
    v = attrs.add(key=key).value
    if isinstance(value, AnyValue):
        v.CopyFrom(value)
    elif isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, int):
        v.int_value = value
    elif isinstance(value, float):
        v.double_value = value
    else:
        v.string_value = str(value)


def predictions_request(model: str, rows: list[dict], t_ns: int) -> bytes:
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    for row in rows:
        span = spans.add(start_time_unix_nano=t_ns, end_time_unix_nano=t_ns, **span_context())
        set_attribute(span.attributes, "ml.model.name", model)
        for k, v in row.items():
            set_attribute(span.attributes, k, v)
    return req.SerializeToString()


def labels_request(model: str, pairs: list[tuple[object, object]], t_ns: int) -> bytes:
    req = ExportLogsServiceRequest()
    records = req.resource_logs.add().scope_logs.add().log_records
    for pid, value in pairs:
        rec = records.add(time_unix_nano=t_ns)
        set_attribute(rec.attributes, "ml.model.name", model)
        set_attribute(rec.attributes, "event.name", "ml.ground_truth")
        set_attribute(rec.attributes, "ml.prediction.id", pid)
        set_attribute(rec.attributes, "ml.ground_truth", value)
    return req.SerializeToString()


def export(sp: ServeProcess, method: str, body: bytes):
    reply = ExportLogsServiceResponse if method == LOGS else ExportTraceServiceResponse
    with grpc.insecure_channel(sp.grpc_endpoint) as ch:
        return ch.unary_unary(method, response_deserializer=reply.FromString)(body, timeout=30)


def counter(sp: ServeProcess, name: str, **labels: str) -> float:
    got = select(sp.scrape(), name, **labels)
    return sum(s.value for s in got)


# --- LLM calls and their evaluation results (issue 45) ----------------------------------------------------
CALL = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 40}
MODEL = ("openai/gpt-4o-mini/chat", "gpt-4o-mini-2024-07-18")
MINUTE = 60 * 10**9


def span_id(i: int) -> bytes:
    return (0xA5A5_0000_0000_0000 + i).to_bytes(8, "big")


def calls_request(ids: list[int], t0: int, events: dict[int, list[dict]] | None = None):
    req = request(*([CALL] * len(ids)))
    for span, i in zip(req.resource_spans[0].scope_spans[0].spans, ids):
        span.span_id = span_id(i)
        span.start_time_unix_nano, span.end_time_unix_nano = t0 + i * 10**6, t0 + i * 10**6 + 5 * 10**8
        for attrs in (events or {}).get(i, []):
            ev = span.events.add(name=semconv.GENAI_EVALUATION_EVENT, time_unix_nano=span.end_time_unix_nano)
            ev.attributes.extend(KeyValue(key=k, value=any_value(v)) for k, v in attrs.items())
    return req


def evaluation_logs(rows: list[tuple[int, dict]], t: int) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    scope = req.resource_logs.add().scope_logs.add()
    for i, attrs in rows:
        rec = scope.log_records.add(time_unix_nano=t, event_name=semconv.GENAI_EVALUATION_EVENT)
        if i >= 0:
            rec.span_id, rec.trace_id = span_id(i), b"\x01" * 16
        rec.attributes.extend(KeyValue(key=k, value=any_value(v)) for k, v in attrs.items())
    return req
