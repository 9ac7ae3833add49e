"""Exported spans of a local request whose trace attributes are known carry them, as for
sessions: the real SDK, our processor and exporter, the receiver on loopback."""

from __future__ import annotations

import json
import logging
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import NonRecordingSpan, SpanContext, set_span_in_context

from langfuse_otel_sessions import session
from langfuse_otel_sessions._logging import RateLimitedLog
from langfuse_otel_sessions.export import mapping as mapping_module
from langfuse_otel_sessions.export.langfuse_rules import ENVIRONMENT_KEYS, TAG_KEYS
from langfuse_otel_sessions.spans.memory import MAX_REQUEST_ATTRIBUTE_BYTES, MEMORY, Request
from langfuse_otel_sessions.testing import (
    LangfuseReceiver,
    langfuse_receiver,
    span_environment,
    span_tags,
)

from .conftest import Exported as Pipeline

__all__ = ["langfuse_receiver"]

FULL = {
    "tags": ["a", "b"],
    "metadata": {"tenant": "acme"},
    "environment": "prod",
    "release": "r-1",
    "version": "1.0",
    "trace_name": "chat",
}
EXPECTED = {
    "langfuse.trace.tags": ["a", "b"],
    "langfuse.trace.metadata.tenant": "acme",
    "langfuse.environment": "prod",
    "langfuse.release": "r-1",
    "langfuse.version": "1.0",
    "langfuse.trace.name": "chat",
}


@pytest.fixture
def pipeline(langfuse_receiver: LangfuseReceiver) -> Iterator[Pipeline]:
    built = Pipeline(langfuse_receiver)
    yield built
    built.provider.shutdown()


def received(pipeline: Pipeline, name: str) -> dict[str, object]:
    spans = [s for s in pipeline.receiver.spans() if s.name == name]
    assert len(spans) == 1, name
    return {
        k: v
        for k, v in spans[0].attributes.items()
        if k in EXPECTED or k.startswith("langfuse.trace.metadata.")
    }


def test_a_server_span_started_before_the_scope_gets_them_in_its_own_batch(
    pipeline: Pipeline,
) -> None:
    tracer = pipeline.tracer
    with tracer.start_as_current_span("server"):
        with session("s-1", **FULL):  # type: ignore[arg-type]
            with tracer.start_as_current_span("agent"):
                tracer.start_span("llm").end()
            pipeline.export_now()  # a batch of its own
        tracer.start_span("after").end()
        pipeline.export_now()
    pipeline.export_now()  # the server span, alone
    for name in ("server", "agent", "llm", "after"):
        assert received(pipeline, name) == EXPECTED, name
    trace = next(iter(pipeline.receiver.traces().values()))
    assert trace.name == "chat"
    assert trace.environment == "prod"
    assert trace.tags == ("a", "b")
    assert trace.metadata == {"tenant": "acme"}
    assert (trace.release, trace.version) == ("r-1", "1.0")
    assert {span_environment(span) for span in trace.spans} == {"prod"}


def test_an_explicit_attribute_on_a_span_still_wins(pipeline: Pipeline) -> None:
    tracer = pipeline.tracer
    with (
        tracer.start_as_current_span(
            "server", attributes={"langfuse.environment": "edge", "langfuse.trace.tags": ["own"]}
        ),
        session("s-2", environment="prod", tags=["a"]),
    ):
        tracer.start_span("llm").end()
    pipeline.export_now()
    assert received(pipeline, "server") == {
        "langfuse.environment": "edge",
        "langfuse.trace.tags": ["own"],
    }


def given_elsewhere() -> list[tuple[str, object, str]]:
    """``(key, value, attribute it stands for)``: every other key Langfuse reads a field from
    (its own rules, ``langfuse_rules``), and a JSON metadata object's key."""
    cases: list[tuple[str, object, str]] = [
        (key, "edge", "langfuse.environment")
        for key in ENVIRONMENT_KEYS
        if key != "langfuse.environment"
    ]
    cases += [
        (key, "own", "langfuse.trace.tags") for key in TAG_KEYS if key != "langfuse.trace.tags"
    ]
    cases.append(
        (
            "langfuse.trace.metadata",
            json.dumps({"tenant": "mine"}),
            "langfuse.trace.metadata.tenant",
        )
    )
    return cases


@pytest.mark.parametrize(("key", "value", "stands_for"), given_elsewhere())
def test_a_value_given_under_another_key_langfuse_reads_wins_too(
    pipeline: Pipeline, key: str, value: object, stands_for: str
) -> None:
    tracer = pipeline.tracer
    with (
        tracer.start_as_current_span("server", attributes={key: value}),
        session("s-2", **FULL),  # type: ignore[arg-type]
    ):
        tracer.start_span("llm").end()
    pipeline.export_now()
    server = {k: v for k, v in received(pipeline, "server").items() if k != key}
    assert stands_for not in server
    assert server == {k: v for k, v in EXPECTED.items() if k != stands_for}  # the rest is filled
    (trace,) = pipeline.receiver.traces().values()
    root = trace.span("server")
    if stands_for == "langfuse.environment":
        assert span_environment(root) == "edge"
    elif stands_for == "langfuse.trace.tags":
        assert span_tags(root) == ("own",)
    else:
        assert trace.metadata == {"tenant": "mine"}  # the root's own, as Langfuse shows it


