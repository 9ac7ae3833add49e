"""``also_emit`` behind real frameworks over loopback HTTP: a session the middleware generated
gets ``session.id`` but never ``gen_ai.conversation.id`` (server span included, the middleware
inside or outside OpenTelemetry's instrumentation); the same id sent back by the client is given,
and gets it."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the framework stack is in requirements/test.txt")
import httpx

from .conftest import make_traced
from .test_frameworks import ORDERS, served

__all__ = ["ORDERS"]

CONVERSATION = "gen_ai.conversation.id"


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
@pytest.mark.parametrize("order", ORDERS)
def test_a_generated_session_gets_no_conversation_id_and_a_given_one_does(
    framework: str, order: str
) -> None:
    traced = make_traced(also_emit="otel")
    options = {"generate_session": True}
    with served(framework, traced, order, **options) as url:
        first = httpx.get(url + "/chat")
        generated = first.json()["session"]
        assert first.cookies["lf_session_id"] == generated
        # the client sends the id back: now it was given, not generated here
        again = httpx.get(url + "/chat", headers={"X-Session-Id": generated}).json()
    assert again["session"] == generated
    # the server stopped, so every span has ended (a server span can end after the response)
    first_start = min(span.start_time or 0 for span in traced.spans())
    first_trace = next(s.context.trace_id for s in traced.spans() if s.start_time == first_start)
    first_spans = [s for s in traced.spans() if s.context.trace_id == first_trace]
    second_spans = [s for s in traced.spans() if s.context.trace_id != first_trace]
    assert any(span.kind.name == "SERVER" for span in first_spans)
    for span in first_spans:
        attributes = span.attributes or {}
        assert attributes["langfuse.session.id"] == generated, span.name
        assert attributes["session.id"] == generated, span.name
        assert CONVERSATION not in attributes, span.name
    assert any(span.kind.name == "SERVER" for span in second_spans)
    for span in second_spans:
        attributes = span.attributes or {}
        assert attributes["session.id"] == generated, span.name
        assert attributes[CONVERSATION] == generated, span.name


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_a_generated_session_replaces_a_trusted_callers_conversation_id_on_the_server_span(
    framework: str,
) -> None:
    # OpenTelemetry's instrumentation outside: the server span starts (and is stamped from the
    # trusted caller's baggage) before the middleware generates the request's session.
    traced = make_traced(also_emit="otel", trust_remote_baggage=True)
    options = {"generate_session": True, "trust_remote_baggage": True}
    with served(framework, traced, ORDERS[0], **options) as url:
        answer = httpx.get(url + "/chat", headers={"baggage": "langfuse_session_id=upstream"})
    generated = answer.json()["session"]
    assert generated != "upstream"
    (server,) = [span for span in traced.spans() if span.kind.name == "SERVER"]
    attributes = server.attributes or {}
    assert attributes["langfuse.session.id"] == attributes["session.id"] == generated
    assert not attributes.get(CONVERSATION)  # blanked: Langfuse and others skip empty ids
    for span in traced.spans():
        assert "upstream" not in (span.attributes or {}).values(), span.name
