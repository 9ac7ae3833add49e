"""Tags, metadata, environment, release, version and trace name: scoped, stamped on every span,
validated, and under the same trust boundary as the session."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
from opentelemetry import baggage, context, propagate

from langfuse_otel_sessions import ConfigurationError, WSGISessionMiddleware, session
from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

from .conftest import Traced, make_traced
from .servers import langfuse_sdk_service, serve_wsgi, their_handler_attributes
from .test_trust_boundary import backend, get

__all__ = ["langfuse_receiver"]

FULL: dict[str, Any] = {
    "tags": ["a", "b", "c"],
    "metadata": {"tenant": "acme", "plan": "pro"},
    "environment": "staging",
    "release": "r-42",
    "version": "1.2.3",
    "trace_name": "checkout",
}
STAMPED = {
    "langfuse.trace.tags": ("a", "b", "c"),
    "langfuse.trace.metadata.tenant": "acme",
    "langfuse.trace.metadata.plan": "pro",
    "langfuse.environment": "staging",
    "langfuse.release": "r-42",
    "langfuse.version": "1.2.3",
    "langfuse.trace.name": "checkout",
}


def attributes(traced: Traced, name: str) -> dict[str, object]:
    return dict(traced.span(name).attributes or {})


def test_every_span_of_the_scope_gets_them_third_party_included(traced: Traced) -> None:
    with (
        session("s1", user_id="u1", **FULL),
        traced.tracer.start_as_current_span("ours"),
        traced.third_party.start_as_current_span("theirs"),
    ):
        pass
    for name in ("ours", "theirs"):
        got = attributes(traced, name)
        assert {key: got.get(key) for key in STAMPED} == STAMPED
        assert got["langfuse.session.id"] == "s1"


def test_nested_scopes_merge(traced: Traced) -> None:
    outer = {"tags": ["a"], "metadata": {"k1": "v1", "k2": "v2"}, "environment": "prod"}
    inner = {"tags": ["b", "a"], "metadata": {"k2": "new"}, "environment": "dev"}
    with session("s", **outer), session("s", **inner), traced.tracer.start_as_current_span("inner"):
        pass
    with session("s", **outer), traced.tracer.start_as_current_span("after"):
        pass
    got = attributes(traced, "inner")
    assert got["langfuse.trace.tags"] == ("a", "b")
    assert got["langfuse.trace.metadata.k1"] == "v1"
    assert got["langfuse.trace.metadata.k2"] == "new"
    assert got["langfuse.environment"] == "dev"
    assert attributes(traced, "after")["langfuse.environment"] == "prod"
    assert attributes(traced, "after")["langfuse.trace.tags"] == ("a",)


def test_an_explicit_span_attribute_wins(traced: Traced) -> None:
    with session("s", environment="prod", metadata={"k": "scope"}):
        explicit = {"langfuse.environment": "canary", "langfuse.trace.metadata.k": "span"}
        with traced.tracer.start_as_current_span("span", attributes=explicit):
            pass
    got = attributes(traced, "span")
    assert got["langfuse.environment"] == "canary"
    assert got["langfuse.trace.metadata.k"] == "span"


@pytest.mark.parametrize("key", ["deployment.environment.name", "deployment.environment"])
def test_a_span_s_own_deployment_environment_wins_over_the_scope_s(
    traced: Traced, key: str
) -> None:
    """Langfuse reads ``langfuse.environment`` first: stamping it would hide the span's own."""
    with session("s", environment="prod"):
        traced.tracer.start_span("own", attributes={key: "staging"}).end()
        traced.tracer.start_span("none").end()
    assert "langfuse.environment" not in attributes(traced, "own")
    assert attributes(traced, "own")[key] == "staging"
    assert attributes(traced, "none")["langfuse.environment"] == "prod"


