"""Cost of ground truth, in process: decoding id-carrying spans, keeping them pending, decoding and joining
labels (OTLP log records of 1,000 labels, as ``otel-ml labels send`` sends them, and one label per span, as
``ModelMonitor.record_ground_truth`` does); bytes on disk per waiting prediction.

    python -m bench.ground_truth [--rows 1000000]

Per CPU-second (process time), beside the same spans without ids decoded in the same run (the baseline). The
whole processor with ids (journal, sketches, pending store) is ``python -m bench.ingest --ids both``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_ml.analyze.performance import PerformanceConfig
from otel_ml.decode import decode_request
from otel_ml.decode.outcomes import decode_logs_request, id_hash
from otel_ml.instrument.labels import labels_request
from otel_ml.labels.ground_truth import GroundTruth
from otel_ml.labels.pending import LabelsConfig


def request(start: int, n: int, with_id: bool, t: int) -> bytes:
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    for i in range(start, start + n):
        s = spans.add(end_time_unix_nano=t + i)
        s.attributes.add(key="ml.model.name").value.string_value = "m"
        for k in range(5):
            s.attributes.add(key=f"ml.feature.f{k}").value.double_value = i * 0.1 + k
        s.attributes.add(key="ml.prediction").value.int_value = i % 2
        s.attributes.add(key="ml.prediction.probability").value.double_value = (i % 100) / 100
        if with_id:
            s.attributes.add(key="ml.prediction.id").value.string_value = f"req-{i:012d}-{i * 7919 % 100003:06d}"
    return req.SerializeToString()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    t = time.time_ns() - 3600 * 10**9
    per_req = 512
    reqs = {w: [request(k * per_req, per_req, w, t) for k in range(20)] for w in (False, True)}
    for label, with_id in (("spans without id (decode)", False), ("spans with id (decode)", True)):
        c = time.process_time()
        done = 0
        while done < args.rows:
            for r in reqs[with_id]:
                decode_request(r)
                done += per_req
        print(f"{label}: {done / (time.process_time() - c):,.0f} spans per CPU-second")
    with tempfile.TemporaryDirectory() as d:
        gt = GroundTruth(d, LabelsConfig(), PerformanceConfig())
        batches = [decode_request(r).batches[0] for r in reqs[True]]
        c = time.process_time()
        done = 0
        k = 0
        while done < args.rows:
            for b in batches:
                b = type(b)(**{**b.__dict__, "prediction_id": id_hash("m", np.char.add(f"x{k}-", np.arange(
                    b.n_rows).astype(str)))})
                gt.on_predictions(b)
                done += b.n_rows
            k += 1
        spent = time.process_time() - c
        state = gt.state()
        gt.pending.committed(state["pending"])
        print(f"keeping id-carrying predictions pending: {done / spent:,.0f} rows per CPU-second; "
              f"{gt.pending.disk_bytes() / done:.1f} bytes on disk per pending prediction")
        rng = np.random.default_rng(0)
        logs = []
        for _ in range(max(1, args.rows // 2000)):
            kk, ii = rng.integers(0, k, 1000), rng.integers(0, per_req, 1000)
            logs.append(labels_request("m", "", [f"x{a}-{b}" for a, b in zip(kk, ii)], [int(b % 2) for b in ii],
                                       1000)[0][1])
        c = time.process_time()
        labelled = 0
        for payload in logs:
            for lb in decode_logs_request(payload).labels:
                gt.on_labels(lb)
                labelled += lb.n_rows
        print(f"labels as log records of 1,000 (decode + join): {labelled / (time.process_time() - c):,.0f} "
              "per CPU-second")
        spans = []
        for _ in range(max(1, args.rows // 5000)):
            req = ExportTraceServiceRequest()
            ss = req.resource_spans.add().scope_spans.add().spans
            for a, b in zip(rng.integers(0, k, 512), rng.integers(0, per_req, 512)):
                sp = ss.add(end_time_unix_nano=t + 3600 * 10**9)
                sp.attributes.add(key="ml.model.name").value.string_value = "m"
                sp.attributes.add(key="ml.prediction.id").value.string_value = f"x{a}-{b}"
                sp.attributes.add(key="ml.ground_truth").value.int_value = int(b % 2)
            spans.append(req.SerializeToString())
        c = time.process_time()
        labelled = 0
        for payload in spans:
            for lb in decode_request(payload).labels:
                gt.on_labels(lb)
                labelled += lb.n_rows
        print(f"labels as one span each, 512 per request (decode + join): "
              f"{labelled / (time.process_time() - c):,.0f} per CPU-second")


if __name__ == "__main__":
    main()
