"""Shared fixtures: a real SDK tracer provider with an in-memory exporter, a clean environment
and a restored global propagator for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import propagate
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langfuse_otel_sessions import (
    LangfuseSpanExporter,
    ScoreClient,
    SessionSpanProcessor,
    install_baggage_guard,
)
from langfuse_otel_sessions import baggage_keys as keys
from langfuse_otel_sessions.attributes import LANGFUSE_SESSION_ID, LANGFUSE_USER_ID
from langfuse_otel_sessions.spans.memory import MEMORY
from langfuse_otel_sessions.testing import LangfuseReceiver


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("LANGFUSE_", "OTEL_")):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _uninstrument_threads() -> Iterator[None]:
    """``configure()`` instruments threads when it can: each test starts without that."""
    yield
    try:
        from opentelemetry.instrumentation.threading import ThreadingInstrumentor
    except ImportError:
        return
    if ThreadingInstrumentor().is_instrumented_by_opentelemetry:
        ThreadingInstrumentor().uninstrument()


@pytest.fixture(autouse=True)
def _restore_global_propagator() -> Iterator[None]:
    before = propagate.get_global_textmap()
    yield
    propagate.set_global_textmap(before)


@pytest.fixture(autouse=True)
def _forget_test_processors_keys() -> Iterator[None]:
    """Processors register their keys process-wide: each test starts as a fresh app (with no
    processor of an earlier test counted) and what it builds is forgotten after it."""
    before = dict(keys._readers)
    keys._readers.clear()
    keys._forget()
    yield
    keys._readers.clear()
    keys._readers.update(before)
    keys._forget()


@pytest.fixture(autouse=True)
def _forget_earlier_middlewares_distrust() -> Iterator[None]:
    """An untrusting session middleware makes the sampler trust no caller, process-wide: each
    test starts as a fresh app, with no middleware of an earlier test still counted."""
    from langfuse_otel_sessions.boundary import trust

    before = list(trust._distrusting)
    trust._distrusting.clear()
    yield
    trust._distrusting.clear()
    for middleware in before:
        trust._distrusting.add(middleware)


@pytest.fixture(autouse=True)
def _forget_earlier_exporters_claims() -> Iterator[None]:
    """A live exporter makes outgoing requests claim the trace's root: each test starts as a
    fresh app, with no exporter of an earlier test still counted."""
    from langfuse_otel_sessions.boundary.outbound import trace_claims

    before = list(trace_claims)
    trace_claims.clear()
    yield
    trace_claims.clear()
    for exporter in before:
        trace_claims.add(exporter)


class Exported:
    """One process as an app runs it: ``SessionSpanProcessor``, and ``LangfuseSpanExporter`` to
    ``receiver`` behind a ``BatchSpanProcessor``."""

    def __init__(self, receiver: LangfuseReceiver, **options: Any) -> None:
        self.receiver = receiver
        self.exporter = LangfuseSpanExporter(
            public_key=receiver.public_key,
            secret_key=receiver.secret_key,
            base_url=receiver.url,
            **options,
        )
        self.provider = TracerProvider()
        self.provider.add_span_processor(SessionSpanProcessor())
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("app")

    def export_now(self) -> None:
        """What BatchSpanProcessor does every 5 s: export whatever has ended."""
        assert self.provider.force_flush(10_000)


def score_client(receiver: LangfuseReceiver, **options: Any) -> ScoreClient:
    """A ``ScoreClient`` sending to ``receiver`` with its keys."""
    return ScoreClient(receiver.public_key, receiver.secret_key, receiver.url, **options)


class Traced:
    """A provider with ``SessionSpanProcessor`` and an in-memory exporter behind it."""

    def __init__(self, processor: SessionSpanProcessor) -> None:
        self.processor = processor
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("app")
        self.third_party = self.provider.get_tracer("opentelemetry.instrumentation.thirdparty")

    def export_to(self, receiver: LangfuseReceiver) -> Traced:
        """Also export every span through ``LangfuseSpanExporter`` to ``receiver`` (what
        Langfuse gets: the exporter completes spans from the per-request memory)."""
        exporter = LangfuseSpanExporter(
            public_key=receiver.public_key, secret_key=receiver.secret_key, base_url=receiver.url
        )
        self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        return self

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def span(self, name: str) -> ReadableSpan:
        matches = [s for s in self.spans() if s.name == name]
        assert len(matches) == 1, f"expected one span named {name!r}, got {len(matches)}"
        return matches[0]

    def session_of(self, name: str) -> object:
        return (self.span(name).attributes or {}).get(LANGFUSE_SESSION_ID)

    def user_of(self, name: str) -> object:
        return (self.span(name).attributes or {}).get(LANGFUSE_USER_ID)


@pytest.fixture
def traced() -> Traced:
    return make_traced()


def make_traced(*, guard_remote_baggage: bool = True, **options: object) -> Traced:
    """A processor set up as ``configure()`` sets it up (the guard too, unless told not to)."""
    processor = SessionSpanProcessor(**options)  # type: ignore[arg-type]
    if guard_remote_baggage:
        install_baggage_guard(
            trust_remote_baggage=processor.trust_remote_baggage,
            propagate_session_to=processor.propagate_session_to,
        )
    return Traced(processor)


@pytest.fixture(autouse=True)
def _forget_requests() -> Iterator[None]:
    """Each test starts with an empty per-request memory."""
    MEMORY.clear()
    yield
    MEMORY.clear()
