"""The mapping never makes Langfuse show less: root I/O both-or-neither, ids read the way
Langfuse reads them, app roots marked like the Langfuse Python SDK marks them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, format_trace_id

from langfuse_otel_sessions import SessionSpanProcessor
from langfuse_otel_sessions._logging import RateLimitedLog
from langfuse_otel_sessions.export import mapping as mapping_module
from langfuse_otel_sessions.export.langfuse_rules import read_io
from langfuse_otel_sessions.export.mapping import map_spans
from langfuse_otel_sessions.ids import TraceIds

IS_APP_ROOT = "langfuse.internal.is_app_root"
REMOTE_TRACE_ID = 0x5B8AA5A2D2C872E8321CF37308D69DF2
REMOTE = SpanContext(REMOTE_TRACE_ID, 0x051581BF3CB55C13, True, TraceFlags(1))


def finished(
    build: Callable[[trace.Tracer], None], processor: SessionSpanProcessor | None = None
) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    if processor is not None:
        provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("t"))
    return list(exporter.get_finished_spans())


def nothing_known(key: int, span: ReadableSpan) -> TraceIds | None:
    return None


def one_root(attributes: dict[str, object]) -> ReadableSpan:
    (span,) = finished(lambda tracer: tracer.start_span("root", attributes=attributes).end())  # type: ignore[arg-type]
    return span


def shown(span: ReadableSpan | Mapping[str, object]) -> dict[str, tuple[object, object]]:
    """What Langfuse shows as the trace's (input, output) on each server generation."""
    attributes = dict(span.attributes or {}) if isinstance(span, ReadableSpan) else dict(span)
    v3 = read_io(attributes, domain="trace")
    v4 = read_io(attributes)
    return {"v3": (v3.input, v3.output), "v4": (v4.input, v4.output)}


def mapped_root(attributes: dict[str, object]) -> Mapping[str, object]:
    (sent,) = map_spans([one_root(attributes)], nothing_known)[0]
    return sent


def sent(spans: list[ReadableSpan]) -> tuple[dict[str, Mapping[str, object]], dict[int, TraceIds]]:
    """The attributes the exporter sends for each span, by name, and the ids it learned."""
    attributes, learned = map_spans(spans, nothing_known)
    return {span.name: a for span, a in zip(spans, attributes, strict=True)}, learned


# -- 1. adding root I/O never hides I/O ------------------------------------------------------


def test_trace_input_with_a_framework_output_shows_both_on_both_generations() -> None:
    attributes: dict[str, object] = {"langfuse.trace.input": "Q", "output.value": "W"}
    before = shown(one_root(attributes))
    assert before == {"v3": ("Q", None), "v4": (None, "W")}  # each generation hides a side
    assert shown(mapped_root(attributes)) == {"v3": ("Q", "W"), "v4": ("Q", "W")}


def test_a_composed_other_side_means_nothing_is_added() -> None:
    attributes: dict[str, object] = {
        "langfuse.trace.input": "Q",
        "gen_ai.prompt.0.content": "hi",
        "gen_ai.completion.0.content": "there",
    }
    assert mapped_root(attributes) == one_root(attributes).attributes  # neither side added


def test_an_explicit_observation_side_is_completed_not_replaced() -> None:
    attributes: dict[str, object] = {
        "langfuse.observation.input": "own",
        "langfuse.trace.output": "answer",
        "output.value": "framework",
    }
    assert shown(mapped_root(attributes))["v4"] == ("own", "answer")


IO_KEYS = (
    "langfuse.trace.input",
    "langfuse.trace.output",
    "langfuse.observation.input",
    "langfuse.observation.output",
    "input.value",
    "output.value",
    "traceloop.entity.input",
    "traceloop.entity.output",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.prompt.0.content",
    "gen_ai.completion.0.content",
    "custom.in",
    "custom.out",
)


@settings(max_examples=300, deadline=None)
@given(
    attributes=st.dictionaries(st.sampled_from(IO_KEYS), st.sampled_from(["", "a", "b"])),
)
def test_the_mapping_never_hides_a_side_langfuse_showed(attributes: dict[str, object]) -> None:
    before = shown(one_root(attributes))
    after = shown(mapped_root(attributes))
    for generation in ("v3", "v4"):
        for side in (0, 1):
            if before[generation][side] not in (None, ""):
                assert after[generation][side] not in (None, ""), (generation, side, after)


