"""The pure root-span / session mapping, on real SDK spans."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langfuse_otel_sessions.export.encoder import SpanEncoder
from langfuse_otel_sessions.export.langfuse_rules import read_io
from langfuse_otel_sessions.export.mapping import map_spans
from langfuse_otel_sessions.ids import TraceIds


def finished(build: object, limits: SpanLimits | None = None) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("t"))  # type: ignore[operator]
    return list(exporter.get_finished_spans())


def nothing_known(key: int, span: ReadableSpan) -> TraceIds | None:
    return None


def sent(
    spans: list[ReadableSpan], known: Callable[[int, ReadableSpan], TraceIds | None]
) -> dict[str, Mapping[str, object]]:
    """The attributes the exporter sends for each span, by span name."""
    attributes, _ = map_spans(spans, known)
    return {span.name: sent for span, sent in zip(spans, attributes, strict=True)}


def server_then_session(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("server", attributes={"http.route": "/chat"}):
        tracer.start_span("auth").end()  # before the app knew the session
        tracer.start_span(
            "llm", attributes={"langfuse.session.id": "s1", "langfuse.user.id": "u1"}
        ).end()


def test_every_span_of_a_trace_with_a_known_session_gets_it() -> None:
    spans = finished(server_then_session)
    before = {s.name: dict(s.attributes or {}) for s in spans}
    result = sent(spans, nothing_known)
    for name in ("server", "auth", "llm"):
        assert result[name]["langfuse.session.id"] == "s1"
        assert result[name]["langfuse.user.id"] == "u1"
    assert {s.name: dict(s.attributes or {}) for s in spans} == before  # originals untouched
    assert list(map_spans(spans, nothing_known)[1].values()) == [TraceIds("s1", "u1")]


def test_sessions_known_from_elsewhere_complete_a_batch() -> None:
    def only_server(tracer: trace.Tracer) -> None:
        tracer.start_span("server").end()

    spans = finished(only_server)
    request = spans[0].context.span_id  # type: ignore[union-attr]  # the local root's id
    server = sent(spans, lambda key, _: TraceIds("s9", None) if key == request else None)["server"]
    assert server["langfuse.session.id"] == "s9"
    assert "langfuse.user.id" not in server


def test_a_span_with_its_own_session_key_keeps_it() -> None:
    def mixed(tracer: trace.Tracer) -> None:
        with tracer.start_as_current_span("root", attributes={"langfuse.session.id": "s1"}):
            tracer.start_span("other", attributes={"session.id": "own"}).end()

    other = sent(finished(mixed), nothing_known)["other"]
    assert other["session.id"] == "own"
    assert "langfuse.session.id" not in other


def shown(sent: Mapping[str, object]) -> tuple[tuple[object, object], tuple[object, object]]:
    """The (input, output) Langfuse shows for a root span: legacy (v3) trace, v4 observation."""
    attributes = dict(sent)
    v3 = read_io(attributes, domain="trace")
    v4 = read_io(attributes)
    return (v3.input, v3.output), (v4.input, v4.output)


def test_trace_io_shows_on_both_server_generations() -> None:
    def root_with_trace_io(tracer: trace.Tracer) -> None:
        attributes = {"langfuse.trace.input": "question", "langfuse.trace.output": "answer"}
        with tracer.start_as_current_span("root", attributes=attributes):
            tracer.start_span("child", attributes={"langfuse.trace.input": "child-io"}).end()

    result = sent(finished(root_with_trace_io), nothing_known)
    assert shown(result["root"]) == (("question", "answer"), ("question", "answer"))
    assert "langfuse.observation.input" not in result["child"]


def test_explicit_observation_io_is_not_overwritten() -> None:
    attributes = {"langfuse.trace.input": "trace-level", "langfuse.observation.input": "own"}
    spans = finished(lambda tracer: tracer.start_span("root", attributes=attributes).end())
    assert sent(spans, nothing_known)["root"]["langfuse.observation.input"] == "own"


def test_what_is_sent_keeps_the_span_s_dropped_counts() -> None:
    def noisy(tracer: trace.Tracer) -> None:
        with tracer.start_as_current_span("root", attributes={f"k{i}": i for i in range(5)}) as s:
            s.add_event("e1")
            s.add_event("e2")

    spans = finished(noisy, SpanLimits(max_span_attributes=3, max_events=1))
    attributes, _ = map_spans(spans, lambda _key, _span: TraceIds("s", None))
    request = ExportTraceServiceRequest.FromString(SpanEncoder().encode(spans, attributes))
    (span,) = request.resource_spans[0].scope_spans[0].spans
    assert (span.dropped_attributes_count, span.dropped_events_count) == (2, 1)
    assert "langfuse.session.id" in {attribute.key for attribute in span.attributes}


def test_mapping_logs_nothing_for_ordinary_spans(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    map_spans(finished(server_then_session), nothing_known)
    assert caplog.records == []
