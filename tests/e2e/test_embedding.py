"""Issue 34: drift of ``ml.embedding`` through a running `otel-ml serve`, from the SDK to the exported decisions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.embedding_drift import SCENARIOS, UNIFORM, sentence_vectors
from tests.support import sdk_provider, select, wait_for


def test_a_topic_mix_shift_with_unchanged_norms_is_flagged_and_an_aa_twin_stays_quiet(tmp_path: Path,
                                                                                         serve_factory) -> None:
    """384-d unit vectors of eight topics: the baseline is built from a CSV of them (`--embedding-column
    --multivariate`); one model then sends vectors whose topic mix shifted (every norm still 1), its twin vectors of
    the reference's mix. The shifted model's embedding drifts (some of its projections, or its reconstruction
    error), its norm does not, and the twin has no drift at all."""
    from otel_ml.instrument import ModelMonitor

    rng = np.random.default_rng(0)
    reference = sentence_vectors(rng, 5000, UNIFORM)
    csv = tmp_path / "reference.csv"
    csv.write_text("id,embedding\n" + "".join(
        f'{i},"[{", ".join(f"{x:.17g}" for x in v)}]"\n' for i, v in enumerate(reference)))
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    for model in ("topics", "twin"):
        out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "baseline", "build", "--model", model, "--input",
                              str(csv), "--exclude", "id", "--embedding-column", "embedding", "--multivariate",
                              "--output", str(baselines / f"{model}.json")],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
    shifted, same = sentence_vectors(rng, 2000, SCENARIOS["strong shift"]), sentence_vectors(rng, 2000, UNIFORM)
    assert np.allclose(np.linalg.norm(shifted, axis=1), 1.0)  # the premise: no vector changed its length
    config = tmp_path / "otel-ml.yaml"  # sample counts of one projection: what the wait below waits for
    config.write_text('export:\n  detail_for:\n    "topics/(embedding).0": all\n    "twin/(embedding).0": all\n')
    sp = serve_factory("--config", str(config), "--baseline-dir", str(baselines), "--window", "1", "--horizon", "60",
                       "--evaluation-interval", "0.5")
    provider = sdk_provider(sp)
    for model, vectors in (("topics", shifted), ("twin", same)):
        monitor = ModelMonitor(model, tracer_provider=provider)
        for k in range(0, 2000, 250):  # 250 × 384 numbers per span, well under the gRPC message limit
            monitor.record_batch({}, predictions=[1.0] * 250, embeddings=vectors[k:k + 250])
    provider.force_flush()

    def decisions(model: str) -> dict[str, float]:
        got = {s.labels["ml_feature_name"]: s.value for s in select(
            sp.scrape(), "ml_drift_detected", ml_model_name=model, ml_drift_method="overall")}
        counted = select(sp.scrape(), "ml_drift_sample_count", ml_model_name=model, ml_sample="current",
                         ml_feature_name="(embedding).0")
        # 16 projections, the norm, the prediction, (multivariate), (correlation)
        return got if counted and counted[0].value == 2000 and len(got) == 20 else {}

    topics = wait_for(lambda: decisions("topics"), timeout=90, what="an evaluation over all 2,000 rows of topics")
    drifting = {name for name, v in topics.items() if v == 1.0}
    assert any(name.startswith("(embedding).") and name != "(embedding).norm" for name in drifting), topics
    assert topics["(embedding).norm"] == 0.0, topics
    twin = wait_for(lambda: decisions("twin"), timeout=90, what="an evaluation over all 2,000 rows of twin")
    assert not any(twin.values()), twin


def test_an_embedding_that_changes_dimension_between_requests_is_refused_with_a_reason(serve_factory,
                                                                                      tmp_path: Path) -> None:
    """Issue 49 L: inside one request a second dimension was refused, across requests (8 → 16 → 4,096) it was taken
    silently and projected into another space. A model's embeddings keep the dimension of its first ones, across
    a kill -9 too; spans of another dimension are refused (partial_success, a counter, an example)."""
    import time

    from tests.support import TRACES, export, request

    sp = serve_factory("--window", "60", "--horizon", "120")

    def send(dimension: int):
        req = request(*({"ml.model.name": "embedded", "ml.embedding": [0.5] * dimension, "ml.feature.x": 1.0}
                        for _ in range(3)))
        for span in req.resource_spans[0].scope_spans[0].spans:
            span.end_time_unix_nano = time.time_ns()
        return export(sp, TRACES, req.SerializeToString())

    assert send(8).partial_success.rejected_spans == 0
    for dimension in (16, 4096):
        answer = send(dimension)
        assert answer.partial_success.rejected_spans == 3, answer
        assert "whose embeddings have dimension 8" in answer.partial_success.error_message
    sp.proc.kill()
    sp.proc.wait()
    sp = serve_factory("--window", "60", "--horizon", "120", state_dir=sp.state_dir, grpc_port=sp.grpc_port,
                       prom_port=sp.prom_port, ui_port=sp.ui_port)
    assert send(16).partial_success.rejected_spans == 3  # the journal replayed: the dimension is remembered
    assert send(8).partial_success.rejected_spans == 0
    assert sum(s.value for s in select(sp.scrape(), "otel_ml_spans_rejected_total",
                                       reason="embedding_dimension_mismatch")) >= 3
    assert sum(s.value for s in select(sp.scrape(), "ml_predictions_total", ml_model_name="embedded")) == 6
