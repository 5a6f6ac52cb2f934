"""GenAI spans as predictions (issue 45): both vintages of the conventions' names, content kept as sizes only, ML
spans first, the config switch and mapping, and the compiled decoder handing such requests to the reference."""

from __future__ import annotations

import json
import re
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from otel_ml.config import ConfigError, load_config
from otel_ml.decode import DecodeLimits, genai
from otel_ml.decode.genai import GenAiConfig
from otel_ml.decode.otlp import (
    COMPILED,
    DECLINED,
    _otlp_columns,
    decode_request,
    decode_request_compiled,
    decode_request_python,
)
from tests.support import any_value, request
from tests.unit.test_decode_compiled import NOW, same

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


WITHOUT_CONTENT = {k: v for k, v in CURRENT.items() if not k.endswith(".messages")}


@pytest.mark.skipif(not COMPILED, reason="compiled decoder not built")
def test_the_compiled_decoder_reads_genai_calls_as_the_reference_does_and_hands_it_content_and_overrides() -> None:
    """The compiled decoder applies genai.py's default mapping (the same table: genai_names) to calls without
    captured content; content (JSON messages, the former indexed attributes) and mapping overrides are genai.py's
    alone: such a request goes to the reference. With GenAI off both ignore the calls."""
    assert {key: (feature, bool(categorical)) for key, feature, categorical in _otlp_columns.genai_names()} == {
        **{k: (f, False) for k, f in genai.NUMERIC.items()}, **{k: (f, True) for k, f in genai.CATEGORICAL.items()}}
    former = {k: v for k, v in FORMER.items() if not k.startswith(("gen_ai.prompt.", "gen_ai.completion."))}
    plain = [WITHOUT_CONTENT, former, {**WITHOUT_CONTENT, "gen_ai.response.finish_reasons": ["length"],
                                       "error.type": "timeout", "gen_ai.request.model": "gpt-4o"},
             {"ml.model.name": "m", "ml.feature.x": 2.0}, {"http.method": "GET"}, {"gen_ai.tool.name": "search"}]
    with mock.patch("time.time_ns", return_value=NOW):
        data = request(*plain).SerializeToString()
        compiled = decode_request_compiled(data, DecodeLimits(), GenAiConfig())
        assert compiled is not None
        same(compiled, decode_request_python(data, DecodeLimits(), GenAiConfig()))
        assert sorted(b.model for b in compiled.batches) == ["m", "openai/gpt-4o-mini/chat", "openai/gpt-4o/chat"]
        before = DECLINED["genai_span"]
        for spans, config in (([CURRENT], GenAiConfig()), ([FORMER], GenAiConfig()),
                              ([WITHOUT_CONTENT], GenAiConfig(features={"gen_ai.request.seed": "seed"}))):
            assert decode_request_compiled(request(*spans).SerializeToString(), DecodeLimits(), config) is None
        assert DECLINED["genai_span"] == before + 3
        off = GenAiConfig(enabled=False)
        compiled_off = decode_request_compiled(data, DecodeLimits(), off)
        assert compiled_off is not None and [b.model for b in compiled_off.batches] == ["m"]
        same(compiled_off, decode_request_python(data, DecodeLimits(), off))


GENAI_KEYS = sorted({*CURRENT, *FORMER, "error.type", "gen_ai.tool.name", "gen_ai.response.time_to_first_chunk"})
EVALUATION_KEYS = ["gen_ai.evaluation.name", "gen_ai.evaluation.score.value", "gen_ai.evaluation.score.label",
                   "gen_ai.evaluation.explanation"]
PLAIN_KEYS = [k for k in GENAI_KEYS if not k.endswith(".messages") and not k.startswith(("gen_ai.prompt.",
                                                                                          "gen_ai.completion."))]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(
    st.one_of(st.sampled_from(PLAIN_KEYS), st.sampled_from(GENAI_KEYS)),  # mostly what the compiled decoder reads
    st.one_of(st.sampled_from(["OpenAI", "ÖpenAI", "chat", "completion", "embedding", ""]), st.text(max_size=30),
              st.integers(-2**63, 2**63 - 1), st.floats(), st.booleans(),
              st.lists(st.text(max_size=5), max_size=3), st.just("[{\"role\": 1, \"parts\": [3, {}]}]"),
              st.just("{\"not\": \"a list\"}")),
    max_size=12), min_size=1, max_size=4),
    st.lists(st.binary(max_size=9), min_size=4, max_size=4),  # span ids: 8 bytes or not
    st.lists(st.one_of(st.none(), st.dictionaries(st.sampled_from(EVALUATION_KEYS), st.one_of(
        st.text(max_size=8), st.floats(), st.integers(-2**63, 2**63 - 1), st.booleans()), max_size=4)),
        min_size=4, max_size=4))  # a gen_ai.evaluation.result event on the span, or none
def test_fuzzed_genai_spans_are_decoded_or_refused_with_a_reason_never_a_crash(
        spans: list[dict], ids: list[bytes], events: list[dict | None]) -> None:
    """Any values under the GenAI names, any span ids, evaluation results of any shape: every span is accepted,
    ignored or rejected with a reason, and whatever the compiled decoder does not decline it decodes as the
    reference does (GenAI on and off): the calls' join keys too."""
    req = request(*spans)
    for span, span_id, attrs in zip(req.resource_spans[0].scope_spans[0].spans, ids, events):
        span.span_id = span_id
        if attrs is not None:
            span.events.add(name="gen_ai.evaluation.result").attributes.extend(
                KeyValue(key=k, value=any_value(v)) for k, v in attrs.items())
    data = req.SerializeToString()
    result = decode_request_python(data, DecodeLimits())
    assert result.spans_accepted + result.spans_ignored + sum(result.rejected.values()) == len(spans)
    for batch in result.batches:
        assert batch.model.count("/") >= 2 and not any(name.startswith("ml.") for name in batch.numeric)
    if COMPILED:
        with mock.patch("time.time_ns", return_value=NOW):
            for config in (GenAiConfig(), GenAiConfig(enabled=False)):
                compiled = decode_request_compiled(data, DecodeLimits(), config)
                if compiled is not None:  # else declined: the reference's result is the one used
                    same(compiled, decode_request_python(data, DecodeLimits(), config))
