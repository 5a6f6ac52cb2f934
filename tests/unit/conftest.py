"""Fixtures the in-process tests share: the real OTel SDK with an in-memory exporter, as a serving app's."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture()
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture()
def provider(spans: InMemorySpanExporter) -> TracerProvider:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(spans))
    return p
