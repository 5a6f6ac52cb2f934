"""What keeping an LLM call for its evaluation results costs (issue 45, part 2): per GenAI span, the decode (with
and without the call's keys, ``genai.evaluations``) and the ground-truth step (``GroundTruth.on_predictions`` and
the join under the call's ``gen_ai.response.id``: the call waits in the pending store under both keys, sealed to
disk each 262,144 rows), in this process, best of 3 over 520 requests of 512 calls each.

    .venv/bin/python -m bench.genai_call_cost
"""

from __future__ import annotations

import tempfile
import time

from bench.loadgen import genai_request
from otel_ml.analyze.performance import PerformanceConfig
from otel_ml.core.live import alias_rows
from otel_ml.decode import DecodeLimits
from otel_ml.decode.genai import GenAiConfig
from otel_ml.decode.otlp import decode_request
from otel_ml.labels.ground_truth import GroundTruth
from otel_ml.labels.pending import LabelsConfig


def cost(requests: list[bytes], config: GenAiConfig, rounds: int = 3) -> tuple[float, float]:
    """(decode, ground truth) in µs of CPU per span, the best of ``rounds``."""
    spans = len(requests) * 512
    best_decode = best_join = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        results = [decode_request(r, DecodeLimits(), config) for r in requests]
        t1 = time.process_time()
        with tempfile.TemporaryDirectory() as directory:
            gt = GroundTruth(directory, LabelsConfig(), PerformanceConfig())
            for result in results:
                for batch in result.batches:
                    gt.on_predictions(batch)
                    if (aliased := alias_rows(batch)) is not None:  # under its gen_ai.response.id too, as live.py
                        gt.join_predictions(aliased)
            t2 = time.process_time()
        best_decode, best_join = min(best_decode, (t1 - t0) / spans * 1e6), min(best_join, (t2 - t1) / spans * 1e6)
    return best_decode, best_join


def main() -> None:
    # 520 requests: 266,240 calls, past SEAL_ROWS (262,144), so that writing the waiting calls to disk is in it
    requests = [genai_request(512, seed=i, content=False) for i in range(520)]
    rows = {}
    for _ in range(2):  # alternated, so that both see the same machine
        for name, config in (("calls kept (genai.evaluations: true)", GenAiConfig()),
                             ("calls not kept (false)", GenAiConfig(evaluations=False))):
            d, j = cost(requests, config)
            best = rows.get(name, (float("inf"), float("inf")))
            rows[name] = (min(best[0], d), min(best[1], j))
    print("| GenAI calls | decode µs/span | ground truth µs/span | sum |")
    print("|---|---|---|---|")
    for name, (d, j) in rows.items():
        print(f"| {name} | {d:.3f} | {j:.3f} | {d + j:.3f} |")
    (kd, kj), (nd, nj) = rows.values()
    print(f"\nkeeping the calls: +{(kd + kj) - (nd + nj):.3f} µs per call")


if __name__ == "__main__":
    main()
