"""One source of truth for session/user keys: custom keys are guarded whatever the order things
are built in, ``session()`` writes a key the processor reads, ``current_session_id()`` says what
a span gets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry import baggage, propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from langfuse_otel_sessions import (
    BaggageGuard,
    SessionBaggagePropagator,
    SessionSpanProcessor,
    current_session_id,
    current_user_id,
    install_baggage_guard,
    session,
)
from langfuse_otel_sessions.baggage_keys import guarded_keys, known_keys, member_key

from .conftest import Traced, make_traced

CUSTOM = {"session_keys": ("conversation_id",), "user_keys": ("account",)}
FORGED_CUSTOM = "conversation_id=someone-elses-session,account=mallory,tenant=acme"


def all_values(traced: Traced) -> set[object]:
    return {value for span in traced.spans() for value in (span.attributes or {}).values()}


@pytest.mark.parametrize("guard_first", [True, False], ids=["guard-first", "processor-first"])
def test_keys_given_as_arguments_are_guarded_in_any_construction_order(guard_first: bool) -> None:
    if guard_first:
        install_baggage_guard()
    traced = make_traced(**CUSTOM)
    context = propagate.extract({"baggage": FORGED_CUSTOM})
    assert dict(baggage.get_all(context)) == {"tenant": "acme"}
    with traced.tracer.start_as_current_span("server", context=context):
        pass
    assert "someone-elses-session" not in all_values(traced)
    assert "mallory" not in all_values(traced)


def test_the_langfuse_baggage_propagator_guards_keys_of_a_processor_built_later() -> None:
    propagator = SessionBaggagePropagator()
    make_traced(**CUSTOM)
    context = propagator.extract({"baggage": FORGED_CUSTOM})
    assert dict(baggage.get_all(context)) == {"tenant": "acme"}


def test_keys_from_the_environment_are_guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_OTEL_SESSION_BAGGAGE_KEYS", "conversation_id")
    guard = BaggageGuard(W3CBaggagePropagator())
    context = guard.extract({"baggage": FORGED_CUSTOM})
    assert "conversation_id" not in baggage.get_all(context)


def test_session_writes_the_key_a_custom_processor_reads_and_current_session_id_agrees() -> None:
    traced = make_traced(**CUSTOM)
    with session("conv-42", user_id="acct-1"):
        assert current_session_id() == "conv-42"
        assert current_user_id() == "acct-1"
        with traced.tracer.start_as_current_span("step"):
            pass
    assert traced.session_of("step") == "conv-42"
    assert traced.user_of("step") == "acct-1"


def test_current_session_id_reads_with_the_processors_keys() -> None:
    make_traced(**CUSTOM)
    # A key the processor does not read is not "the session in force".
    context = baggage.set_baggage("langfuse_session_id", "not-read")
    assert current_session_id(context) is None
    context = baggage.set_baggage("conversation_id", "read", context)
    assert current_session_id(context) == "read"


def test_current_session_id_skips_an_id_longer_than_langfuses_limit() -> None:
    context = baggage.set_baggage("langfuse_session_id", "x" * 201)
    assert current_session_id(context) is None


def test_a_session_scope_outranks_every_known_session_key() -> None:
    make_traced(**CUSTOM)
    stale = baggage.set_baggage(
        "session.id", "stale", baggage.set_baggage("conversation_id", "old")
    )
    entries = baggage.get_all(session("fresh").context(stale))
    assert dict(entries) == {"conversation_id": "fresh"}


def test_two_processors_with_different_keys_both_stamp_a_session_scope() -> None:
    default = make_traced()
    custom = make_traced(**CUSTOM)
    assert set(known_keys().session_writes) == {"langfuse_session_id", "conversation_id"}
    with (
        session("both"),
        default.tracer.start_as_current_span("a"),
        custom.tracer.start_as_current_span("b"),
    ):
        pass
    assert default.session_of("a") == "both"
    assert custom.session_of("b") == "both"


def test_a_processor_that_is_gone_no_longer_counts() -> None:
    import gc

    processor = SessionSpanProcessor(**CUSTOM)  # type: ignore[arg-type]
    assert "conversation_id" in known_keys().guarded
    del processor
    gc.collect()
    assert "conversation_id" not in known_keys().guarded


@pytest.mark.parametrize(
    ("member", "key"),
    [
        ("session.id=x", "session.id"),
        ("session%2Eid=x", "session.id"),
        ("session.id+=x", "session.id"),
        (" \tsession.id =x", "session.id"),
        ("%20session.id%09=x", "session.id"),
        ("langfuse%5Fsession%5Fid=x", "langfuse_session_id"),
        ("novalue", None),
    ],
)
def test_member_keys_decode_like_opentelemetry(member: str, key: str | None) -> None:
    assert member_key(member) == key
    # OpenTelemetry's extractor reads that key or (older releases, for padded keys) none.
    extracted = W3CBaggagePropagator().extract({"baggage": member})
    assert set(baggage.get_all(extracted)) <= {key}


def test_the_composite_default_stays_opentelemetrys_for_other_entries() -> None:
    inner = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    carrier: dict[str, Any] = {"baggage": "tenant=acme,k=v%20w"}
    assert baggage.get_all(BaggageGuard(inner).extract(carrier)) == baggage.get_all(
        inner.extract(carrier)
    )
    assert json.dumps(dict(baggage.get_all(inner.extract(carrier))))


def test_current_session_id_reports_a_withheld_id_a_trusting_processor_stamps() -> None:
    install_baggage_guard()
    traced = make_traced(trust_remote_baggage=True)
    context = propagate.extract({"baggage": "session.id=upstream,user.id=u-up"})
    assert baggage.get_baggage("session.id", context) is None  # withheld, not stamped by others
    assert (current_session_id(context), current_user_id(context)) == ("upstream", "u-up")
    with traced.tracer.start_as_current_span("server", context=context):
        pass
    assert (traced.session_of("server"), traced.user_of("server")) == ("upstream", "u-up")


def test_the_cached_keys_follow_every_change_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """known_keys()/guarded_keys() are cached on the variables' values, read cheaply: a
    variable set, changed or removed after a first call is seen on the next one."""
    assert "conversation_id" not in known_keys().session
    assert "conversation_id" not in guarded_keys()
    monkeypatch.setenv("LANGFUSE_OTEL_SESSION_BAGGAGE_KEYS", "conversation_id")
    assert "conversation_id" in known_keys().session
    assert "conversation_id" in guarded_keys()
    monkeypatch.setenv("LANGFUSE_OTEL_SESSION_BAGGAGE_KEYS", "thread_id")
    assert "conversation_id" not in known_keys().session
    assert "thread_id" in guarded_keys()
    monkeypatch.setenv("LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE", "true")
    assert known_keys().reader.trust_remote
    monkeypatch.delenv("LANGFUSE_OTEL_SESSION_BAGGAGE_KEYS")
    assert "thread_id" not in known_keys().session
    assert "thread_id" not in guarded_keys()
