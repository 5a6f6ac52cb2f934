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
"""

from __future__ import annotations

import argparse
import random
import time

import openai
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

WORDS = ["model", "data", "drift", "window", "label", "metric", "span", "trace", "sketch", "reference", "horizon",
         "latency", "token"]


def prompt(rng: random.Random, kind: str) -> list[dict[str, str]]:
    if kind == "short":
        return [{"role": "user", "content": "What is a " + " ".join(rng.choices(WORDS, k=rng.randint(2, 6))) + "?"}]
    paragraph = " ".join(rng.choices(WORDS, k=rng.randint(40, 90)))
    return [{"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Summarize this paragraph: " + paragraph}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--prompts", choices=["short", "long"], default="short")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--instrumentation", choices=["official", "openllmetry"], default="official")
    args = parser.parse_args()
    provider = TracerProvider(resource=Resource.create({"service.name": "chat-app"}))
    # OTEL_EXPORTER_OTLP_ENDPOINT says where; a short delay so the monitor sees calls within a second.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=200))
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
            client.chat.completions.create(model=args.model, messages=prompt(rng, args.prompts),
                                           temperature=rng.choice([0.0, 0.3, 0.7]), max_tokens=rng.choice([64, 96]))
            calls += 1
    except openai.APIError as e:  # the usual cause: no server at OPENAI_BASE_URL
        provider.shutdown()
        raise SystemExit(f"chat_app: {type(e).__name__} from {client.base_url} ({e}); start one with "
                         "python examples/genai/fake_openai.py and set OPENAI_BASE_URL") from None
    provider.shutdown()  # exports what is left
    print(calls)


if __name__ == "__main__":
    main()
