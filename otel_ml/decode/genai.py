"""GenAI spans as predictions: a model call that follows the OpenTelemetry GenAI conventions, read as one prediction
of a monitored model whose features are the call's attributes (issue 45).

Apps that use the official OpenAI instrumentation (``opentelemetry-instrumentation-openai-v2``), OpenLLMetry or
OpenLIT already emit these spans; no otel-ml code is needed in them. A span is a GenAI call when it carries
``gen_ai.operation.name``, or a provider (``gen_ai.provider.name``, formerly ``gen_ai.system``) and
``gen_ai.request.model``, and no ``ml.model.name`` (ML spans keep precedence). Its model is
``<provider>/<request model>/<operation>`` (a part the span lacks: ``unknown``), its version
``gen_ai.response.model`` (the snapshot that answered) where present. Both vintages of the attribute names are read
(``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` switches an instrumentation to the newest); the
features are named by the current ones. Text is never kept: where an app captures content (opt-in in every
instrumentation) only its size is, as ``gen_ai.prompt.messages``, ``gen_ai.prompt.characters`` and
``gen_ai.response.characters`` (the names ``otel-ml replay`` gives a Vertex AI capture's generative rows).

>>> span = Span(start_time_unix_nano=1_000_000_000, end_time_unix_nano=1_750_000_000)
>>> span.attributes.add(key="gen_ai.operation.name").value.string_value = "chat"
>>> span.attributes.add(key="gen_ai.system").value.string_value = "openai"  # the former name of the provider
>>> span.attributes.add(key="gen_ai.request.model").value.string_value = "gpt-4o-mini"
>>> span.attributes.add(key="gen_ai.usage.prompt_tokens").value.int_value = 12  # the former name
>>> call = genai_call(span, GenAiConfig())
>>> call.model, call.version, [(name, value.WhichOneof("value")) for name, value in call.columns]
('openai/gpt-4o-mini/chat', '', [('gen_ai.usage.input_tokens', 'int_value'), \
('gen_ai.client.operation.duration', 'double_value')])
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_ml import semconv
from otel_ml.decode.evaluations import response_key

PREFIX = "gen_ai."

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
PROVIDER_FORMER = "gen_ai.system"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
OPERATION_FORMER = "llm.request.type"
"""OpenLLMetry's operation (``chat``, ``completion``, ``embedding``) on spans of the former names."""
FORMER_OPERATIONS = {"completion": "text_completion", "embedding": "embeddings"}
"""``llm.request.type`` values → the conventions' operation names, so both vintages make one model."""

NUMERIC = {
    "gen_ai.usage.input_tokens": semconv.GENAI_INPUT_TOKENS,
    "gen_ai.usage.prompt_tokens": semconv.GENAI_INPUT_TOKENS,  # the former name
    "gen_ai.usage.output_tokens": semconv.GENAI_OUTPUT_TOKENS,
    "gen_ai.usage.completion_tokens": semconv.GENAI_OUTPUT_TOKENS,  # the former name
    "gen_ai.request.temperature": "gen_ai.request.temperature",
    "gen_ai.request.max_tokens": "gen_ai.request.max_tokens",
    "gen_ai.request.top_p": "gen_ai.request.top_p",
    "gen_ai.request.top_k": "gen_ai.request.top_k",
    "gen_ai.request.frequency_penalty": "gen_ai.request.frequency_penalty",
    "gen_ai.request.presence_penalty": "gen_ai.request.presence_penalty",
    "gen_ai.request.choice.count": "gen_ai.request.choice.count",
    "gen_ai.response.time_to_first_chunk": "gen_ai.response.time_to_first_chunk",
    "gen_ai.embeddings.dimension.count": "gen_ai.embeddings.dimension.count",
}
"""Span attribute → numeric feature (both vintages of a name → the current one)."""

FINISH_REASONS = "gen_ai.response.finish_reasons"
CATEGORICAL = {
    FINISH_REASONS: semconv.GENAI_FINISH_REASON,
    "error.type": "error.type",
    "gen_ai.tool.name": "gen_ai.tool.name",
    "gen_ai.output.type": "gen_ai.output.type",
}
"""Span attribute → categorical feature. An array (finish reasons: one per choice) is one value, its elements
joined with ``,``."""

INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
_FORMER_CONTENT = re.compile(r"gen_ai\.(prompt|completion)\.(\d+)\.content")
"""OpenLLMetry's captured content: ``gen_ai.prompt.<i>.content``, ``gen_ai.completion.<i>.content``."""
_FORMER_FINISH = re.compile(r"gen_ai\.completion\.(\d+)\.finish_reason")
"""OpenLLMetry's finish reason of each choice, where the current conventions have one array."""


@dataclass(frozen=True)
class GenAiConfig:
    """YAML ``genai``: whether GenAI spans are predictions, and the attribute → feature mapping's overrides."""

    enabled: bool = True
    features: Mapping[str, str] = field(default_factory=dict)
    """A span attribute → the feature it becomes, over the defaults (``NUMERIC``, ``CATEGORICAL``); ``""`` leaves
    the attribute out. An attribute not in the defaults is read as it comes (a number or a text)."""
    evaluations: bool = True
    """Each call is kept (72 bytes on disk, ~1 µs, for ``labels.ttl_seconds`` at most) for its evaluation results
    (``gen_ai.evaluation.result``) to join; false: calls are not kept, and results are not read."""
    pass_labels: Mapping[str, list[str]] = field(default_factory=dict)
    """Per evaluation name, the ``gen_ai.evaluation.score.label`` values that are a pass (every other label of it is
    a fail); an evaluation not named here reads the conventional names (profile/evaluations.py)."""


@dataclass
class GenAiCall:
    """One GenAI span as the decoder takes it: its model, version and (feature, value) columns."""

    model: str
    version: str
    columns: list[tuple[str, AnyValue]]


def _text(v: AnyValue) -> str | None:
    return v.string_value if v.WhichOneof("value") == "string_value" else None


def _joined(v: AnyValue) -> AnyValue:
    """A categorical value: an array of texts joined with ``,``, anything else as it is."""
    if v.WhichOneof("value") != "array_value":
        return v
    return AnyValue(string_value=",".join(e.string_value if e.WhichOneof("value") == "string_value" else
                                          str(getattr(e, e.WhichOneof("value") or "string_value"))
                                          for e in v.array_value.values))


def _message_texts(messages: Any) -> list[str]:
    """The text parts of the conventions' messages (``[{"role": ..., "parts": [{"type": "text", "content":
    ...}]}]``; a message's plain ``content`` text too, as older instrumentations wrote)."""
    texts: list[str] = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("content"), str):
            texts.append(message["content"])
        for part in message.get("parts") or []:
            if isinstance(part, dict) and isinstance(part.get("content"), str) and part.get("type", "text") == "text":
                texts.append(part["content"])
    return texts


def _json_messages(v: AnyValue) -> list[Any] | None:
    text = _text(v)
    if text is None:
        return None
    try:
        messages = json.loads(text)
    except ValueError:
        return None
    return messages if isinstance(messages, list) else None


def is_genai_span(attributes: Mapping[str, AnyValue]) -> bool:
    return OPERATION in attributes or (REQUEST_MODEL in attributes and
                                       (PROVIDER in attributes or PROVIDER_FORMER in attributes))


