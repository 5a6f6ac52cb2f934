"""An LLM app instrumented only with OpenTelemetry's official OpenAI instrumentation: no otel-ml code in it. otel-ml
monitors its calls from the GenAI spans the instrumentation emits (docs/semantic-conventions.md, "GenAI spans").

    OPENAI_BASE_URL=http://127.0.0.1:18080/v1 OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 \
        python examples/genai/chat_app.py --seconds 10 [--prompts short|long]

``--prompts short``: one-line questions; ``long``: a system message and a request to summarize a paragraph (longer
inputs, longer answers, some cut at max_tokens). ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` and
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY`` make the instrumentation use the newest attribute
names and capture content on the span (otel-ml keeps only its size). ``--instrumentation openllmetry``: Traceloop's
OpenLLMetry instrumentation instead (``opentelemetry-instrumentation-openai``; its 0.40 releases write the former
names: ``gen_ai.system``, ``gen_ai.usage.prompt_tokens``, ``gen_ai.prompt.<i>.content`` with
``TRACELOOP_TRACE_CONTENT=true``).

``--evaluate``: the app also judges each answer, as an LLM-as-judge step would, and reports the result the way the
GenAI conventions say: a ``gen_ai.evaluation.result`` event parented to the call's span (``complete_answer``:
``pass`` when the answer ended by itself and has at least 5 words, else ``fail``; its score the words over 20,
at most 1). Results go in turn as a log record parented to the call's span (the Logs API, exported over OTLP), as an
event on an ``evaluate`` span whose parent is the call, and as a log record with no span context that names the
call's ``gen_ai.response.id`` (as an evaluation job run later would): every shape otel-ml joins to its call.
"""

from __future__ import annotations

import argparse
import random
import time

import openai
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext

WORDS = ["model", "data", "drift", "window", "label", "metric", "span", "trace", "sketch", "reference", "horizon",
         "latency", "token"]


def prompt(rng: random.Random, kind: str) -> list[dict[str, str]]:
    if kind == "short":
        return [{"role": "user", "content": "What is a " + " ".join(rng.choices(WORDS, k=rng.randint(2, 6))) + "?"}]
    paragraph = " ".join(rng.choices(WORDS, k=rng.randint(40, 90)))
    return [{"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Summarize this paragraph: " + paragraph}]


class LastCall(SpanProcessor):
    """Keeps the context of the last model call's span as it ends: what an evaluation is parented to."""

    def __init__(self) -> None:
        self.context: SpanContext | None = None

    def on_end(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        if "gen_ai.operation.name" in attrs or "llm.request.type" in attrs:
            self.context = span.context


def judge(completion: openai.types.chat.ChatCompletion) -> tuple[str, float]:
    """``complete_answer`` of one answer: its label and score."""
    choice = completion.choices[0]
    words = len((choice.message.content or "").split())
    return ("pass" if choice.finish_reason == "stop" and words >= 5 else "fail"), min(1.0, words / 20)


class Evaluations:
    """Sends each result, in turn, as a log record or a span event parented to the call's span, or as a log record
    naming the call's response."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        self.logs = LoggerProvider(resource=provider.resource)
        self.logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(), schedule_delay_millis=200))
        self.logger = self.logs.get_logger("chat-app.evaluations")
        self.tracer = provider.get_tracer("chat-app.evaluations")
        self.sent = 0

    def send(self, call: SpanContext, response_id: str, label: str, score: float) -> None:
        attrs = {"gen_ai.evaluation.name": "complete_answer", "gen_ai.evaluation.score.label": label,
                 "gen_ai.evaluation.score.value": score}
        parent = trace.set_span_in_context(NonRecordingSpan(call))
        if self.sent % 3 == 0:
            self.logger.emit(event_name="gen_ai.evaluation.result", attributes=attrs, context=parent)
        elif self.sent % 3 == 1:
            with self.tracer.start_as_current_span("evaluate", context=parent) as span:
                span.add_event("gen_ai.evaluation.result", attributes=attrs)
        else:  # no span context: the result names the response
            self.logger.emit(event_name="gen_ai.evaluation.result", context=Context(),
                             attributes={**attrs, "gen_ai.response.id": response_id})
        self.sent += 1

    def shutdown(self) -> None:
        self.logs.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--prompts", choices=["short", "long"], default="short")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--instrumentation", choices=["official", "openllmetry"], default="official")
    parser.add_argument("--evaluate", action="store_true", help="judge each answer and report the result")
    args = parser.parse_args()
    provider = TracerProvider(resource=Resource.create({"service.name": "chat-app"}))
    # OTEL_EXPORTER_OTLP_ENDPOINT says where; a short delay so the monitor sees calls within a second.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=200))
    last_call = LastCall()
    provider.add_span_processor(last_call)
    evaluations = Evaluations(provider) if args.evaluate else None
    trace.set_tracer_provider(provider)
    if args.instrumentation == "official":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    else:
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor  # type: ignore[no-redef]
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = openai.OpenAI(api_key="not-needed-locally")  # OPENAI_BASE_URL says where
    rng = random.Random(args.seed)
    calls = 0
    end = time.monotonic() + args.seconds
    try:
        while time.monotonic() < end:
            completion = client.chat.completions.create(
                model=args.model, messages=prompt(rng, args.prompts), temperature=rng.choice([0.0, 0.3, 0.7]),
                max_tokens=rng.choice([64, 96]))
            calls += 1
            if evaluations is not None and last_call.context is not None:
                evaluations.send(last_call.context, completion.id, *judge(completion))
    except openai.APIError as e:  # the usual cause: no server at OPENAI_BASE_URL
        if evaluations is not None:
            evaluations.shutdown()
        provider.shutdown()
        raise SystemExit(f"chat_app: {type(e).__name__} from {client.base_url} ({e}); start one with "
                         "python examples/genai/fake_openai.py and set OPENAI_BASE_URL") from None
    if evaluations is not None:
        evaluations.shutdown()
    provider.shutdown()  # exports what is left
    print(calls)


if __name__ == "__main__":
    main()
