"""Key matching is OpenTelemetry's: for any ``baggage`` header that OpenTelemetry's own W3C
extractor turns into a session or user key, no span gets the value — in every setup: the guard,
the ``langfuse_baggage`` propagator, and the middleware (either side of OpenTelemetry's WSGI
instrumentation) with no guard at all."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from langfuse_otel_sessions import (
    BaggageGuard,
    SessionBaggagePropagator,
    WSGISessionMiddleware,
    current_session_id,
    session,
)
from langfuse_otel_sessions.baggage_keys import known_keys

from .conftest import Traced, make_traced

CUSTOM = {"session_keys": ("conversation_id",), "user_keys": ("account",)}
# A processor reading every key at once, stamping the session on an extra attribute too.
EVERYTHING = {
    "session_keys": ("langfuse.session.id", "session.id", "langfuse_session_id", "conversation_id"),
    "user_keys": ("langfuse.user.id", "user.id", "langfuse_user_id", "account"),
    "also_emit": "openinference",
}
VICTIM = "victim"
StartResponse = Callable[..., Any]

# -- headers an attacker may write ----------------------------------------------------------

_PADDING = st.sampled_from(["", " ", "\t", "+", "%20", "%09", "+%20", " %20\t"])


def _encoded_char(char: str) -> st.SearchStrategy[str]:
    code = f"{ord(char):02X}"
    return st.sampled_from([char, f"%{code}", f"%{code.lower()}"])


@st.composite
def encoded_key(draw: st.DrawFn, keys: tuple[str, ...]) -> str:
    key = draw(st.sampled_from(keys))
    body = "".join(draw(_encoded_char(char)) for char in key)
    return draw(_PADDING) + body + draw(_PADDING)


@st.composite
def forged_header(draw: st.DrawFn, keys: tuple[str, ...]) -> str:
    forged = draw(
        st.lists(
            st.builds(lambda k, p: f"{k}={p}{VICTIM}{p}", encoded_key(keys), _PADDING),
            min_size=1,
            max_size=4,
        )
    )
    benign = draw(st.lists(st.sampled_from(["tenant=acme", "k=v%20w", "x=1;prop"]), max_size=3))
    members = draw(st.permutations([*forged, *benign]))
    separator = draw(st.sampled_from([",", " , ", "\t,"]))
    return separator.join(members)


def otel_reads_a_guarded_key(header: str) -> bool:
    """What the reference implementation makes of the header."""
    extracted = W3CBaggagePropagator().extract({"baggage": header}, Context())
    return any(
        key in known_keys().guarded and value == VICTIM
        for key, value in baggage.get_all(extracted).items()
    )


def stamped_values(traced: Traced) -> set[object]:
    return {value for span in traced.spans() for value in (span.attributes or {}).values()}


DEFAULT_KEYS = ("langfuse.session.id", "session.id", "langfuse_session_id", "user.id")
EVERY_KEY = (*DEFAULT_KEYS, "langfuse.user.id", "langfuse_user_id", "conversation_id", "account")
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# -- the propagator guard and the langfuse_baggage propagator --------------------------------


def default_composite() -> CompositePropagator:
    return CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


GUARDED_SETUPS: dict[str, Callable[[], Any]] = {
    "guard": lambda: BaggageGuard(default_composite()),
    "langfuse_baggage": lambda: CompositePropagator(
        [TraceContextTextMapPropagator(), SessionBaggagePropagator()]
    ),
    "both": lambda: BaggageGuard(
        CompositePropagator([TraceContextTextMapPropagator(), SessionBaggagePropagator()])
    ),
}


@pytest.mark.parametrize("setup", list(GUARDED_SETUPS))
@PROPERTY
@given(header=forged_header(EVERY_KEY))
def test_no_header_opentelemetry_reads_as_a_session_key_reaches_a_span(
    setup: str, header: str
) -> None:
    traced = make_traced(guard_remote_baggage=False, **EVERYTHING)
    if not otel_reads_a_guarded_key(header):
        return
    propagator = GUARDED_SETUPS[setup]()
    context = propagator.extract({"baggage": header})
    assert VICTIM not in baggage.get_all(context).values()
    with (
        traced.tracer.start_as_current_span("server", context=context),
        traced.tracer.start_as_current_span("handler"),
    ):
        assert current_session_id() is None
    assert VICTIM not in stamped_values(traced)


# -- the middleware, with no guard, on both sides of OpenTelemetry's WSGI instrumentation ------


def handler(traced: Traced) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with traced.tracer.start_as_current_span("handler"):
            body = json.dumps({"session": current_session_id()}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    return app


def stacked(traced: Traced, order: str) -> Any:
    if order == "ours-inside":
        return OpenTelemetryMiddleware(
            WSGISessionMiddleware(handler(traced)), tracer_provider=traced.provider
        )
    return WSGISessionMiddleware(
        OpenTelemetryMiddleware(handler(traced), tracer_provider=traced.provider)
    )


def call(app: Any, headers: dict[str, str]) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},
    }
    result = app(environ, lambda *args: None)
    try:
        return json.loads(b"".join(result))  # type: ignore[no-any-return]
    finally:
        getattr(result, "close", lambda: None)()


@contextmanager
def unguarded_default_propagator() -> Iterator[None]:
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(default_composite())
    try:
        yield
    finally:
        propagate.set_global_textmap(before)


@pytest.mark.parametrize("order", ["ours-inside", "ours-outside"])
@PROPERTY
@given(header=forged_header(EVERY_KEY), own=st.booleans())
def test_the_middleware_alone_refuses_every_encoding_and_its_decision_wins(
    order: str, header: str, own: bool
) -> None:
    if not otel_reads_a_guarded_key(header):
        return
    traced = make_traced(guard_remote_baggage=False, **EVERYTHING)
    headers = {"baggage": header}
    if own:
        headers["X-Session-Id"] = "own"
    with unguarded_default_propagator():
        answer = call(stacked(traced, order), headers)
    assert answer == {"session": "own" if own else None}
    assert VICTIM not in stamped_values(traced)
    for key in ("langfuse.session.id", "session.id"):
        sessions = {(s.attributes or {}).get(key) for s in traced.spans()}
        assert sessions == {"own"} if own else sessions <= {None, ""}


# -- the guard keeps OpenTelemetry's semantics ------------------------------------------------

BENIGN_MEMBER = st.from_regex(r"[a-z]{1,6}=[a-zA-Z0-9%]{0,8}", fullmatch=True)


@PROPERTY
@given(members=st.lists(BENIGN_MEMBER, max_size=5), with_traceparent=st.booleans())
def test_the_guard_changes_nothing_else_of_what_extract_returns(
    members: list[str], with_traceparent: bool
) -> None:
    inner = default_composite()
    carrier = {"baggage": ",".join(members)}
    if with_traceparent:
        carrier["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    tracer = make_traced().tracer
    # Called inside a consumer's own span and session, as a message consumer does.
    with tracer.start_as_current_span("poll"), session("consumer-session"):
        guarded = BaggageGuard(inner).extract(carrier)
        plain = inner.extract(carrier)
    assert dict(baggage.get_all(guarded)) == dict(baggage.get_all(plain))
    assert trace.get_current_span(guarded).get_span_context() == (
        trace.get_current_span(plain).get_span_context()
    )


def test_a_message_without_traceparent_is_no_child_of_the_poll_span_and_has_no_session() -> None:
    traced = make_traced()  # installs the guard
    with traced.tracer.start_as_current_span("poll"), session("consumer-session"):
        extracted = propagate.extract({"baggage": "tenant=acme"})
    with traced.tracer.start_as_current_span("process message", context=extracted):
        pass
    message = traced.span("process message")
    assert message.parent is None  # a root, as with OpenTelemetry's own propagators
    assert (message.attributes or {}).get("langfuse.session.id") is None
    assert dict(baggage.get_all(extracted)) == {"tenant": "acme"}


# -- no laundering through an untrusting service: the Langfuse SDK stamps any langfuse_<x> ----

needs_langfuse_sdk = pytest.mark.skipif(
    sys.version_info < (3, 11) or importlib.util.find_spec("langfuse") is None,
    reason="the Langfuse SDK (5, Python 3.11+) is the reference for what a downstream stamps",
)


@st.composite
def langfuse_member(draw: st.DrawFn) -> str:
    """A list-member OpenTelemetry reads as some ``langfuse_<x>`` key other than the root
    claim ``langfuse_trace_id``: known fields, metadata, or any other name, encoded at random."""
    name = draw(
        st.one_of(
            st.sampled_from(["tags", "environment", "release", "prompt_name", "experiment_id"]),
            st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True),
        )
    )
    key = "langfuse_" + name
    assume(key != "langfuse_trace_id")
    body = "".join(draw(_encoded_char(char)) for char in key)
    return f"{draw(_PADDING)}{body}{draw(_PADDING)}=admin"


@st.composite
def laundering_header(draw: st.DrawFn) -> str:
    members = draw(st.lists(langfuse_member(), min_size=1, max_size=4))
    members += draw(st.lists(st.sampled_from(["tenant=acme", "k=v%20w"]), max_size=2))
    return ",".join(draw(st.permutations(members)))


def what_a_langfuse_sdk_stamps(forwarded: str | None) -> dict[str, object]:
    """What the Langfuse SDK's span processor stamps downstream from a ``baggage`` header."""
    from langfuse._client.propagation import _get_propagated_attributes_from_context

    extracted = W3CBaggagePropagator().extract({"baggage": forwarded or ""}, Context())
    return dict(_get_propagated_attributes_from_context(extracted))


