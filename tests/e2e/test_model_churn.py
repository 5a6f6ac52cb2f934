"""Model churn: many more (model, version)s over time than ``models.max_models``, over simulated days of event
time. Every new version must be monitored; live models, memory and exported series must stay bounded; a
restart in the middle must not resurrect released versions or lose counts; ``otel-ml models list/retire``
work on the state directory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from otel_ml.service import ProcessorService
from tests.support import scrape, select
from tests.unit.test_model_churn import DAY, MAX_MODELS, MINUTE, NS, ROWS, request, start

NEW_PER_DAY = 3

DAYS = 14

STEPS, STEP = 30, 4 * MINUTE  # each version sends for two hours of its day


def crash(service: ProcessorService) -> None:
    """Stop as kill -9 would leave things: no final checkpoint, the journal as committed."""
    service.evaluator.shutdown()
    service.backend._stop.set()
    service.receiver.shutdown()
    assert service.backend.journal is not None
    service.backend.journal.close()
    service.exporter.shutdown()


def predictions(service: ProcessorService) -> dict[str, float]:
    assert service.exporter.prometheus_port is not None
    return {s.labels["ml_model_version"]: s.value
            for s in select(scrape(service.exporter.prometheus_port), "ml_predictions_total")}


def test_ten_times_the_limit_in_versions_over_two_weeks_all_monitored_and_bounded(tmp_path: Path) -> None:
    t0 = (time.time_ns() // DAY - DAYS - 2) * DAY
    service = start(tmp_path)
    sent: dict[str, int] = {}
    live_seen, windows_seen, series_seen, pinned_seen = 0, 0, 0, 0
    try:
        for day in range(DAYS):
            if day == DAYS // 2:
                crash(service)
                service = start(tmp_path)
                assert service.live.count() <= MAX_MODELS
                after = predictions(service)
                assert all(after[v] == n for v, n in sent.items() if v in after), (after, sent)
            versions = [f"d{day}-{i}" for i in range(NEW_PER_DAY)]
            for step in range(STEPS):
                end = t0 + day * DAY + 8 * 3600 * NS + step * STEP
                for v in [*versions, "stable"]:
                    model = "stable" if v == "stable" else "churn"
                    result = service.pipeline.consume(request(model, v, end, seed=hash((v, step)) % 2**32))
                    assert result.spans_accepted == 1, result.message()  # every new version admitted
                    sent[v] = sent.get(v, 0) + ROWS
                    live_seen = max(live_seen, service.live.count())
                    windows_seen = max(windows_seen, sum(len(wp.windows) for wp in service.live.views().values()))
            for hour in range(11, 24):  # the stable model is in use all day, the day's new versions are not
                end = t0 + day * DAY + hour * 3600 * NS
                assert service.pipeline.consume(request("stable", "stable", end, seed=hour)).spans_accepted == 1
                sent["stable"] += ROWS
            counted = predictions(service)
            series_seen = max(series_seen, len(counted))
            pinned_seen = max(pinned_seen, len(list((tmp_path / "state" / "pinned").glob("*.json"))))
            for v in [*versions, "stable"]:  # monitored: every prediction counted (stable: since day 0)
                assert counted[v] == sent[v], (day, v, counted)
            reports = {r.version for r in service.evaluator.evaluate().reports}
            assert set(versions) <= reports, reports
        versions_total = DAYS * NEW_PER_DAY + 1
        assert versions_total >= 10 * MAX_MODELS
        assert live_seen <= MAX_MODELS and series_seen <= MAX_MODELS
        assert windows_seen <= MAX_MODELS * 13  # horizon/window + the allowed lateness, per live model
        assert pinned_seen <= MAX_MODELS + 3 * NEW_PER_DAY  # released ones expire after 2 days of event time
        assert len(service.live.references.pinned) <= MAX_MODELS  # only live models' references in memory
        released = {s.labels["reason"]: s.value for s in select(scrape(service.exporter.prometheus_port),
                                                                "otel_ml_models_released_total")}
        assert sum(released.values()) >= versions_total - MAX_MODELS - NEW_PER_DAY * (DAYS // 2), released
        assert select(scrape(service.exporter.prometheus_port), "otel_ml_models_live")[0].value <= MAX_MODELS
        assert all(s.value == 0 for s in select(scrape(service.exporter.prometheus_port),
                                                "otel_ml_spans_rejected_total"))  # none rejected

        # The CLI reads the last checkpoint while the processor runs, and retires through the state directory.
        service.backend.checkpoint()
        state = str(tmp_path / "state")
        listing = subprocess.run([sys.executable, "-m", "otel_ml.cli", "models", "list", "--state-dir", state],
                                 capture_output=True, text=True, check=True).stdout
        last = f"d{DAYS - 1}-0"
        assert "stable" in listing and last in listing and "released" in listing, listing
        # A version released two weeks (of event time) ago is still in the archive, every row of it.
        profile = tmp_path / "d0-0.json"
        subprocess.run([sys.executable, "-m", "otel_ml.cli", "archive", "export", "--state-dir", state, "--model",
                        "churn", "--model-version", "d0-0", "--from", str(t0 // NS), "--to", str(t0 // NS + 86_400),
                        "--output", str(profile)], capture_output=True, text=True, check=True)
        assert json.loads(profile.read_text())["rows"] == sent["d0-0"]
        out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "models", "retire", "--state-dir", state,
                              "--model", "churn", "--model-version", last], capture_output=True, text=True,
                             check=True).stdout
        assert "queued" in out
        # Applied (released), made durable (a checkpoint), then removed: wait for the removal, the last step
        # (a CI run under load saw the release but not yet the removal).
        control = tmp_path / "state" / "control"
        deadline = time.monotonic() + 30
        while list(control.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not list(control.glob("*.json"))
        assert ("churn", last) not in service.live.model_keys()
        # It comes back with its first span, and with the reference pinned before it was retired.
        end = t0 + (DAYS - 1) * DAY + 8 * 3600 * NS + STEPS * STEP
        assert service.pipeline.consume(request("churn", last, end, seed=1)).spans_accepted == 1
        assert service.live.partition(0).models[("churn", last)].reference_source == "pinned"
        # Retired with --drop-reference, its pinned reference goes too.
        pinned = service.live.references._pinned_path(("churn", last))
        assert pinned.exists()
        subprocess.run([sys.executable, "-m", "otel_ml.cli", "models", "retire", "--state-dir", state, "--model",
                        "churn", "--model-version", last, "--drop-reference"], capture_output=True, check=True)
        deadline = time.monotonic() + 10
        while pinned.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pinned.exists() and ("churn", last) not in service.live.model_keys()
    finally:
        service.shutdown()


def test_retire_refuses_a_directory_no_processor_used(tmp_path: Path) -> None:
    wrong = tmp_path / "typo"
    out = subprocess.run([sys.executable, "-m", "otel_ml.cli", "models", "retire", "--state-dir", str(wrong),
                          "--model", "m"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "is not an otel-ml state directory" in out.stderr
    assert not wrong.exists()
