"""Issue 33 (first part): drift per segment and which segment a change comes from, through a running `otel-ml serve`
fed by the plain OTel SDK (ModelMonitor batches at their own event times)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import numpy as np

from tests.support import sdk_provider, select, wait_for

NS = 1_000_000_000
REGIONS = [f"r{k}" for k in range(8)]
ROWS = 8000


def send(monitor, rng: np.random.Generator, start_s: float, shares: list[float], mean_of) -> None:
    """``ROWS`` predictions over 540 s from ``start_s`` (Unix seconds), regions drawn with ``shares``, x normal
    around ``mean_of(region)``, a category c the same everywhere."""
    regions = rng.choice(np.array(REGIONS), ROWS, p=shares)
    x = rng.normal(0, 1, ROWS) + np.array([mean_of(r) for r in regions])
    c = rng.choice(np.array(["a", "b", "c"]), ROWS, p=[0.5, 0.3, 0.2])
    times = start_s + np.sort(rng.uniform(0, 540, ROWS))
    for k in range(0, ROWS, 500):
        monitor.record_batch({"region": regions[k:k + 500].tolist(), "x": x[k:k + 500].tolist(),
                              "c": c[k:k + 500].tolist()}, timestamps=times[k:k + 500].tolist())


def drift_document(sp, model: str) -> dict:
    base = f"http://127.0.0.1:{sp.ui_port}"
    with urllib.request.urlopen(f"{base}/api/v1/models", timeout=10) as r:
        href = next(m["href"] for m in json.load(r)["models"] if m["model"] == model)
    with urllib.request.urlopen(base + href, timeout=10) as r:  # the model's drift document
        return json.load(r)


def test_one_region_drifting_is_flagged_and_ranked_first_and_a_mix_shift_is_attributed_to_mix(
        tmp_path: Path, serve_factory) -> None:
    """Two models segmented by region (8 regions), each reference pinned from its first 540 s of traffic.
    (a) ``within``: region r3's x moves by 3 σ, every region's share unchanged: r3 is the only segment flagged, x
    is the feature it names, and r3 is first in x's attribution, as a change within the segment.
    (c) ``mix``: regions keep their own x distributions (means 0 to 3.5) but r7's share goes from 1/8 to 1/2: no
    segment is flagged, and x's change is attributed to mix. Then a restart: the segments come back with their
    windows."""
    from otel_ml.instrument import ModelMonitor

    config = tmp_path / "otel-ml.yaml"
    config.write_text("segments:\n  by:\n    within: [region]\n    mix: [region]\n")
    sp = serve_factory("--config", str(config), "--window", "60", "--horizon", "600", "--evaluation-interval", "0.5")
    provider = sdk_provider(sp)
    rng = np.random.default_rng(11)
    start = time.time() - 1300
    even = [1 / 8] * 8
    skewed = [1 / 14] * 7 + [1 / 2]
    for model, shares_after, mean_before, mean_after in (
            ("within", even, lambda r: 0.0, lambda r: 3.0 if r == "r3" else 0.0),
            ("mix", skewed, lambda r: int(r[1]) / 2, lambda r: int(r[1]) / 2)):
        monitor = ModelMonitor(model, tracer_provider=provider)
        send(monitor, rng, start, even, mean_before)
        send(monitor, rng, start + 660, shares_after, mean_after)
    provider.force_flush()

    def evaluated(model: str) -> dict | None:
        shares = select(sp.scrape(), "ml_segment_share", ml_model_name=model, ml_sample="current")
        if len(shares) != 8:
            return None
        doc = drift_document(sp, model)
        counted = sum(s["current_predictions"] for s in doc["segments"])
        return doc if counted == ROWS else None

    within = wait_for(lambda: evaluated("within"), timeout=90, what="the within model's segments over every row")
    flagged = [s["segment"] for s in within["segments"] if s["detected"]]
    assert flagged == ["region=r3"], within["segments"]
    assert within["segments"][0]["drifted_features"] == ["x"]
    x_parts = [c for c in within["segment_contributions"] if c["feature"] == "x"]
    assert x_parts[0]["segment"] == "region=r3" and x_parts[0]["within"] > 0.3 > abs(x_parts[0]["mix"]), x_parts[:2]
    with urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}/api/v1/models", timeout=10) as r:
        href = next(m["href"] for m in json.load(r)["models"] if m["model"] == "within")
    with urllib.request.urlopen(f"http://127.0.0.1:{sp.ui_port}{href.removeprefix('/api/v1').removesuffix('/drift')}",
                                timeout=10) as r:
        page = r.read().decode()
    table = page[page.index("<h2>Segments</h2>"):]  # the model page's segment table, the drifted one first
    assert table.index("region=r3") < min(table.index(f"region={r}") for r in REGIONS if r != "r3")
    assert "Which segments moved each feature" in table
    detected = {s.labels["ml_segment"]: s.value for s in select(sp.scrape(), "ml_segment_drift_detected",
                                                                ml_model_name="within")}
    assert detected == {f"region={r}": (1.0 if r == "r3" else 0.0) for r in REGIONS}

    mix = wait_for(lambda: evaluated("mix"), timeout=90, what="the mix model's segments over every row")
    assert not [s["segment"] for s in mix["segments"] if s["detected"]], mix["segments"]
    parts = [c for c in mix["segment_contributions"] if c["feature"] == "x"]
    assert abs(sum(c["mix"] for c in parts)) > 5 * abs(sum(c["within"] for c in parts)), parts
    assert parts[0]["segment"] == "region=r7"  # its share moved most, its mean furthest from the model's
    shares = {s.labels["ml_segment"]: s.value for s in select(sp.scrape(), "ml_segment_share",
                                                              ml_model_name="mix", ml_sample="current")}
    assert abs(shares["region=r7"] - 0.5) < 0.03, shares

    # Segments are windows too: a restart reads them back from the checkpoint with the windows they live in.
    sp.stop()
    again = serve_factory("--config", str(config), "--window", "60", "--horizon", "600", "--evaluation-interval",
                          "0.5", state_dir=sp.state_dir)
    sp = again
    within = wait_for(lambda: evaluated("within"), timeout=90, what="the within model's segments after a restart")
    assert [s["segment"] for s in within["segments"] if s["detected"]] == ["region=r3"]