@pytest.mark.parametrize(
    "bad",
    [
        {"environment": "prod env"},  # Langfuse would store "default"
        {"environment": "langfuse"},
        {"environment": "prød"},
        {"release": "r" * 201},
        {"version": ""},
        {"tags": "a,b"},
        {"tags": ["a,b"]},
        {"tags": [1]},
        {"metadata": {"k": 1}},
        {"metadata": {"k k": "v"}},
        {"trace_name": "t" * 201},
    ],
)
def test_a_bad_explicit_argument_raises(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        session("s", **bad)


def test_bad_baggage_values_are_skipped_with_a_warning_never_raised(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    ctx = baggage.set_baggage("langfuse_environment", "LANGFUSE")
    ctx = baggage.set_baggage("langfuse_release", "r" * 500, ctx)
    ctx = baggage.set_baggage("langfuse_metadata_ok", "fine", ctx)
    ctx = baggage.set_baggage("langfuse_tags", object(), ctx)
    token = context.attach(ctx)
    try:
        with traced.tracer.start_as_current_span("span"):
            pass
    finally:
        context.detach(token)
    got = attributes(traced, "span")
    assert "langfuse.environment" not in got
    assert "langfuse.release" not in got
    assert "langfuse.trace.tags" not in got
    assert got["langfuse.trace.metadata.ok"] == "fine"
    assert "Not stamping trace attributes" in caplog.text


FORGED = (
    "langfuse_tags=forged,langfuse_environment=prod,langfuse_release=evil,"
    "langfuse_metadata_admin=true,langfuse%5Fmetadata%5Frole=root,langfuse_trace_name=x,"
    "tenant=acme"
)
FORGED_KEYS = (
    "langfuse.trace.tags",
    "langfuse.environment",
    "langfuse.release",
    "langfuse.trace.metadata.admin",
    "langfuse.trace.metadata.role",
    "langfuse.trace.name",
)


def test_remote_trace_attributes_are_withheld_by_default() -> None:
    traced = make_traced()
    with serve_wsgi(backend(traced)) as url:
        answer = get(url, {"baggage": FORGED})
    assert answer["tenant"] == "acme"  # other baggage still passes
    for span in traced.spans():
        assert not set(FORGED_KEYS) & set(span.attributes or {})


def test_remote_trace_attributes_are_stamped_when_trusted() -> None:
    traced = make_traced(trust_remote_baggage=True)
    with serve_wsgi(backend(traced)) as url:
        get(url, {"baggage": FORGED})
    got = attributes(traced, "handler")
    assert got["langfuse.trace.tags"] == ("forged",)
    assert got["langfuse.trace.metadata.role"] == "root"
    assert got["langfuse.environment"] == "prod"


def test_across_a_real_http_hop_between_two_of_our_services() -> None:
    downstream = make_traced(trust_remote_baggage=True)
    upstream = make_traced(propagate_session_to=["*"])  # the outbound opt-in
    with serve_wsgi(backend(downstream)) as url:
        with session("s", **FULL), upstream.tracer.start_as_current_span("call"):
            headers: dict[str, str] = {}
            propagate.inject(headers)
        get(url, headers)
    got = attributes(downstream, "handler")
    assert {key: got.get(key) for key in STAMPED} == STAMPED


def test_nothing_leaves_the_process_without_the_outbound_opt_in() -> None:
    traced = make_traced()
    with session("s", **FULL), traced.tracer.start_as_current_span("call"):
        baggage_set = baggage.set_baggage("tenant", "acme")
        headers: dict[str, str] = {}
        propagate.inject(headers, baggage_set)
    assert headers.get("baggage") == "tenant=acme"  # the app's own entry still propagates


needs_langfuse = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="langfuse 5 needs Python 3.11+"
)


@needs_langfuse
def test_a_langfuse_sdk_caller_s_attributes_reach_our_trusted_service() -> None:
    langfuse = pytest.importorskip("langfuse")
    ours = make_traced(trust_remote_baggage=True)
    with serve_wsgi(backend(ours)) as url:
        with langfuse.propagate_attributes(
            session_id="lf-s",
            tags=["a", "b"],
            metadata={"tenant": "acme"},
            version="1.2.3",
            trace_name="checkout",
            as_baggage=True,
        ):
            headers: dict[str, str] = {}
            propagate.inject(headers)
        get(url, headers)
    got = attributes(ours, "handler")
    assert got["langfuse.session.id"] == "lf-s"
    assert got["langfuse.trace.tags"] == ("a", "b")
    # the v5 SDK JSON-encodes metadata values (strings too); passed on as it wrote them
    assert got["langfuse.trace.metadata.tenant"] == '"acme"'
    assert got["langfuse.version"] == "1.2.3"
    assert got["langfuse.trace.name"] == "checkout"


@needs_langfuse
def test_a_langfuse_sdk_service_reads_the_attributes_we_send() -> None:
    pytest.importorskip("langfuse")
    # our side, opted in to send them; trusting, as the SDK service shares this process's guard
    make_traced(propagate_session_to=["*"], trust_remote_baggage=True)
    with langfuse_sdk_service() as (url, seen):
        with session("s", **FULL):
            headers: dict[str, str] = {}
            propagate.inject(headers)
        get(url, headers)
    got = their_handler_attributes(seen)
    assert got["langfuse.trace.tags"] == "a,b,c"  # Langfuse reads comma-separated tags
    assert got["langfuse.trace.metadata.tenant"] == "acme"
    assert got["langfuse.environment"] == "staging"
    assert "langfuse.release" not in got  # the SDK propagates no release (ours only)
    assert got["langfuse.version"] == "1.2.3"
    assert got["langfuse.trace.name"] == "checkout"


NORMALISED = [("Production", "production"), ("langfuse-prod", "prod"), ("e" * 41, "e" * 40)]


@needs_langfuse
@pytest.mark.parametrize(("given", "stored"), NORMALISED)
def test_an_environment_is_stamped_and_sent_as_langfuse_stores_it(given: str, stored: str) -> None:
    """What Langfuse's server would normalise is normalised at the call, so our spans, the
    baggage and a Langfuse SDK service downstream (which drops such values) all agree."""
    pytest.importorskip("langfuse")
    ours = make_traced(propagate_session_to=["*"], trust_remote_baggage=True)
    with langfuse_sdk_service() as (url, seen):
        with session("s", environment=given), ours.tracer.start_as_current_span("call"):
            headers: dict[str, str] = {}
            propagate.inject(headers)
        get(url, headers)
    assert attributes(ours, "call")["langfuse.environment"] == stored
    assert their_handler_attributes(seen)["langfuse.environment"] == stored


@pytest.mark.parametrize(("given", "stored"), NORMALISED)
def test_the_middleware_takes_an_environment_langfuse_would_normalise(
    given: str, stored: str
) -> None:
    traced = make_traced()
    seen: list[object] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with traced.tracer.start_as_current_span("handler"):
            seen.append(baggage.get_baggage("langfuse_environment"))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    with serve_wsgi(WSGISessionMiddleware(app, trace_attributes={"environment": given})) as url:
        get(url, {"X-Session-Id": "s"})
    assert attributes(traced, "handler")["langfuse.environment"] == stored
    assert seen == [stored]


def test_span_limits_still_apply() -> None:
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider

    from langfuse_otel_sessions import SessionSpanProcessor

    provider = TracerProvider(span_limits=SpanLimits(max_attributes=3, max_attribute_length=4))
    provider.add_span_processor(SessionSpanProcessor())
    with session("s", **FULL):
        span = provider.get_tracer("t").start_span("limited")
    span.end()
    got = dict(span.attributes or {})
    assert len(got) == 3
    assert all(len(v) <= 4 for v in got.values() if isinstance(v, str))


def test_forged_metadata_blanked_on_the_server_span_does_not_hide_the_app_s_value(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    """FastAPI's ``add_middleware`` order with no guard: OpenTelemetry stamps a client's forged
    ``langfuse_metadata_x`` on the server span, the middleware blanks it, and the app's own
    ``session(metadata=...)`` is what Langfuse v4 shows (it takes metadata from the root)."""
    pytest.importorskip("fastapi", reason="the framework stack is in requirements/test.txt")
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    from langfuse_otel_sessions import ASGISessionMiddleware, current_session_id

    from .servers import serve_asgi
    from .test_inbound_frameworks import propagation

    with propagation("no-guard") as traced:
        traced.export_to(langfuse_receiver)
        app = FastAPI()

        @app.get("/chat")
        async def chat() -> dict[str, str]:
            with (
                session(current_session_id() or "none", metadata={"x": "real"}),
                traced.tracer.start_as_current_span("handler"),
            ):
                return {}

        app.add_middleware(ASGISessionMiddleware)
        FastAPIInstrumentor.instrument_app(app, tracer_provider=traced.provider)
        with serve_asgi(app) as url:
            headers = {"X-Session-Id": "s-1", "baggage": "langfuse_metadata_x=forged"}
            get(url + "/chat", headers)
        root_arrived = langfuse_receiver.wait_for(
            lambda: any(span.parent_span_id is None for span in langfuse_receiver.spans())
        )
    assert root_arrived
    assert "forged" not in {v for s in traced.spans() for v in (s.attributes or {}).values()}
    (shown,) = langfuse_receiver.traces().values()
    assert shown.metadata.get("x") == "real"