def forwarded_by(propagator: Any, header: str) -> str | None:
    """The ``baggage`` header a front service using ``propagator`` sends downstream while
    handling a request that carried ``header``."""
    tracer = make_traced(guard_remote_baggage=False).tracer
    token = otel_context.attach(propagator.extract({"baggage": header}))  # as servers do
    try:
        with tracer.start_as_current_span("server"), tracer.start_as_current_span("client"):
            carrier: dict[str, str] = {}
            propagator.inject(carrier)
    finally:
        otel_context.detach(token)
    return carrier.get("baggage")


@needs_langfuse_sdk
@pytest.mark.parametrize("setup", list(GUARDED_SETUPS))
@PROPERTY
@given(header=laundering_header())
def test_no_langfuse_entry_is_laundered_through_a_guarded_service(setup: str, header: str) -> None:
    forwarded = forwarded_by(GUARDED_SETUPS[setup](), header)
    assert what_a_langfuse_sdk_stamps(forwarded) == {}, forwarded


def forwarding(traced: Traced) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A handler that calls a downstream service inside its own scope (which writes the keys a
    client may forge): what its instrumented client would send."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with (
            session("own", tags=["own"], metadata={"role": "user"}, environment="dev"),
            traced.tracer.start_as_current_span("client"),
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"forwarded": carrier.get("baggage")}).encode()]

    return app


