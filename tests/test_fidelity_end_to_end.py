"""What Langfuse shows, end to end: real SDK spans through LangfuseSpanExporter to the testing
receiver (and, for app roots, through a real WSGI service and a real HTTP hop)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, format_trace_id

from langfuse_otel_sessions import configure, install_baggage_guard
from langfuse_otel_sessions.export.exporter import LangfuseSpanExporter
from langfuse_otel_sessions.testing import LangfuseReceiver, TraceView, langfuse_receiver

from .conftest import Exported
from .servers import serve_wsgi
from .test_trust_boundary import StartResponse, get

__all__ = ["langfuse_receiver"]

EDGE = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1))


@pytest.fixture
def service(langfuse_receiver: LangfuseReceiver) -> Iterator[Exported]:
    created = Exported(langfuse_receiver)
    yield created
    created.provider.shutdown()


def only_trace(receiver: LangfuseReceiver) -> TraceView:
    (trace_view,) = receiver.traces().values()
    return trace_view


# -- 1. root I/O ----------------------------------------------------------------------------


def test_trace_input_and_a_framework_output_both_show(
    service: Exported, langfuse_receiver: LangfuseReceiver
) -> None:
    with service.tracer.start_as_current_span(
        "agent", attributes={"langfuse.trace.input": "Q", "output.value": "W"}
    ):
        pass
    service.export_now()
    shown = only_trace(langfuse_receiver)
    assert (shown.input, shown.output) == ("Q", "W")


# -- 2. ids ---------------------------------------------------------------------------------


def test_a_numeric_session_id_groups_every_observation(
    service: Exported, langfuse_receiver: LangfuseReceiver
) -> None:
    with service.tracer.start_as_current_span("root"):
        service.tracer.start_span("llm", attributes={"session.id": 42}).end()
    service.export_now()
    session_view = langfuse_receiver.sessions()["42"]
    assert session_view.observations_in_session == 2


def test_an_oversized_session_id_is_not_spread_even_across_batches(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    service = Exported(langfuse_receiver)
    huge = "h" * 100_000
    with service.tracer.start_as_current_span("root"):
        service.tracer.start_span("llm", attributes={"session.id": huge}).end()
        service.export_now()  # "llm" leaves alone; the exporter must not remember its id
        service.tracer.start_span("later").end()
    service.export_now()
    shown = only_trace(langfuse_receiver)
    assert "langfuse.session.id" not in shown.span("later").attributes
    assert "langfuse.session.id" not in shown.span("root").attributes
    service.provider.shutdown()


# -- 3. app roots ---------------------------------------------------------------------------


def behind_an_edge(service: Exported, **attributes: Any) -> None:
    edge = trace.set_span_in_context(NonRecordingSpan(EDGE))
    with service.tracer.start_as_current_span("POST /chat", context=edge, attributes=attributes):
        service.tracer.start_span("llm").end()
    service.export_now()


def test_a_service_behind_an_edge_that_does_not_export_gets_a_named_trace(
    service: Exported, langfuse_receiver: LangfuseReceiver
) -> None:
    behind_an_edge(service, **{"input.value": "q", "output.value": "a"})
    shown = only_trace(langfuse_receiver)
    assert shown.name == "POST /chat"
    assert (shown.input, shown.output) == ("q", "a")
    assert [root.name for root in shown.roots] == ["POST /chat"]


def their_app(service: Exported) -> Any:
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        with service.tracer.start_as_current_span("handler"):
            pass
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    return OpenTelemetryMiddleware(app, tracer_provider=service.provider)


def test_each_trace_has_one_app_root_across_a_real_http_hop(
    service: Exported, langfuse_receiver: LangfuseReceiver
) -> None:
    edge = trace.set_span_in_context(NonRecordingSpan(EDGE))
    headers: dict[str, str] = {}
    propagate.inject(headers, context=edge)  # an edge proxy that exports nowhere
    with serve_wsgi(their_app(service)) as url:
        get(url, headers)
    service.export_now()
    shown = only_trace(langfuse_receiver)
    (root,) = shown.roots
    assert root.parent_span_id == format(EDGE.span_id, "016x")  # the server span
    assert shown.name == root.name


@pytest.mark.skipif(sys.version_info < (3, 11), reason="langfuse 5 needs Python 3.11+")
def test_a_langfuse_sdk_caller_keeps_the_trace_root(
    service: Exported, langfuse_receiver: LangfuseReceiver
) -> None:
    langfuse = pytest.importorskip("langfuse")
    client = langfuse.Langfuse(
        public_key="pk-lf-up",
        secret_key="sk-lf-up",
        base_url="http://127.0.0.1:9",
        tracer_provider=TracerProvider(),
        span_exporter=InMemorySpanExporter(),  # the caller's own export is not under test
    )
    headers: dict[str, str] = {}
    with (
        serve_wsgi(their_app(service)) as url,
        client.start_as_current_observation(name="caller") as caller,
    ):
        propagate.inject(headers)
        get(url, headers)
        trace_id = caller.trace_id
    service.export_now()
    assert f"langfuse_trace_id={format_trace_id(int(trace_id, 16))}" in headers["baggage"]
    shown = only_trace(langfuse_receiver)
    assert shown.roots == []  # the caller's observation is the trace's root in Langfuse
    (server,) = [span for span in shown.spans if span.name != "handler"]
    assert server.attributes["langfuse.internal.is_app_root"] is False
    client.shutdown()


def test_two_services_of_ours_give_the_trace_one_app_root(
    service: Exported, langfuse_receiver: LangfuseReceiver
) -> None:
    """The caller exports to Langfuse with this package too: its outgoing request claims the
    trace's root (``langfuse_trace_id``, as the Langfuse SDK does), so the callee marks none."""
    exporter = LangfuseSpanExporter(
        public_key=langfuse_receiver.public_key,
        secret_key=langfuse_receiver.secret_key,
        base_url=langfuse_receiver.url,
    )
    front = configure(TracerProvider(), exporter=exporter)  # the guard and outbound policy
    headers: dict[str, str] = {}
    with serve_wsgi(their_app(service)) as url:
        with front.get_tracer("front").start_as_current_span("front") as caller:
            propagate.inject(headers)
            get(url, headers)
        trace_id = format_trace_id(caller.get_span_context().trace_id)
    assert f"langfuse_trace_id={trace_id}" in headers["baggage"]
    assert front.force_flush(10_000)
    service.export_now()
    shown = only_trace(langfuse_receiver)
    assert [root.name for root in shown.roots] == ["front"]
    front.shutdown()


def test_a_shut_down_exporter_claims_nothing() -> None:
    def claimed() -> bool:
        headers: dict[str, str] = {}
        with TracerProvider().get_tracer("app").start_as_current_span("caller"):
            propagate.inject(headers)
        return "langfuse_trace_id" in headers.get("baggage", "")

    install_baggage_guard()
    assert not claimed()
    exporter = LangfuseSpanExporter(public_key="pk", secret_key="sk", base_url="http://127.0.0.1:9")
    assert claimed()
    exporter.shutdown()
    assert not claimed()
