from __future__ import annotations

import asyncio
import gc
import logging
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from opentelemetry import baggage, context, trace

from langfuse_otel_sessions import ConfigurationError, SessionSpanProcessor, session
from langfuse_otel_sessions.attributes import LANGFUSE_SESSION_ID
from langfuse_otel_sessions.spans import memory
from langfuse_otel_sessions.spans.memory import MEMORY

from .conftest import Traced, make_traced


def _with_baggage(**entries: object) -> context.Context:
    ctx = context.Context()
    for key, value in entries.items():
        ctx = baggage.set_baggage(key.replace("__", "."), value, ctx)
    return ctx


def test_spans_of_other_tracers_are_stamped(traced: Traced) -> None:
    with (
        session("s"),
        traced.third_party.start_as_current_span("GET /chat", attributes={"http.method": "GET"}),
    ):
        traced.third_party.start_span("db query").end()
    assert traced.session_of("GET /chat") == "s"
    assert traced.session_of("db query") == "s"


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ({"langfuse__session__id": "a", "session__id": "b", "langfuse_session_id": "c"}, "a"),
        ({"session__id": "b", "langfuse_session_id": "c"}, "b"),
        ({"langfuse_session_id": "c"}, "c"),
        ({"unrelated": "x"}, None),
    ],
)
def test_baggage_keys_are_read_in_priority_order(
    traced: Traced, entries: dict[str, str], expected: str | None
) -> None:
    traced.tracer.start_span("op", context=_with_baggage(**entries)).end()
    assert traced.session_of("op") == expected


def test_user_id_is_stamped_from_its_own_keys(traced: Traced) -> None:
    traced.tracer.start_span("op", context=_with_baggage(user__id="u-7")).end()
    assert traced.user_of("op") == "u-7"
    assert traced.session_of("op") is None


@pytest.mark.parametrize(
    "explicit_key", ["langfuse.session.id", "session.id", "gen_ai.conversation.id"]
)
def test_an_attribute_the_span_starts_with_wins_over_baggage(
    traced: Traced, explicit_key: str
) -> None:
    with session("from-baggage", user_id="u-baggage"):
        traced.tracer.start_span(
            "op", attributes={explicit_key: "explicit", "langfuse.user.id": "u-explicit"}
        ).end()
    attrs = traced.span("op").attributes or {}
    assert attrs[explicit_key] == "explicit"
    assert attrs.get(LANGFUSE_SESSION_ID, "explicit") == "explicit"
    assert attrs["langfuse.user.id"] == "u-explicit"


def test_custom_baggage_keys() -> None:
    traced = make_traced(session_keys=["conversation"], user_keys=("account",))
    ctx = _with_baggage(conversation="conv-1", account="acct-1", langfuse_session_id="ignored")
    traced.tracer.start_span("op", context=ctx).end()
    assert traced.session_of("op") == "conv-1"
    assert traced.user_of("op") == "acct-1"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("x" * 201, "longer than 200"),
        ("", "empty"),
        ("evil\r\ninjected", "control characters"),
        ("bell\x07", "control characters"),
        (42, "not a string"),
        (["list"], "not a string"),
    ],
)
def test_invalid_ids_are_skipped_with_a_warning_and_never_raise(
    traced: Traced, caplog: pytest.LogCaptureFixture, bad: Any, reason: str
) -> None:
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    ctx = _with_baggage(langfuse_session_id=bad, langfuse_user_id=bad)
    traced.tracer.start_span("op", context=ctx).end()
    assert traced.session_of("op") is None
    assert traced.user_of("op") is None
    assert reason in caplog.text
    assert "injected" not in caplog.text  # a hostile value is described, never echoed


def test_exactly_200_characters_is_accepted(traced: Traced) -> None:
    traced.tracer.start_span("op", context=_with_baggage(langfuse_session_id="x" * 200)).end()
    assert traced.session_of("op") == "x" * 200


def test_repeated_invalid_ids_warn_once_per_interval(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    for i in range(50):
        traced.tracer.start_span("op", context=_with_baggage(langfuse_session_id=f"bad\n{i}")).end()
    assert len([r for r in caplog.records if "Not stamping" in r.getMessage()]) == 1


def test_a_failure_inside_the_processor_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Exploding:
        @property
        def context(self) -> Any:
            raise RuntimeError("boom")

    processor = SessionSpanProcessor()
    with session("s"):
        processor.on_start(Exploding())  # type: ignore[arg-type]
    assert "could not stamp a span" in caplog.text


def test_distinct_sessions_in_1000_concurrent_tasks_never_cross(traced: Traced) -> None:
    async def conversation(i: int) -> None:
        async with session(f"s-{i}", user_id=f"u-{i}"):
            with traced.tracer.start_as_current_span(f"turn-{i}"):
                for step in range(3):
                    await asyncio.sleep(0)
                    traced.third_party.start_span(f"call-{i}-{step}").end()

    async def main() -> None:
        await asyncio.gather(*(conversation(i) for i in range(1000)))

    asyncio.run(main())
    spans = traced.spans()
    assert len(spans) == 4000
    for span in spans:
        i = span.name.split("-")[1]
        assert (span.attributes or {})[LANGFUSE_SESSION_ID] == f"s-{i}", span.name
        assert (span.attributes or {})["langfuse.user.id"] == f"u-{i}", span.name


def test_distinct_sessions_in_threads_never_cross(traced: Traced) -> None:
    barrier = threading.Barrier(16)

    def conversation(i: int) -> None:
        with session(f"s-{i}"):
            barrier.wait(timeout=10)
            for step in range(200):
                with traced.tracer.start_as_current_span(f"op-{i}-{step}"):
                    traced.third_party.start_span(f"child-{i}-{step}").end()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(conversation, range(16)))
    spans = traced.spans()
    assert len(spans) == 16 * 200 * 2
    for span in spans:
        assert (span.attributes or {})[LANGFUSE_SESSION_ID] == f"s-{span.name.split('-')[1]}"