# -- 2. ids the way Langfuse reads them -----------------------------------------------------


def test_a_non_string_session_id_completes_the_trace_as_langfuse_reads_it() -> None:
    def build(tracer: trace.Tracer) -> None:
        with tracer.start_as_current_span("root"):
            tracer.start_span("llm", attributes={"session.id": 42, "user.id": True}).end()

    by_name, learned = sent(finished(build))
    assert by_name["root"]["langfuse.session.id"] == "42"
    assert by_name["root"]["langfuse.user.id"] == "true"
    assert list(learned.values()) == [TraceIds("42", "true")]


def test_an_oversized_session_id_is_neither_spread_nor_remembered(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mapping_module, "_log", RateLimitedLog())  # earlier tests' warnings
    huge = "s" * 100_000

    def build(tracer: trace.Tracer) -> None:
        with tracer.start_as_current_span("root"):
            tracer.start_span("llm", attributes={"session.id": huge}).end()

    by_name, learned = sent(finished(build))
    assert "langfuse.session.id" not in by_name["root"]
    assert learned == {}
    assert "longer than 200 characters" in caplog.text
    assert huge not in caplog.text


def test_a_control_character_in_a_learnt_user_id_is_not_spread() -> None:
    def build(tracer: trace.Tracer) -> None:
        with tracer.start_as_current_span("root"):
            tracer.start_span("llm", attributes={"session.id": "s1", "user.id": "u\n1"}).end()

    by_name, learned = sent(finished(build))
    assert list(learned.values()) == [TraceIds("s1", None)]
    assert "langfuse.user.id" not in by_name["root"]


# -- 3. app roots ---------------------------------------------------------------------------


def under_remote_parent(tracer: trace.Tracer, context: Context | None = None) -> None:
    parent = trace.set_span_in_context(NonRecordingSpan(REMOTE), context)
    with tracer.start_as_current_span("POST /chat", context=parent, attributes={"a": 1}):
        tracer.start_span("llm").end()


def test_the_first_span_under_a_remote_parent_becomes_the_app_root() -> None:
    attributes = sent(finished(under_remote_parent))[0]
    assert attributes["POST /chat"][IS_APP_ROOT] is True
    assert IS_APP_ROOT not in attributes["llm"]


def test_an_app_root_gets_the_root_additions() -> None:
    def io_under_remote_parent(tracer: trace.Tracer) -> None:
        context = trace.set_span_in_context(NonRecordingSpan(REMOTE))
        attributes = {"langfuse.trace.input": "q", "output.value": "a"}
        tracer.start_span("POST /chat", context=context, attributes=attributes).end()

    (server,) = map_spans(finished(io_under_remote_parent), nothing_known)[0]
    assert server["langfuse.observation.output"] == "a"


def test_true_roots_and_local_children_are_not_marked() -> None:
    def local(tracer: trace.Tracer) -> None:
        with tracer.start_as_current_span("root"):
            tracer.start_span("child").end()

    mapped, _ = map_spans(finished(local), nothing_known)
    assert all(IS_APP_ROOT not in attributes for attributes in mapped)


def test_an_upstream_langfuse_sdk_claim_keeps_the_local_root_from_being_an_app_root() -> None:
    claim = baggage.set_baggage("langfuse_trace_id", format_trace_id(REMOTE_TRACE_ID).upper())
    processor = SessionSpanProcessor()
    spans = finished(lambda tracer: under_remote_parent(tracer, claim), processor)
    assert sent(spans)[0]["POST /chat"][IS_APP_ROOT] is False


def test_a_claim_for_another_trace_does_not_count() -> None:
    claim = baggage.set_baggage("langfuse_trace_id", "0" * 32)
    processor = SessionSpanProcessor()
    spans = finished(lambda tracer: under_remote_parent(tracer, claim), processor)
    assert sent(spans)[0]["POST /chat"][IS_APP_ROOT] is True


def test_the_mapping_logs_nothing_for_app_roots(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    map_spans(finished(under_remote_parent), nothing_known)
    assert caplog.records == []