def genai_call(span: Span, config: GenAiConfig) -> GenAiCall | None:
    """The prediction a GenAI span is (None: not a GenAI call, or ``config`` turned them off). Call it for a span
    without ``ml.model.name``."""
    if not config.enabled:
        return None
    attrs = {kv.key: kv.value for kv in span.attributes if kv.key.startswith(PREFIX) or kv.key in (
        OPERATION_FORMER, "error.type") or kv.key in config.features}
    if not attrs:
        return None
    if not is_genai_span(attrs):
        return None
    provider = _text(attrs[PROVIDER]) if PROVIDER in attrs else (
        _text(attrs[PROVIDER_FORMER]) if PROVIDER_FORMER in attrs else None)
    provider = provider.lower() if provider else provider  # the conventions' values are lower case ("OpenAI" was not)
    operation = _text(attrs[OPERATION]) if OPERATION in attrs else (
        _text(attrs[OPERATION_FORMER]) if OPERATION_FORMER in attrs else None)
    operation = FORMER_OPERATIONS.get(operation, operation) if OPERATION not in attrs else operation
    request_model = _text(attrs[REQUEST_MODEL]) if REQUEST_MODEL in attrs else None
    model = "/".join(part or "unknown" for part in (provider, request_model, operation))
    version = (_text(attrs[RESPONSE_MODEL]) or "") if RESPONSE_MODEL in attrs else ""
    columns: dict[str, AnyValue] = {}
    for key, value in attrs.items():
        name = config.features.get(key, NUMERIC.get(key) or CATEGORICAL.get(key))
        if not name or name in columns:  # a current name and its former one on one span: the first counts
            continue
        columns[name] = _joined(value) if key in CATEGORICAL else value
    finish = sorted((int(m[1]), _text(v)) for k, v in attrs.items() if (m := _FORMER_FINISH.fullmatch(k)))
    finish_name = config.features.get(FINISH_REASONS, CATEGORICAL[FINISH_REASONS])  # the array's feature
    if finish and finish_name and finish_name not in columns:
        columns[finish_name] = AnyValue(string_value=",".join(t or "" for _, t in finish))
    if span.start_time_unix_nano and span.end_time_unix_nano > span.start_time_unix_nano:
        seconds = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9
        columns.setdefault(semconv.GENAI_DURATION, AnyValue(double_value=seconds))
    columns.update(_content_sizes(attrs))
    if config.evaluations and len(span.span_id) == 8:  # what its results join it by (evaluations.py call_key)
        columns[semconv.GENAI_CALL_ID_COLUMN] = AnyValue(
            int_value=int.from_bytes(span.span_id, "big") & ((1 << 53) - 1))
        response = attrs.get(semconv.GENAI_RESPONSE_ID)
        if response is not None and response.WhichOneof("value") == "string_value" and response.string_value:
            # its second key, for results naming its response
            columns[semconv.GENAI_CALL_RESPONSE_COLUMN] = AnyValue(int_value=response_key(response.string_value))
    return GenAiCall(model, version, [(name, value) for name, value in columns.items() if name])


def _content_sizes(attrs: Mapping[str, AnyValue]) -> dict[str, AnyValue]:
    """The sizes of captured content (never the text): messages and characters of the prompt, characters of the
    response; from the current attributes (JSON messages) or OpenLLMetry's indexed ones."""
    prompt: list[str] | None = None
    response: list[str] | None = None
    messages = _json_messages(attrs[INPUT_MESSAGES]) if INPUT_MESSAGES in attrs else None
    if messages is not None:
        prompt = _message_texts(messages)
        count = len(messages)
    else:
        indexed: dict[str, dict[int, str]] = {"prompt": {}, "completion": {}}
        for key, value in attrs.items():
            match = _FORMER_CONTENT.fullmatch(key)
            if match and _text(value) is not None:
                indexed[match[1]][int(match[2])] = _text(value) or ""
        if indexed["prompt"]:
            prompt = list(indexed["prompt"].values())
        count = len(indexed["prompt"])
        if indexed["completion"]:
            response = list(indexed["completion"].values())
    output = _json_messages(attrs[OUTPUT_MESSAGES]) if OUTPUT_MESSAGES in attrs else None
    if output is not None:
        response = _message_texts(output)
    out: dict[str, AnyValue] = {}
    if prompt is not None:
        out[semconv.GENAI_PROMPT_MESSAGES] = AnyValue(int_value=count)
        out[semconv.GENAI_PROMPT_CHARACTERS] = AnyValue(int_value=sum(len(t) for t in prompt))
    if response is not None:
        out[semconv.GENAI_RESPONSE_CHARACTERS] = AnyValue(int_value=sum(len(t) for t in response))
    return out
