"""GenAI spans as predictions (issue 45): both vintages of the conventions' names, content kept as sizes only, ML
spans first, the config switch and mapping, and the compiled decoder handing such requests to the reference."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_ml.config import ConfigError, load_config
from otel_ml.decode import DecodeLimits
from otel_ml.decode.genai import GenAiConfig
from otel_ml.decode.otlp import COMPILED, DECLINED, decode_request, decode_request_compiled, decode_request_python
from tests.support import request

CURRENT = {  # what opentelemetry-instrumentation-openai-v2 2.4b0 writes with gen_ai_latest_experimental and content
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 50, "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": 5,
    "gen_ai.input.messages": json.dumps([{"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                                         {"role": "user", "parts": [{"type": "text", "content": "hello there"}]}]),
    "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "hi!"}],
                                           "finish_reason": "stop"}]),
}
FORMER = {  # what OpenLLMetry 0.40 (opentelemetry-instrumentation-openai) writes, content on
    "llm.request.type": "chat", "gen_ai.system": "OpenAI", "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 50, "gen_ai.prompt.0.role": "system",
    "gen_ai.prompt.0.content": "Be brief.", "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "hello there",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.usage.prompt_tokens": 3,
    "gen_ai.usage.completion_tokens": 5, "gen_ai.completion.0.finish_reason": "stop",
    "gen_ai.completion.0.content": "hi!", "llm.usage.total_tokens": 8,
}


def decoded(*spans: dict, genai: GenAiConfig | None = None):
    data = request(*spans).SerializeToString()
    return decode_request(data, DecodeLimits(), genai)


def test_both_vintages_of_the_names_make_one_model_with_the_same_features_and_no_text() -> None:
    for attrs in (CURRENT, FORMER):
        result = decoded(attrs)
        [batch] = result.batches
        assert (batch.model, batch.version) == ("openai/gpt-4o-mini/chat", "gpt-4o-mini-2024-07-18")
        assert {k: v.tolist() for k, v in batch.numeric.items()} == {
            "gen_ai.usage.input_tokens": [3.0], "gen_ai.usage.output_tokens": [5.0],
            "gen_ai.request.temperature": [0.2], "gen_ai.request.max_tokens": [50.0],
            "gen_ai.prompt.messages": [2.0], "gen_ai.prompt.characters": [len("Be brief.") + len("hello there")],
            "gen_ai.response.characters": [3.0], "gen_ai.client.operation.duration": [0.002]}
        assert {k: v.tolist() for k, v in batch.categorical.items()} == {"gen_ai.response.finish_reason": ["stop"]}
        assert result.spans_accepted == 1


def test_a_call_without_captured_content_an_error_and_several_choices() -> None:
    [batch] = decoded({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                       "gen_ai.request.model": "m", "gen_ai.response.finish_reasons": ["length", "stop"],
                       "error.type": "timeout"}).batches
    assert batch.version == ""
    assert {k: v.tolist() for k, v in batch.categorical.items()} == {
        "gen_ai.response.finish_reason": ["length,stop"], "error.type": ["timeout"]}
    assert not any(name.startswith(("gen_ai.prompt", "gen_ai.response.char")) for name in batch.numeric)


def test_ml_spans_keep_precedence_other_spans_are_ignored_and_the_switch_turns_genai_off() -> None:
    result = decoded({**CURRENT, "ml.model.name": "router", "ml.feature.x": 1.0}, {"http.method": "GET"},
                     {"gen_ai.tool.name": "search"})  # a gen_ai attribute alone: no model call
    assert [b.model for b in result.batches] == ["router"] and list(result.batches[0].numeric) == ["x"]
    assert result.spans_ignored == 2
    off = decoded(CURRENT, genai=GenAiConfig(enabled=False))
    assert not off.batches and off.spans_ignored == 1


def test_the_mapping_is_overridable() -> None:
    config = GenAiConfig(features={"gen_ai.request.temperature": "", "gen_ai.usage.input_tokens": "tokens_in",
                                   "gen_ai.openai.api_base": "api_base"})
    [batch] = decoded({**CURRENT, "gen_ai.openai.api_base": "http://x/v1"}, genai=config).batches
    assert "gen_ai.request.temperature" not in batch.numeric and batch.numeric["tokens_in"].tolist() == [3.0]
    assert batch.categorical["api_base"].tolist() == ["http://x/v1"]


def test_genai_config_from_yaml_and_a_feature_name_the_output_uses_is_refused(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("genai:\n  enabled: false\n  features:\n    gen_ai.request.seed: seed\n")
    config = load_config(str(path))
    assert config.genai == GenAiConfig(enabled=False, features={"gen_ai.request.seed": "seed"})
    path.write_text("genai:\n  features:\n    gen_ai.usage.input_tokens: prediction\n")
    with pytest.raises(ConfigError, match=re.escape("genai.features.gen_ai.usage.input_tokens")):
        load_config(str(path))


@pytest.mark.skipif(not COMPILED, reason="compiled decoder not built")
def test_the_compiled_decoder_hands_genai_requests_to_the_reference_and_keeps_the_rest() -> None:
    """GenAI calls are read by genai.py (JSON content, two vintages): the compiled decoder declines a request that
    has one, unless GenAI is off, and both decoders then give the same result."""
    spans = [CURRENT, {"ml.model.name": "m", "ml.feature.x": 2.0}, {"http.method": "GET"}]
    data = request(*spans).SerializeToString()
    before = DECLINED["genai_span"]
    assert decode_request_compiled(data, DecodeLimits(), GenAiConfig()) is None
    assert DECLINED["genai_span"] == before + 1
    compiled_off = decode_request_compiled(data, DecodeLimits(), GenAiConfig(enabled=False))
    python_off = decode_request_python(data, DecodeLimits(), GenAiConfig(enabled=False))
    assert compiled_off is not None and [b.model for b in compiled_off.batches] == ["m"]
    assert (compiled_off.spans_ignored, python_off.spans_ignored) == (2, 2)
    both = decode_request(data)
    reference = decode_request_python(data)
    assert [(b.model, sorted(b.numeric)) for b in both.batches] == [(b.model, sorted(b.numeric))
                                                                      for b in reference.batches]
    for got, want in zip(both.batches, reference.batches):
        for name in want.numeric:
            np.testing.assert_array_equal(got.numeric[name], want.numeric[name])


GENAI_KEYS = sorted({*CURRENT, *FORMER, "error.type", "gen_ai.tool.name", "gen_ai.response.time_to_first_chunk"})


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(
    st.sampled_from(GENAI_KEYS),
    st.one_of(st.text(max_size=30), st.integers(-2**63, 2**63 - 1), st.floats(), st.booleans(),
              st.lists(st.text(max_size=5), max_size=3), st.just("[{\"role\": 1, \"parts\": [3, {}]}]"),
              st.just("{\"not\": \"a list\"}")),
    max_size=12), min_size=1, max_size=4))
def test_fuzzed_genai_spans_are_decoded_or_refused_with_a_reason_never_a_crash(spans: list[dict]) -> None:
    """Any values under the GenAI names: every span is accepted, ignored or rejected with a reason, and with GenAI
    off the compiled decoder's result is the reference's."""
    data = request(*spans).SerializeToString()
    result = decode_request_python(data, DecodeLimits())
    assert result.spans_accepted + result.spans_ignored + sum(result.rejected.values()) == len(spans)
    for batch in result.batches:
        assert batch.model.count("/") >= 2 and not any(name.startswith("ml.") for name in batch.numeric)
    if COMPILED:
        off = GenAiConfig(enabled=False)
        compiled, reference = decode_request_compiled(data, DecodeLimits(), off), decode_request_python(data, None, off)
        assert compiled is not None and (compiled.spans_ignored, compiled.batches) == (reference.spans_ignored, [])
