"""Issue 45: an LLM app instrumented only with an OpenAI instrumentation (no otel-ml code), its calls to a local
OpenAI-compatible server, monitored from the GenAI spans: the real ``openai`` client, the real instrumentation, the
real OTLP exporter, a running ``otel-ml serve``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port, select, wait_for

REPO = Path(__file__).resolve().parents[2]
MODEL = "openai/gpt-4o-mini/chat"
SHIFTED = {"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.response.finish_reason"}
STABLE = {"gen_ai.request.temperature", "gen_ai.request.max_tokens"}  # drawn alike in both phases
CONTENT = {"gen_ai.prompt.messages", "gen_ai.prompt.characters", "gen_ai.response.characters"}


@pytest.fixture()
def fake_openai() -> str:
    sys.path.insert(0, str(REPO / "examples" / "genai"))
    try:
        from fake_openai import serve_in_thread
    finally:
        sys.path.pop(0)
    port = free_port()
    serve_in_thread(port)
    return f"http://127.0.0.1:{port}/v1"


def run_app(sp, base_url: str, seconds: float, prompts: str, instrumentation: str) -> int:
    """The example app as its own process (the instrumentation reads its environment when it starts); its calls."""
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{sp.grpc_endpoint}",
           "OTEL_EXPORTER_OTLP_INSECURE": "true"}
    if instrumentation == "official":  # the newest names, content on the span
        env |= {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"}
    else:  # OpenLLMetry 0.40: the former names (gen_ai.system, prompt_tokens, gen_ai.prompt.<i>.content)
        env |= {"TRACELOOP_TRACE_CONTENT": "true"}
    out = subprocess.run([sys.executable, str(REPO / "examples" / "genai" / "chat_app.py"), "--seconds", str(seconds),
                          "--prompts", prompts, "--instrumentation", instrumentation],
                         env=env, capture_output=True, text=True, timeout=seconds + 120)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


@pytest.mark.parametrize("instrumentation", ["official", "openllmetry"])
def test_longer_prompts_show_as_token_and_finish_reason_drift_and_request_parameters_stay_quiet(
        tmp_path: Path, serve_factory, fake_openai: str, instrumentation: str) -> None:
    """8 s of one-line questions (the first horizon, pinned as the reference), then 10 s of requests to summarize a
    paragraph: input and output tokens, the finish reasons (``length`` appears) and the content's sizes drift; the
    request parameters, drawn alike in both phases, do not. The text itself reaches no metric."""
    config = tmp_path / "otel-ml.yaml"
    config.write_text("windows:\n  reference_min_rows: 200\n")
    sp = serve_factory("--config", str(config), "--window", "2", "--horizon", "4", "--evaluation-interval", "0.5")
    calls = run_app(sp, fake_openai, 8, "short", instrumentation)
    calls += run_app(sp, fake_openai, 10, "long", instrumentation)

    def decisions() -> dict[str, float] | None:
        samples = sp.scrape()
        total = select(samples, "ml_predictions_total", ml_model_name=MODEL)
        if not total or total[0].value != calls:  # every call applied
            return None
        got = {s.labels["ml_feature_name"]: s.value for s in select(
            samples, "ml_drift_detected", ml_model_name=MODEL, ml_drift_method="overall")}
        return got if set(got) >= SHIFTED | STABLE | CONTENT else None

    got = wait_for(decisions, timeout=120, what=f"drift decisions over all {calls} calls of {MODEL}")
    # An evaluation begun before the last call was applied may be the one exported first: the decisions are read
    # until two readings 1.5 s apart (three evaluations) agree.
    deadline = time.monotonic() + 60
    while True:
        time.sleep(1.5)
        now = decisions()
        if now == got:
            break
        assert time.monotonic() < deadline, f"the decisions never settled: {got} then {now}"
        got = now
    assert got is not None
    assert {f for f in SHIFTED | CONTENT if got[f] == 1.0} == SHIFTED | CONTENT, got
    assert {f for f in STABLE if got[f] == 1.0} == set(), got
    [ready] = select(sp.scrape(), "ml_reference_ready", ml_model_name=MODEL)
    assert ready.labels["ml_reference_source"] == "pinned" and ready.labels["ml_model_version"] == \
        "gpt-4o-mini-2026-01-01"  # the snapshot that answered (gen_ai.response.model)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{sp.prom_port}/metrics", timeout=10).read().decode()
    assert "Summarize this paragraph" not in metrics and "What is a" not in metrics
    # Token counts and max_tokens are numbers the instrumentation chose, not class codes the app could send as text.
    assert not any("holding only a few whole numbers" in line for line in sp.log), sp.log