@needs_langfuse_sdk
@pytest.mark.parametrize("order", ["ours-inside", "ours-outside"])
@PROPERTY
@given(header=laundering_header())
def test_the_middleware_alone_launders_no_langfuse_entry(order: str, header: str) -> None:
    traced = make_traced(guard_remote_baggage=False)
    app: Any = forwarding(traced)
    if order == "ours-inside":
        app = OpenTelemetryMiddleware(WSGISessionMiddleware(app), tracer_provider=traced.provider)
    else:
        app = WSGISessionMiddleware(OpenTelemetryMiddleware(app, tracer_provider=traced.provider))
    with unguarded_default_propagator():
        forwarded = call(app, {"baggage": header})["forwarded"]
    # No guard, so no outbound policy either: the scope's own entries go out, the forged never.
    assert "admin" not in what_a_langfuse_sdk_stamps(forwarded).values(), forwarded


@needs_langfuse_sdk
@settings(max_examples=40, deadline=None)
@given(header=laundering_header())
def test_a_trusting_service_still_forwards_every_langfuse_entry(header: str) -> None:
    trusting = BaggageGuard(default_composite(), trust_remote_baggage=True)
    forwarded = forwarded_by(trusting, header)
    plain = what_a_langfuse_sdk_stamps(forwarded_by(default_composite(), header))
    assume(plain)  # OpenTelemetry's extractor kept some entry (it drops invalid ones)
    assert what_a_langfuse_sdk_stamps(forwarded) == plain
