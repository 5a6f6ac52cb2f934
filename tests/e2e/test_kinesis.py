"""Kinesis as a way in (issue 35): a Kinesis-compatible server (kinesalite from the npm registry, scripts/kinesis.sh),
the real Collector with its awskinesis exporter (collector-config/kinesis.yaml as shipped), `otel-ml serve
--kinesis-stream`, a shard split and kill -9 in the middle of the traffic."""

from __future__ import annotations

import gzip
import http.client
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.loadgen import make_request
from tests.support import REPO, free_port, require, select, wait_for

NS = 1_000_000_000
FEATURES = ("x", "z")
CHUNKS, CHUNK = 12, 500


@pytest.fixture(scope="module")
def kinesis(tmp_path_factory) -> Iterator[str]:
    require("npm (kinesalite from the npm registry)", bool(shutil.which("npm") and shutil.which("node")),
            "scripts/setup-test-deps.sh installs it")
    port = free_port()
    env = {**os.environ, "KINESIS_PORT": str(port)}
    out = subprocess.run([str(REPO / "scripts" / "kinesis.sh"), "start"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    try:
        yield out.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(REPO / "scripts" / "kinesis.sh"), "stop"], env=env, timeout=60)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch) -> None:
    """Credentials and region the AWS way (environment), for boto3 here, the Collector and otel-ml serve."""
    for key, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                       ("AWS_REGION", "us-east-1"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def client(endpoint: str):
    import boto3

    return boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")


def create_stream(endpoint: str, name: str, shards: int) -> None:
    c = client(endpoint)
    c.create_stream(StreamName=name, ShardCount=shards)
    wait_for(lambda: c.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
             == "ACTIVE", timeout=30, what=f"stream {name} active")


def records_per_shard(endpoint: str, stream: str) -> dict[str, int]:
    """Every record in the stream, per shard (read here with boto3, independently of otel-ml)."""
    c = client(endpoint)
    out = {}
    for shard in c.list_shards(StreamName=stream)["Shards"]:
        it = c.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        n = 0
        while it:
            page = c.get_records(ShardIterator=it, Limit=10_000)
            n += len(page["Records"])
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            it = page.get("NextShardIterator")
        out[shard["ShardId"]] = n
    return out


def split_first_shard(endpoint: str, stream: str) -> None:
    c = client(endpoint)
    shard = c.list_shards(StreamName=stream)["Shards"][0]
    low, high = (int(shard["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
    c.split_shard(StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((low + high) // 2))
    wait_for(lambda: len(c.list_shards(StreamName=stream)["Shards"]) == 6, timeout=30, what="the split done")


def reference_csv(tmp_path: Path, rng: np.random.Generator) -> Path:
    n = 4000
    csv = tmp_path / "reference.csv"
    x, z, c = rng.normal(0, 1, n), rng.gamma(2.0, 1.0, n), rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    csv.write_text("x,z,c\n" + "".join(f"{a},{b},{d}\n" for a, b, d in zip(x, z, c)))
    return csv


def accepted(sp) -> float:
    return sum(s.value for s in select(sp.scrape(), "otel_ml_spans_accepted_total"))


def drift(sp, model: str) -> tuple[dict, dict]:
    """Decisions and scores per (feature, method), once every row of ``model`` is in the horizon's count."""
    samples = sp.scrape()
    detected = {(s.labels["ml_feature_name"], s.labels["ml_drift_method"]): s.value
                for s in select(samples, "ml_drift_detected", ml_model_name=model)}
    scores = {(s.labels["ml_feature_name"], s.labels["ml_drift_method"]): s.value
              for s in select(samples, "ml_drift_score", ml_model_name=model)}
    return detected, scores


def test_sdk_collector_kinesis_to_serve_exactly_once_across_a_split_and_kill_9(kinesis: str, serve_factory,
                                                                                 tmp_path: Path) -> None:
    """The plain OTel SDK → the Collector (collector-config/kinesis.yaml, awskinesis exporter, gzip) → a 4-shard
    stream → otel-ml serve --kinesis-stream. Shard 0 is split a third of the way through, the processor is killed
    (-9) two thirds through and restarted on its state directory: every prediction counted exactly once, the
    split's children read, and the drift decisions equal those of a processor that took the same spans over
    OTLP/gRPC. Then labels as SDK log records through the Collector's logs pipeline and the logs stream: all
    joined."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from tests.e2e.test_collector import labelled_rows, send_predictions_and_log_labels
    from tests.support import start_collector

    stream = "otel-ml-spans-e2e"
    create_stream(kinesis, stream, 4)
    create_stream(kinesis, "otel-ml-ground-truth-e2e", 1)
    rng = np.random.default_rng(3)
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", "kin", "--input",
                          str(reference_csv(tmp_path, rng)), "--output", str(baselines / "kin.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    detail = "export:\n  detail_for:\n    kin: all\n"  # per-feature scores and sample counts
    config, kin_config = tmp_path / "otel-ml.yaml", tmp_path / "otel-ml-kinesis.yaml"
    config.write_text(detail)
    kin_config.write_text(detail + "receiver:\n  kinesis:\n    compression: gzip\n    shard_sync_interval_seconds: 1\n"
                          "    logs_stream: otel-ml-ground-truth-e2e\n")
    common = ("--baseline-dir", str(baselines), "--window", "60", "--horizon", "600", "--evaluation-interval", "1",
              "--no-otlp-http")
    kin_args = ("--config", str(kin_config), "--kinesis-stream", stream, "--kinesis-endpoint", kinesis, *common)
    via_kinesis = serve_factory(*kin_args, state_dir=tmp_path / "kinesis-state")
    via_otlp = serve_factory("--config", str(config), *common, state_dir=tmp_path / "otlp-state")
    col_grpc = free_port()
    collector, _ = start_collector(REPO / "collector-config" / "kinesis.yaml", tmp_path, {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{col_grpc}", "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "KINESIS_ENDPOINT": kinesis, "OTEL_ML_KINESIS_STREAM": stream,
        "OTEL_ML_KINESIS_LOGS_STREAM": "otel-ml-ground-truth-e2e"})
    try:
        # One SDK, two exporters: the same spans to the Collector (→ Kinesis) and straight to the OTLP processor.
        provider = TracerProvider(resource=Resource.create({"service.name": "serving"}))
        for port in (col_grpc, via_otlp.grpc_port):
            provider.add_span_processor(BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True), max_export_batch_size=512))
        tracer = provider.get_tracer("serving")
        t0 = time.time_ns() - 30 * NS
        total = CHUNKS * CHUNK

        sent: dict[str, list[np.ndarray]] = {"x": [], "z": []}

        def send() -> None:
            for k in range(CHUNKS):
                x = rng.normal(0.5 if k % 2 else 0.0, 1, CHUNK)  # half the chunks shifted: x drifts, z does not
                z, c = rng.gamma(2.0, 1.0, CHUNK), rng.choice(["a", "b", "c"], CHUNK, p=[0.5, 0.3, 0.2])
                sent["x"].append(x)
                sent["z"].append(z)
                for i in range(CHUNK):
                    t = t0 + (k * CHUNK + i) * 1_000_000
                    span = tracer.start_span("predict", start_time=t, attributes={
                        "ml.model.name": "kin", "ml.feature.x": float(x[i]), "ml.feature.z": float(z[i]),
                        "ml.feature.c": str(c[i])})
                    span.end(end_time=t + 500_000)
                    if i % 100 == 99:  # ~60 Collector batches, so ~60 records: enough to land on the split's children
                        provider.force_flush()
                        time.sleep(0.08)

        writer = threading.Thread(target=send)
        writer.start()
        wait_for(lambda: accepted(via_kinesis) >= 3 * CHUNK, timeout=60, what="a third applied")
        split_first_shard(kinesis, stream)
        wait_for(lambda: accepted(via_kinesis) >= 7 * CHUNK, timeout=60, what="two thirds applied")
        assert writer.is_alive(), "the kill must land while spans still arrive"
        killed = via_kinesis
        killed.proc.kill()
        killed.proc.wait()
        writer.join(120)
        via_kinesis = serve_factory(*kin_args, state_dir=tmp_path / "kinesis-state")
        wait_for(lambda: accepted(via_kinesis) >= total, timeout=120, what="every prediction applied")
        assert any("replayed" in line and "journaled request" in line for line in via_kinesis.log), \
            "".join(via_kinesis.log)
        wait_for(lambda: accepted(via_otlp) >= total, timeout=60, what="every prediction over OTLP")
        time.sleep(2)  # anything read twice would show now
        assert accepted(via_kinesis) == total and accepted(via_otlp) == total
        counted = {s.labels["ml_model_name"]: s.value for s in select(via_kinesis.scrape(), "ml_predictions_total")}
        assert counted == {"kin": float(total)}
        per_shard = records_per_shard(kinesis, stream)
        children = {shard: n for shard, n in per_shard.items() if shard in ("shardId-000000000004",
                                                                           "shardId-000000000005")}
        assert len(children) == 2 and sum(children.values()) > 0, per_shard  # records went through the split
        assert any("shardId-000000000000 finished" in line for line in killed.log + via_kinesis.log), \
            "the split shard was not read to its end"

        def settled(sp) -> tuple[dict, dict] | None:
            counts = select(sp.scrape(), "ml_drift_sample_count", ml_model_name="kin", ml_sample="current")
            detected, scores = drift(sp, "kin")
            full = counts and all(s.value == total for s in counts)
            return (detected, scores) if full and {f for f, _ in detected} >= {"x", "z", "c"} else None

        kin_detected, kin_scores = wait_for(lambda: settled(via_kinesis), timeout=60, what="drift over every row")
        otlp_detected, otlp_scores = wait_for(lambda: settled(via_otlp), timeout=60, what="drift over every row")
        # The decisions people alert on (each feature's overall decision) are equal; a single method's score can
        # sit at its threshold, where the reordering below tips it either way.
        overall = {k: v for k, v in kin_detected.items() if k[1] == "overall"}
        assert overall == {k: v for k, v in otlp_detected.items() if k[1] == "overall"}
        assert overall[("x", "overall")] == 1.0 and overall[("z", "overall")] == 0.0, overall
        reference = np.genfromtxt(tmp_path / "reference.csv", delimiter=",", names=True)
        for key, score in otlp_scores.items():
            # The same rows in another order: KLL's compaction differs, within its rank error (k = 200: 1.65%
            # per sketch, so a KS distance moves by at most 2 x 1.65%); exact grids (categories) agree exactly.
            # Wasserstein integrates the CDF gap over the values: the two current sketches' CDFs differ by at most
            # 2 x 1.65% over the current range, divided by the reference's σ (docs/statistics.md, Known limits).
            bound = 0.033 * max(1.0, abs(score))
            if key[1] == "wasserstein":
                values = np.concatenate(sent[key[0]])
                bound = 0.033 * float(values.max() - values.min()) / float(np.std(reference[key[0]], ddof=1))
            assert abs(kin_scores[key] - score) <= bound, (key, kin_scores[key], score, bound)

        # Ground truth as OTLP log records: the Collector's second awskinesis exporter → the logs stream → joined.
        rows = labelled_rows(rng, 300)
        send_predictions_and_log_labels(f"127.0.0.1:{col_grpc}", "kin-labelled", rows, time.time_ns() - 20 * NS)
        accuracy = float((rows.y_pred == rows.y).mean())

        def joined() -> float | None:
            samples = via_kinesis.scrape()
            matched = select(samples, "ml_ground_truth_total", ml_model_name="kin-labelled")
            got = select(samples, "ml_performance", ml_model_name="kin-labelled", ml_performance_metric="accuracy")
            return got[0].value if matched and matched[0].value == 300 and got and \
                got[0].value == pytest.approx(accuracy) else None

        wait_for(joined, timeout=60, what=f"all 300 labels joined through the logs stream, accuracy {accuracy}")
    finally:
        collector.stop()


class ThrottlingProxy(http.server.ThreadingHTTPServer):
    """Kinesis' answer to a reader over its shard's 5 calls a second, in front of the real server: every
    ``every``-th GetRecords is refused with ProvisionedThroughputExceededException (HTTP 400, as AWS answers)."""

    def __init__(self, upstream: str, every: int = 3) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.every, self.calls, self.refused = every, 0, 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: ThrottlingProxy

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        target = self.headers.get("X-Amz-Target", "")
        if target.endswith(".GetRecords"):
            with self.server.lock:
                self.server.calls += 1
                refuse = self.server.calls % self.server.every == 0
                self.server.refused += refuse
            if refuse:
                out = json.dumps({"__type": "ProvisionedThroughputExceededException",
                                  "message": "Rate exceeded for shard in stream under account."}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                return
        conn = http.client.HTTPConnection(self.server.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request("POST", self.path, body, headers)
        reply = conn.getresponse()
        data = reply.read()
        self.send_response(reply.status)
        for k, v in reply.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()


def test_bad_records_are_skipped_and_throttled_reads_backed_off(kinesis: str, serve_factory, tmp_path: Path) -> None:
    """Records put with boto3 (as any producer would): plain, gzip and zlib OTLP, OTLP JSON, a record that is not
    OTLP, a gzip bomb, and a KPL aggregated record (aws-kinesis-agg) holding two exports and one bad user record.
    Every third GetRecords is throttled: the reader backs off and counts it; the two shards are then merged and
    more records written to their child. Every good record is counted exactly once; the bad ones are skipped with
    their reasons."""
    import zlib

    stream = "otel-ml-direct"
    create_stream(kinesis, stream, 2)
    c = client(kinesis)
    payloads = [make_request(50, seed=i, model="direct") for i in range(12)]
    encoded = [gzip.compress(p) if i % 3 == 1 else zlib.compress(p) if i % 3 == 2 else p
               for i, p in enumerate(payloads)]
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    as_json = json_format.MessageToJson(ExportTraceServiceRequest.FromString(make_request(50, seed=99,
                                                                                         model="direct"))).encode()
    bomb = gzip.compress(bytes(2_000_000))  # 2 MB of zeros in ~2 KB
    # The KPL's aggregation format, written by AWS's own library: two OTLP exports and a user record that is not.
    from aws_kinesis_agg.aggregator import RecordAggregator

    aggregator = RecordAggregator()
    for i, user_record in enumerate([make_request(50, seed=200, model="direct"), b"\x0a\xff not OTLP either",
                                     gzip.compress(make_request(50, seed=201, model="direct"))]):
        aggregator.add_user_record(f"u{i}", user_record)
    aggregated = aggregator.clear_and_get().get_contents()[2]
    for i, data in enumerate([*encoded[:6], b"\x0a\xff not OTLP", as_json, bomb, aggregated, *encoded[6:]]):
        c.put_record(StreamName=stream, Data=data, PartitionKey=f"k{i}")
    proxy = ThrottlingProxy(kinesis)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        config = tmp_path / "otel-ml.yaml"
        config.write_text("receiver:\n  kinesis:\n    max_message_bytes: 1000000\n    records_per_call: 3\n"
                          "    poll_interval_seconds: 0.05\n")
        sp = serve_factory("--config", str(config), "--kinesis-stream", stream, "--kinesis-endpoint",
                           f"http://127.0.0.1:{proxy.server_address[1]}", "--no-otlp-http")
        wait_for(lambda: accepted(sp) >= 15 * 50, timeout=60, what="every good record applied")
        # Resharding the other way: the two shards merged; what is written next goes to their child, read once
        # both parents are finished.
        c.merge_shards(StreamName=stream, ShardToMerge="shardId-000000000000",
                       AdjacentShardToMerge="shardId-000000000001")
        wait_for(lambda: len(c.list_shards(StreamName=stream)["Shards"]) == 3, timeout=30, what="the merge done")
        for i in range(4):
            c.put_record(StreamName=stream, Data=make_request(50, seed=300 + i, model="direct"), PartitionKey=f"m{i}")
        wait_for(lambda: accepted(sp) >= 19 * 50, timeout=60, what="the merged shard's records applied")
        assert records_per_shard(kinesis, stream)["shardId-000000000002"] == 4

        def skipped() -> dict[str, float]:
            return {s.labels["reason"]: s.value for s in select(sp.scrape(), "otel_ml_kinesis_records_skipped_total")}

        wait_for(lambda: skipped() == {"not_otlp": 2.0, "too_large": 1.0}, timeout=30, what="the bad records")
        time.sleep(1)
        samples = sp.scrape()
        assert accepted(sp) == 19 * 50
        throttled = sum(s.value for s in select(samples, "otel_ml_kinesis_throttled_total", operation="GetRecords"))
        assert throttled >= 3 and proxy.refused >= throttled, (throttled, proxy.refused)
        assert any("skipped (too_large)" in line for line in sp.log), "".join(sp.log[-20:])
    finally:
        proxy.shutdown()


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc: each process's parent)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_deleted_stream_is_not_ready_and_a_killed_processor_leaves_no_process_behind(kinesis: str, serve_factory,
                                                                                       tmp_path: Path) -> None:
    """Issue 49 K: /readyz stayed ready with the stream deleted (a warning every 2 s), a SIGTERM took over 30 s, and
    after a kill -9 the decode process and the multiprocessing resource tracker lived on with parent 1. Now the
    stream's absence is readiness (one warning), a stop takes seconds, and every child ends with its parent."""
    import urllib.error
    import urllib.request

    stream = "otel-ml-lifetime"
    create_stream(kinesis, stream, 1)
    config = tmp_path / "otel-ml.yaml"
    config.write_text("receiver:\n  kinesis:\n    decode_processes: 1\n    shard_sync_interval_seconds: 1\n")
    args = ("--config", str(config), "--kinesis-stream", stream, "--kinesis-endpoint", kinesis, "--no-otlp-http")

    def ready(sp) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{sp.prom_port}/readyz", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    sp = serve_factory(*args, state_dir=tmp_path / "stopped")
    assert ready(sp)[0] == 200
    client(kinesis).delete_stream(StreamName=stream)
    _, why = wait_for(lambda: (got := ready(sp))[0] == 503 and got, timeout=30, what="not ready without the stream")
    assert stream in why, why
    assert "".join(sp.log).count("is gone") == 1
    started = time.monotonic()
    assert sp.stop() == 0 and time.monotonic() - started < 15, "".join(sp.log[-10:])
    assert "leaked" not in "".join(sp.log)  # nanobind's finalization report is not printed after a clean stop

    create_stream(kinesis, stream, 1)
    sp = serve_factory(*args, state_dir=tmp_path / "killed")
    children = wait_for(lambda: len(c := _children(sp.proc.pid)) >= 2 and c, what="the decode process and tracker")
    sp.proc.kill()
    sp.proc.wait()
    wait_for(lambda: not any(_alive(pid) for pid in children), timeout=20,
             what=f"the children {sorted(children)} of the killed processor ended")
