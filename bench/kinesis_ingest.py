"""Kinesis-mode ingest beside gRPC ingest, per processor CPU-second, in the same run (issue 35's target: within 20%).

    scripts/kinesis.sh start && python -m bench.kinesis_ingest [--records 1000] && scripts/kinesis.sh stop

A 4-shard stream of a Kinesis-compatible server (kinesalite, scripts/kinesis.sh) is written first with the load
generator's requests (512 spans of 20 features each, bench/loadgen.py), gzip-compressed as collector-config/
kinesis.yaml has the Collector's awskinesis exporter write them (and once uncompressed); then a durable `otel-ml
serve --kinesis-stream`, pinned to CPU 0 with no decode process, reads all of it, and its CPU time from its first
to its last applied record divides the spans. That CPU time includes boto3's reading of GetRecords' answers (JSON
with base64 data), which is what Kinesis costs a processor. The gRPC figure is bench.ingest's durable one-core run
(its own load generator on the other CPU), measured just before each Kinesis run with the same compression: gzip is
what the Collector's otlp exporter sends by default, as the awskinesis exporter in collector-config/kinesis.yaml.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from bench.ingest import cpu_seconds, free_port, run, taskset
from bench.kafka_ingest import scraped
from bench.loadgen import make_request
from bench.sketch_limit import rows_per_cpu_second

SPANS = 512


def kinesis_client(endpoint: str):
    import boto3

    return boto3.client("kinesis", endpoint_url=endpoint, region_name=os.environ["AWS_DEFAULT_REGION"])


def fill_stream(endpoint: str, records: int, compress: bool) -> str:
    """A new 4-shard stream with ``records`` load-generator requests of 512 spans (one model)."""
    client = kinesis_client(endpoint)
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    client.create_stream(StreamName=stream, ShardCount=4)
    while client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        time.sleep(0.1)
    payloads = [make_request(SPANS, seed=i) for i in range(16)]
    if compress:
        payloads = [gzip.compress(p, compresslevel=1) for p in payloads]  # Go's BestSpeed, as the exporter
    per_call = max(1, 3_500_000 // max(map(len, payloads)))  # PutRecords takes at most 5 MB (base64: 4/3 of it)
    for start in range(0, records, per_call):
        entries = [{"Data": payloads[i % len(payloads)], "PartitionKey": uuid.uuid4().hex}
                   for i in range(start, min(records, start + per_call))]
        out = client.put_records(StreamName=stream, Records=entries)
        assert out["FailedRecordCount"] == 0, out
    return stream


def kinesis_run(endpoint: str, records: int, compress: bool) -> dict[str, float]:
    stream = fill_stream(endpoint, records, compress)
    state, prom = tempfile.mkdtemp(prefix="otel-ml-bench-kinesis-"), free_port()
    proc = subprocess.Popen([*taskset([0]), sys.executable, "-m", "otel_ml.cli", "serve", "--receiver-processes", "0",
                             "--state-dir", state, "--otlp-grpc-endpoint", f"127.0.0.1:{free_port()}",
                             "--no-otlp-http", "--no-ui", "--prometheus-endpoint", f"127.0.0.1:{prom}",
                             "--kinesis-stream", stream, "--kinesis-endpoint", endpoint, "--log-level", "WARNING"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("otel-ml serving")
        total = records * SPANS
        first = None
        t0 = time.perf_counter()
        while True:
            got = scraped(prom, "otel_ml_spans_accepted_total")
            if first is None and got > 0:
                first = (sum(cpu_seconds(proc.pid)), got, time.perf_counter())
            if first is not None and got >= total:
                break
            if time.perf_counter() - t0 > 600:
                raise TimeoutError(f"only {got:,.0f} of {total:,} spans after 600 s")
            time.sleep(0.2)
        wall = time.perf_counter() - first[2]
        cpu = sum(cpu_seconds(proc.pid)) - first[0]
        spans = total - first[1]
        return {"spans": spans, "cpu_s": cpu, "wall_s": wall, "spans_per_cpu_s": spans / cpu}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default="http://127.0.0.1:14567")
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the gRPC run")
    ap.add_argument("--rounds", type=int, default=2, help="alternating gRPC/Kinesis rounds")
    args = ap.parse_args()
    for key, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(key, value)
    try:
        kinesis_client(args.endpoint).list_streams()
    except Exception as e:
        raise SystemExit(f"no Kinesis at --endpoint {args.endpoint} ({e}); start one with scripts/kinesis.sh start") \
            from None
    limit = statistics.median(rows_per_cpu_second() for _ in range(3))
    print(f"DataSketches alone (bench/sketch_limit.py, median of 3): {limit:,.0f} rows per CPU-second\n")
    print("| round | way in (durable, processor on 1 core) | spans | processor CPU s | spans per processor CPU-second "
          "| / gRPC | vs DataSketches alone |")
    print("|---|---|---|---|---|---|---|")
    for k in range(args.rounds):
        for compress in (True, False):
            how = "gzip" if compress else "uncompressed"
            grpc_run = run(True, args.seconds, 8, 1, compression="gzip" if compress else "none")
            print(f"| {k + 1} | OTLP/gRPC (bench.ingest), {how} | {grpc_run['spans']:,.0f} | "
                  f"{grpc_run['cpu_s']:.1f} | {grpc_run['spans_per_cpu_s']:,.0f} | 1.00 | "
                  f"{grpc_run['spans_per_cpu_s'] / limit:.3f}× |", flush=True)
            r = kinesis_run(args.endpoint, args.records, compress)
            print(f"| {k + 1} | Kinesis, 4 shards, {how} | {r['spans']:,.0f} | {r['cpu_s']:.1f} | "
                  f"{r['spans_per_cpu_s']:,.0f} | {r['spans_per_cpu_s'] / grpc_run['spans_per_cpu_s']:.2f} | "
                  f"{r['spans_per_cpu_s'] / limit:.3f}× |",
                  flush=True)


if __name__ == "__main__":
    main()
