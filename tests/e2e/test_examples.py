"""The shipped examples run: the sample serving app feeds a real processor, and the demo tells the drift."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support import free_port, select, wait_for

REPO = Path(__file__).resolve().parents[2]


def post(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST")
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def test_serving_app_reaches_the_processor(serve_factory) -> None:
    sp = serve_factory("--evaluation-interval", "0.5")
    port = free_port()
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{sp.grpc_endpoint}",
           "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    app = subprocess.Popen([sys.executable, str(REPO / "examples" / "serving_app.py"), "--port", str(port)],
                           env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert app.stdout is not None and "serving credit-risk" in app.stdout.readline()
        answers = [post(port, "/predict", {"income": 40_000 + i * 1000, "region": "north", "age": 30 + i})
                   for i in range(20)]
        assert all(a["prediction"] in ("approve", "deny") for a in answers)
        out = post(port, "/predict_batch", {"income": [50_000.0] * 30, "region": ["east"] * 30})
        assert len(out["predictions"]) == 30 and len(set(out["prediction_ids"])) == 30
        # The outcomes: the first 15 decisions were right, the last 5 wrong.
        for i, a in enumerate(answers):
            post(port, "/outcome", {"prediction_id": a["prediction_id"],
                                    "repaid": (a["prediction"] == "approve") == (i < 15)})

        def counted() -> float:
            got = select(sp.scrape(), "ml_predictions_total", ml_model_name="credit-risk", ml_model_version="1")
            return got[0].value if got else 0.0

        assert wait_for(lambda: counted() == 50, what="50 predictions counted")

        def joined() -> float:
            got = select(sp.scrape(), "ml_ground_truth_total", ml_model_name="credit-risk", ml_model_version="1")
            return got[0].value if got else 0.0

        # Wait for all 20 outcomes joined, then for an evaluation after that (the first accuracy published may be of
        # fewer labels: 1.0 after the first 15, say).
        wait_for(lambda: joined() == 20, what="all 20 outcomes joined")

        def accuracy() -> float | None:
            got = select(sp.scrape(), "ml_performance", ml_model_name="credit-risk", ml_performance_metric="accuracy")
            return got[0].value if got and got[0].value == 0.75 else None

        assert wait_for(accuracy, what="the realized accuracy of all 20 outcomes, 0.75") == 0.75
    finally:
        app.send_signal(signal.SIGINT)
        app.wait(timeout=20)


def test_demo_shows_the_drift(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "otel_ml.cli", "demo", "--duration", "48", "--drift-after", "27",
           "--otlp-grpc-endpoint", f"127.0.0.1:{free_port()}", "--prometheus-endpoint", f"127.0.0.1:{free_port()}",
           "--ui-endpoint", f"127.0.0.1:{free_port()}"]
    scratch = tmp_path / "tmp"  # the demo's own temporary state goes here, and must be gone afterwards
    scratch.mkdir()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "TMPDIR": str(scratch)})
    assert out.returncode == 0, out.stderr
    assert not list(scratch.glob("otel-ml-demo-*")), "the demo left its state directory behind"
    last = [line for line in out.stdout.splitlines() if "after drift" in line][-1]
    for feature in ("income", "region", "prediction", "prediction.score"):  # every feature the demo drifts
        assert f"{feature}=DRIFT" in last, last
    for feature in ("age", "credit_score", "channel"):
        assert f"{feature}=ok" in last, last
    # Outcomes arrive 3 s after their predictions: the realized accuracy falls with the concept drift.
    before = [line for line in out.stdout.splitlines() if "before drift" in line and "accuracy" in line][-1]
    accuracy_before, accuracy_after = (float(line.rsplit("accuracy ", 1)[1].split()[0]) for line in (before, last))
    assert accuracy_after < accuracy_before - 0.08, (before, last)
    assert "curl -s http://127.0.0.1:" in out.stdout
