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
