"""The processor's fast path writes ids and trace attributes straight into an SDK span's
attribute mapping: what the span ends up with must be exactly what ``set_attribute`` gives,
whatever the span limits (``max_attributes``, ``max_attribute_length``) and explicit attributes.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from opentelemetry import context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, TracerProvider

from langfuse_otel_sessions import Session, SessionSpanProcessor, session
from langfuse_otel_sessions.attributes import LANGFUSE_SESSION_ID, LANGFUSE_USER_ID
from langfuse_otel_sessions.spans import processor as processor_module

#: The module (the package's ``session`` name is the function).
session_module = importlib.import_module("langfuse_otel_sessions.sessions.session")

LIMITS = {
    "defaults": SpanLimits(),
    "no attributes": SpanLimits(max_attributes=0),
    "one attribute": SpanLimits(max_attributes=1),
    "three attributes": SpanLimits(max_attributes=3),
    "room for exactly the ids": SpanLimits(max_attributes=4),
    "short values": SpanLimits(max_attribute_length=5),
}
PROCESSORS: dict[str, dict[str, Any]] = {
    "default": {},
    "extra keys": {
        "extra_session_attributes": ("app.session",),
        "extra_user_attributes": ("app.user",),
    },
    "also_emit otel": {"also_emit": "otel"},
}
SCOPES: dict[str, Any] = {
    "session only": lambda: session("session-0123456789"),
    "session and user": lambda: session("session-0123456789", user_id="user-1"),
    "generated session": lambda: session(Session.start(), user_id="user-1"),
    "trace attributes": lambda: session(
        "session-0123456789", user_id="user-1", tags=["a", "b"], environment="production"
    ),
}
EXPLICIT = {
    "none": {},
    "others": {"http.method": "GET", "http.route": "/chat"},
    "an extra key": {"app.user": "explicit", "http.method": "GET"},
    "the session": {LANGFUSE_SESSION_ID: "explicit", "app.session": "explicit"},
}


def _span(
    limits: SpanLimits, options: dict[str, Any], scope: Any, explicit: dict[str, str]
) -> ReadableSpan:
    provider = TracerProvider(span_limits=limits)
    provider.add_span_processor(SessionSpanProcessor(guard_remote_baggage=False, **options))
    token = context.attach(context.Context())
    try:
        with scope():
            span = provider.get_tracer("third.party").start_span("child", attributes=explicit)
    finally:
        context.detach(token)
    span.end()
    return span


def _state(span: ReadableSpan) -> tuple[list[tuple[str, object]], int]:
    attributes = span.attributes or {}
    return list(attributes.items()), span.dropped_attributes


@pytest.fixture
def generated_ids_fixed() -> Iterator[None]:
    """The same generated session id in both runs of one case."""
    with mock.patch.object(session_module, "new_session_id", return_value="gen-1"):
        yield


@pytest.mark.usefixtures("generated_ids_fixed")
@pytest.mark.parametrize("explicit", EXPLICIT)
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("options", PROCESSORS)
@pytest.mark.parametrize("limits", LIMITS)
def test_direct_writes_equal_set_attribute(
    limits: str, options: str, scope: str, explicit: str
) -> None:
    args = (LIMITS[limits], PROCESSORS[options], SCOPES[scope], EXPLICIT[explicit])
    fast = _state(_span(*args))
    with mock.patch.object(processor_module, "_direct_store", return_value=None):
        public = _state(_span(*args))
    assert fast == public  # the same keys, values, order and dropped count


def test_a_session_only_scope_needs_no_set_attribute_with_default_limits() -> None:
    """The hot path of the commonest setup (measured: benchmarks/span_processor.py)."""
    calls: list[str] = []
    original = Span.set_attribute

    def counted(self: Span, key: str, value: Any) -> None:
        calls.append(key)
        original(self, key, value)

    with mock.patch.object(Span, "set_attribute", counted):
        span = _span(LIMITS["defaults"], {}, SCOPES["session and user"], {})
    assert calls == []
    assert (span.attributes or {})[LANGFUSE_SESSION_ID] == "session-0123456789"
    assert (span.attributes or {})[LANGFUSE_USER_ID] == "user-1"


def test_limits_that_bite_go_through_set_attribute() -> None:
    calls: list[str] = []
    original = Span.set_attribute

    def counted(self: Span, key: str, value: Any) -> None:
        calls.append(key)
        original(self, key, value)

    with mock.patch.object(Span, "set_attribute", counted):
        span = _span(LIMITS["short values"], {}, SCOPES["session only"], {})
    assert calls == [LANGFUSE_SESSION_ID]
    assert (span.attributes or {})[LANGFUSE_SESSION_ID] == "sessi"