def test_conflicting_values_are_left_out_tags_add_up(pipeline: Pipeline) -> None:
    tracer = pipeline.tracer
    with tracer.start_as_current_span("batch job"):
        with session("s-a", environment="dev", tags=["a"], metadata={"k": "1", "same": "x"}):
            tracer.start_span("first").end()
        with session("s-b", environment="prod", tags=["b"], metadata={"k": "2", "same": "x"}):
            tracer.start_span("second").end()
    pipeline.export_now()
    assert received(pipeline, "batch job") == {
        "langfuse.trace.tags": ["a", "b"],
        "langfuse.trace.metadata.same": "x",
    }


def test_nested_scopes_tags_add_up_on_v4_too(pipeline: Pipeline) -> None:
    """v4 shows the last tag list written: the root, stamped with the outer scope's tags and
    written last, gets the inner scope's too."""
    tracer = pipeline.tracer
    with session("s-5", tags=["a"]), tracer.start_as_current_span("root"):
        with session("s-5", tags=["b"]):
            tracer.start_span("child").end()
        pipeline.export_now()  # the child in a batch of its own, before the root
    pipeline.export_now()
    (trace,) = pipeline.receiver.traces().values()
    assert trace.tags == ("a", "b")


def test_trace_input_below_the_root_is_warned_once(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v4 takes a trace's input and output from its root observation only (the Langfuse SDK 5
    has no trace-level input): a child's ``langfuse.trace.input`` shows on v3 alone."""
    monkeypatch.setattr(mapping_module, "_once", RateLimitedLog(float("inf")), raising=False)
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    tracer = pipeline.tracer
    with tracer.start_as_current_span("root"):
        for step in range(2):
            tracer.start_span(f"step {step}", attributes={"langfuse.trace.input": "Q"}).end()
    pipeline.export_now()
    (trace,) = pipeline.receiver.traces().values()
    assert trace.input is None
    assert caplog.text.count("root observation only") == 1


def test_a_request_without_attributes_is_left_as_it_is(pipeline: Pipeline) -> None:
    tracer = pipeline.tracer
    with tracer.start_as_current_span("server"), session("s-3"):
        tracer.start_span("llm").end()
    pipeline.export_now()
    assert received(pipeline, "server") == {}


def test_another_request_of_the_same_trace_learns_nothing(pipeline: Pipeline) -> None:
    tracer = pipeline.tracer
    with tracer.start_as_current_span("server") as server:
        with session("s-4", environment="prod"):
            tracer.start_span("llm").end()
        local = server.get_span_context()
    remote = SpanContext(
        local.trace_id, local.span_id, is_remote=True, trace_flags=local.trace_flags
    )
    with tracer.start_as_current_span("joined", set_span_in_context(NonRecordingSpan(remote))):
        pass
    pipeline.export_now()
    assert received(pipeline, "joined") == {}


def test_the_memory_per_request_is_bounded_in_bytes() -> None:
    before = MEMORY.over_budget
    # Overflow one memory first, so that the logging module's lazy allocations for the
    # (rate-limited) warning are not counted as the memory's own below.
    warm = Request(1, None)
    for i in range(2_000):
        warm.note_attributes(((f"langfuse.trace.metadata.warm-{i:05d}", "v"),))
    memory = Request(2, None)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for i in range(2_000):  # 2,000 scopes, each with a metadata key of its own
            memory.note_attributes(((f"langfuse.trace.metadata.key-{i:05d}", f"value-{i:05d}"),))
        used = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert memory.attribute_bytes <= MAX_REQUEST_ATTRIBUTE_BYTES
    assert MEMORY.over_budget > before  # counted (and logged), not silent
    # What the estimate stands for, measured: the remembered entries and their strings.
    assert used <= MAX_REQUEST_ATTRIBUTE_BYTES, used


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["langfuse.environment", "langfuse.release", "langfuse.trace.name"]),
            st.sampled_from(["x", "y", "z"]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_key_is_filled_only_when_every_scope_agreed(
    scopes: list[tuple[str, str]],
) -> None:
    memory = Request(0, None)
    for scope in scopes:
        memory.note_attributes((scope,))
    expected: dict[str, object] = {}
    for key in {k for k, _ in scopes}:
        values = {v for k, v in scopes if k == key}
        if len(values) == 1:
            expected[key] = values.pop()
    assert dict(memory.fills()) == expected


def test_a_scope_s_trace_name_names_the_root(langfuse_receiver: LangfuseReceiver) -> None:
    pipeline = Pipeline(langfuse_receiver)
    try:
        tracer = pipeline.tracer
        server = tracer.start_as_current_span("server", attributes={"http.route": "/chat"})
        with server, session("s-5", trace_name="chat"):
            tracer.start_span("llm").end()
        pipeline.export_now()
    finally:
        pipeline.provider.shutdown()
    assert received(pipeline, "server")["langfuse.trace.name"] == "chat"
    trace = next(iter(langfuse_receiver.traces().values()))
    assert trace.name == "chat"
