"""Per local request memory: joining a trace shares nothing; several sessions under one root.

Issue 10 items 6 and 7, through the real SDK, the real W3C propagator, and the exporter sending
to the testing receiver.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from langfuse_otel_sessions import LangfuseSpanExporter, SessionSpanProcessor, session
from langfuse_otel_sessions.attributes import LANGFUSE_SESSION_ID, LANGFUSE_USER_ID
from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

from .conftest import Traced

__all__ = ["langfuse_receiver"]


def joining(span: trace.Span) -> context.Context:
    """The context of a request whose ``traceparent`` names ``span``'s trace (forged/leaked)."""
    ctx = span.get_span_context()
    header = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
    return TraceContextTextMapPropagator().extract({"traceparent": header}, context.Context())


def test_a_request_joining_a_trace_gets_no_session_from_it(traced: Traced) -> None:
    tracer = traced.tracer
    victim = tracer.start_span("victim request")
    with trace.use_span(victim), session("victim-session", user_id="victim@example.com"):
        tracer.start_span("victim step").end()
    attacker = tracer.start_span("attacker request", context=joining(victim))
    with trace.use_span(attacker, end_on_exit=True):
        tracer.start_span("attacker step").end()
    # The attacker's local root ended: the victim's memory is the victim's, still there.
    with trace.use_span(victim, end_on_exit=True):
        tracer.start_span("victim after its scope").end()

    assert traced.span("attacker request").context.trace_id == victim.get_span_context().trace_id
    for name in ("attacker request", "attacker step"):
        assert traced.session_of(name) is None
        assert traced.user_of(name) is None
    assert traced.session_of("victim after its scope") == "victim-session"
    assert traced.user_of("victim after its scope") == "victim@example.com"


@pytest.fixture
def exported(langfuse_receiver: LangfuseReceiver) -> Iterator[tuple[TracerProvider, Traced]]:
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor())
    exporter = LangfuseSpanExporter(
        public_key=langfuse_receiver.public_key,
        secret_key=langfuse_receiver.secret_key,
        base_url=langfuse_receiver.url,
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    yield provider, langfuse_receiver  # type: ignore[misc]
    provider.shutdown()


def test_the_exporter_completes_no_span_of_a_request_that_joined_a_trace(
    exported: tuple[TracerProvider, LangfuseReceiver],
) -> None:
    provider, receiver = exported
    tracer = provider.get_tracer("app")
    victim = tracer.start_span("victim request")  # started before its session was known
    with trace.use_span(victim), session("victim-session", user_id="victim@example.com"):
        tracer.start_span("victim step").end()
    with trace.use_span(tracer.start_span("attacker request", context=joining(victim)), True):
        tracer.start_span("attacker step").end()
    victim.end()
    assert provider.force_flush(10_000)

    (view,) = receiver.traces().values()
    spans = {span.name: span.attributes for span in view.spans}
    for name in ("victim request", "victim step"):
        assert spans[name][LANGFUSE_SESSION_ID] == "victim-session"
    for name in ("attacker request", "attacker step"):
        assert LANGFUSE_SESSION_ID not in spans[name]
        assert LANGFUSE_USER_ID not in spans[name]


def test_a_batch_job_gives_each_span_the_session_in_force_where_it_started(
    traced: Traced,
) -> None:
    tracer = traced.tracer
    with tracer.start_as_current_span("nightly job"):
        for conversation in ("c1", "c2", "c3"):
            with session(conversation):
                tracer.start_span(f"summarise {conversation}").end()
            tracer.start_span(f"after {conversation}").end()
    for conversation in ("c1", "c2", "c3"):
        assert traced.session_of(f"summarise {conversation}") == conversation
        # The fallback hands a span the scope entered last, never an earlier one.
        assert traced.session_of(f"after {conversation}") == conversation
    assert traced.session_of("nightly job") is None


def test_one_connection_serving_sessions_in_turn(traced: Traced) -> None:
    tracer = traced.tracer
    with tracer.start_as_current_span("websocket /chat"):
        for turn, conversation in enumerate(("a", "b", "a")):
            with session(conversation), tracer.start_as_current_span(f"message {turn}"):
                tracer.start_span(f"llm {turn}").end()
            tracer.start_span(f"ack {turn}").end()
    assert [traced.session_of(f"llm {turn}") for turn in range(3)] == ["a", "b", "a"]
    assert [traced.session_of(f"ack {turn}") for turn in range(3)] == ["a", "b", "a"]


def test_the_exporter_files_a_root_of_several_sessions_in_none(
    exported: tuple[TracerProvider, LangfuseReceiver],
) -> None:
    provider, receiver = exported
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("nightly job"):
        for conversation in ("c1", "c2"):
            with session(conversation):
                tracer.start_span(f"summarise {conversation}").end()
    assert provider.force_flush(10_000)
    (view,) = receiver.traces().values()
    spans = {span.name: span.attributes for span in view.spans}
    assert LANGFUSE_SESSION_ID not in spans["nightly job"]
    assert spans["summarise c1"][LANGFUSE_SESSION_ID] == "c1"
    assert spans["summarise c2"][LANGFUSE_SESSION_ID] == "c2"


def test_a_span_started_after_its_local_root_ended_still_finds_its_request(
    traced: Traced,
) -> None:
    # Spans started after the local root ended (a detached task) still find their request.
    tracer = traced.tracer
    root = tracer.start_span("root")
    with trace.use_span(root, end_on_exit=True), session("s"):
        tracer.start_span("inside").end()
    late = trace.set_span_in_context(root, context.Context())
    tracer.start_span("detached, after the root ended", context=late).end()
    assert traced.session_of("detached, after the root ended") == "s"


def test_without_the_processor_completeness_stays_within_local_parents(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    provider = TracerProvider()  # no SessionSpanProcessor: spans carry no request
    exporter = LangfuseSpanExporter(
        public_key=langfuse_receiver.public_key,
        secret_key=langfuse_receiver.secret_key,
        base_url=langfuse_receiver.url,
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))  # one batch: shutdown flushes
    tracer = provider.get_tracer("app")
    try:
        with tracer.start_as_current_span("victim request") as victim:
            with tracer.start_as_current_span("victim step", attributes={"session.id": "v"}):
                tracer.start_span("victim leaf").end()
            with tracer.start_as_current_span("attacker request", context=joining(victim)):
                tracer.start_span("attacker step").end()
    finally:
        provider.shutdown()
    (view,) = langfuse_receiver.traces().values()
    spans = {span.name: span.attributes for span in view.spans}
    assert spans["victim leaf"][LANGFUSE_SESSION_ID] == "v"
    assert LANGFUSE_SESSION_ID not in spans["attacker step"]
    assert LANGFUSE_SESSION_ID not in spans["attacker request"]
