"""Late sessions reach Langfuse (issue 13 item 4): spans that ended before their request's
session was known are held, then sent with it; nothing else is delayed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from langfuse_otel_sessions import (
    LangfuseSpanExporter,
    session,
)
from langfuse_otel_sessions.attributes import LANGFUSE_SESSION_ID
from langfuse_otel_sessions.spans.memory import MEMORY, LateSessionHold, span_bytes
from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

from .conftest import Exported, Traced

__all__ = ["langfuse_receiver"]


class Pipeline(Exported):
    def received(self) -> dict[str, object]:
        return {
            span.name: span.attributes.get(LANGFUSE_SESSION_ID) for span in self.receiver.spans()
        }


@pytest.fixture
def pipeline(langfuse_receiver: LangfuseReceiver) -> Iterator[Pipeline]:
    built = Pipeline(langfuse_receiver)
    yield built
    built.provider.shutdown()


def test_spans_that_ended_before_the_session_was_known_carry_it(pipeline: Pipeline) -> None:
    tracer = pipeline.tracer
    with tracer.start_as_current_span("agent run"):
        for step in range(5):
            tracer.start_span(f"setup {step}").end()
        pipeline.export_now()  # exported while the session is still unknown
        assert pipeline.received() == {}  # held: the request is running without a session
        with session("conv-7"):
            for step in range(5):
                tracer.start_span(f"llm {step}").end()
    pipeline.export_now()
    received = pipeline.received()
    assert len(received) == 11
    assert set(received.values()) == {"conv-7"}
    (view,) = pipeline.receiver.sessions().values()
    assert len(view.spans) == 11  # every observation counts towards the session's cost


def test_requests_with_a_known_session_are_not_delayed(pipeline: Pipeline) -> None:
    tracer = pipeline.tracer
    with session("known"), tracer.start_as_current_span("request"):
        tracer.start_span("step").end()
        pipeline.export_now()
        assert pipeline.received() == {"step": "known"}


def test_a_request_that_ends_without_a_session_is_sent_when_it_ends(pipeline: Pipeline) -> None:
    tracer = pipeline.tracer
    with tracer.start_as_current_span("health check"):
        tracer.start_span("ping").end()
        pipeline.export_now()
        assert pipeline.received() == {}
    pipeline.export_now()
    assert pipeline.received() == {"health check": None, "ping": None}


def test_the_exporters_force_flush_and_shutdown_send_what_is_held(pipeline: Pipeline) -> None:
    tracer = pipeline.tracer
    root = tracer.start_span("long request")
    with trace.use_span(root):
        tracer.start_span("first").end()
    pipeline.export_now()
    assert pipeline.exporter.late_sessions.held_spans == 1
    assert pipeline.exporter.force_flush()
    assert pipeline.received() == {"first": None}
    with trace.use_span(root):
        tracer.start_span("second").end()
    pipeline.export_now()
    assert pipeline.received() == {"first": None}
    pipeline.exporter.shutdown()
    assert pipeline.received() == {"first": None, "second": None}
    assert pipeline.exporter.stats.exported_spans == 2


def test_spans_the_processor_did_not_see_are_not_held(langfuse_receiver: LangfuseReceiver) -> None:
    exporter = LangfuseSpanExporter(
        public_key=langfuse_receiver.public_key,
        secret_key=langfuse_receiver.secret_key,
        base_url=langfuse_receiver.url,
    )
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("plain")
    try:
        with tracer.start_as_current_span("request"):
            tracer.start_span("step").end()
            assert provider.force_flush(10_000)
            assert [span.name for span in langfuse_receiver.spans()] == ["step"]
    finally:
        provider.shutdown()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _open_request_spans(traced: Traced, count: int) -> list[object]:
    root = traced.tracer.start_span("open request")
    with trace.use_span(root):
        for index in range(count):
            traced.tracer.start_span(f"step {index}").end()
    return list(traced.spans())


def test_spans_are_held_at_most_the_configured_time(traced: Traced) -> None:
    clock = Clock()
    hold = LateSessionHold(max_seconds=30, clock=clock)
    spans = _open_request_spans(traced, 3)
    assert hold.take(spans, lambda _: False) == []  # type: ignore[arg-type]
    clock.now = 29.9
    assert hold.take([], lambda _: False) == []
    clock.now = 30.0
    assert len(hold.take([], lambda _: False)) == 3
    assert hold.released_early == 3
    assert hold.held_spans == 0


def test_past_the_memory_budget_a_span_is_sent_as_it_is(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = LateSessionHold(max_seconds=30, clock=Clock())
    first = _open_request_spans(traced, 3)
    # held spans may fill three quarters of the budget: room for two
    monkeypatch.setattr(MEMORY, "budget", (MEMORY.bytes + 2 * span_bytes(first[0])) * 4 // 3 + 1)
    before = MEMORY.over_budget
    sent = hold.take(first, lambda _: False)  # type: ignore[arg-type]
    assert sent == first[2:]  # two fit the budget: the third is sent as it is
    assert hold.held_spans == 2
    assert hold.released_early == 1
    assert MEMORY.over_budget == before + 1  # counted (and logged)