def test_trace_fallback_after_the_scope_closed(traced: Traced) -> None:
    with traced.tracer.start_as_current_span("root"):
        with session("s"):
            traced.tracer.start_span("inside").end()
        traced.tracer.start_span("after scope").end()
    assert traced.session_of("inside") == "s"
    assert traced.session_of("after scope") == "s"


def test_trace_fallback_under_a_parent_context_without_baggage(traced: Traced) -> None:
    with session("s"), traced.tracer.start_as_current_span("root") as root:
        bare_parent = trace.set_span_in_context(root, context.Context())
        traced.third_party.start_span("explicit parent", context=bare_parent).end()
    assert traced.session_of("explicit parent") == "s"


def test_no_fallback_for_other_traces(traced: Traced) -> None:
    with session("s"), traced.tracer.start_as_current_span("root"):
        traced.tracer.start_span("new trace", context=context.Context()).end()
    assert traced.session_of("new trace") is None


def test_the_request_memory_stays_within_its_budget_after_100000_unended_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(MEMORY, "budget", 1_000_000)
    tracer = make_traced().tracer
    ctx = _with_baggage(langfuse_session_id="s")
    before_dropped = MEMORY.over_budget
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        # Worst case: roots that never end, still held by the app: the oldest are forgotten.
        held = [tracer.start_span("unended root", context=ctx) for _ in range(10_000)]
        assert MEMORY.over_budget > before_dropped  # counted (and logged)
        del held  # once the app drops them (and 100,000 more), what is left is ours
        for _ in range(100_000):
            tracer.start_span("unended root", context=ctx)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert MEMORY.bytes <= MEMORY.budget
    assert grown < MEMORY.budget  # the estimate covers what the memory really takes


def test_a_request_is_forgotten_a_while_after_its_root_ended_and_only_then(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "LINGER_SECONDS", 0.0)
    tracer = traced.tracer
    running = tracer.start_span("running request", context=_with_baggage(langfuse_session_id="r"))
    ended = tracer.start_span("ended request", context=_with_baggage(langfuse_session_id="e"))
    keys = [span.get_span_context().span_id for span in (running, ended)]
    ended.end()
    del ended
    gc.collect()
    tracer.start_span("the next request").end()  # a new request forgets what is past its linger
    assert MEMORY.by_key(keys[0]) is not None
    assert MEMORY.by_key(keys[1]) is None
    running.end()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("session_keys", "langfuse.session.id"),  # a string, not a sequence of them
        ("session_keys", ["", "x"]),
        ("user_keys", [1]),
    ],
)
def test_bad_explicit_options_raise_a_configuration_error(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        SessionSpanProcessor(**{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("LANGFUSE_OTEL_SESSION_BAGGAGE_KEYS", "a, b", "session_keys", ("a", "b")),
        ("LANGFUSE_OTEL_USER_BAGGAGE_KEYS", "acct", "user_keys", ("acct",)),
        ("LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE", "TRUE", "trust_remote_baggage", True),
    ],
)
def test_environment_variables_configure_the_processor(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, attribute: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(SessionSpanProcessor(), attribute) == expected


def test_explicit_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_OTEL_SESSION_BAGGAGE_KEYS", "a")
    monkeypatch.setenv("LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE", "true")
    processor = SessionSpanProcessor(session_keys=["b"], trust_remote_baggage=False)
    assert processor.session_keys == ("b",)
    assert processor.trust_remote_baggage is False


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "default"),
    [
        ("LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE", "maybe", "trust_remote_baggage", False),
    ],
)
def test_bad_environment_values_warn_naming_the_variable_and_use_the_default(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    value: str,
    attribute: str,
    default: object,
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(SessionSpanProcessor(), attribute) == default
    assert variable in caplog.text


def test_force_flush_and_shutdown_are_harmless() -> None:
    processor = SessionSpanProcessor()
    assert processor.force_flush() is True
    processor.shutdown()
    processor.shutdown()


def test_interleaved_requests_each_get_their_own_ids(traced: Traced) -> None:
    """What a scope resolved is kept in its own context: 64 requests whose spans interleave."""
    tracer = traced.tracer
    requests = []
    for i in range(64):
        ctx = session(f"s-{i}", user_id=f"u-{i}", tags=[f"t-{i}"]).context(context.Context())
        requests.append(trace.set_span_in_context(tracer.start_span(f"server {i}", ctx), ctx))
    for turn in range(3):
        for i, ctx in enumerate(requests):
            tracer.start_span(f"step {i}.{turn}", context=ctx).end()
    for i in range(64):
        for turn in range(3):
            got = traced.span(f"step {i}.{turn}").attributes or {}
            assert got[LANGFUSE_SESSION_ID] == f"s-{i}"
            assert got["langfuse.user.id"] == f"u-{i}"
            assert got["langfuse.trace.tags"] == (f"t-{i}",)


def test_baggage_changed_inside_a_scope_is_read_anew(traced: Traced) -> None:
    with session("s", user_id="u"):
        inner = baggage.set_baggage("langfuse_session_id", "other")
        scope = context.get_current()
        for turn in range(2):  # alternately: neither reuses what the other resolved
            traced.tracer.start_span(f"changed {turn}", context=inner).end()
            traced.tracer.start_span(f"scope {turn}", context=scope).end()
    for turn in range(2):
        assert traced.session_of(f"changed {turn}") == "other"
        assert traced.session_of(f"scope {turn}") == "s"
