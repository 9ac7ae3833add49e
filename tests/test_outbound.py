"""Nothing leaks out by default: a real instrumented httpx client calls a loopback "third party"
that records the headers it receives."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from opentelemetry import baggage, context
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import SpanKind

from langfuse_otel_sessions import ConfigurationError, WSGISessionMiddleware, session
from langfuse_otel_sessions.boundary.propagator import SessionBaggagePropagator

from .conftest import Traced, make_traced
from .servers import serve_wsgi


def third_party(received: list[str | None]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        received.append(environ.get("HTTP_BAGGAGE"))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"ok": True}).encode()]

    return app


@contextmanager
def instrumented_client(traced: Traced) -> Iterator[httpx.Client]:
    client = httpx.Client()
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=traced.provider)
    try:
        yield client
    finally:
        HTTPXClientInstrumentor.uninstrument_client(client)
        client.close()


def baggage_sent(traced: Traced, url: str, received: list[str | None]) -> str:
    with instrumented_client(traced) as client:
        client.get(url)
    return received.pop() or ""


def test_session_and_user_from_session_are_not_sent_by_default(traced: Traced) -> None:
    received: list[str | None] = []
    with serve_wsgi(third_party(received)) as url, session("conv-1", user_id="alice@example.com"):
        sent = baggage_sent(traced, url, received)
    assert "conv-1" not in sent
    assert "alice" not in sent
    assert "langfuse_session_id" not in sent


def test_the_apps_own_baggage_still_propagates(traced: Traced) -> None:
    received: list[str | None] = []
    with serve_wsgi(third_party(received)) as url:
        token = context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            with session("conv-1"):
                inside = baggage_sent(traced, url, received)
            own = baggage.set_baggage("langfuse_session_id", "app-decided")
            token2 = context.attach(own)
            try:
                app_session = baggage_sent(traced, url, received)
            finally:
                context.detach(token2)
        finally:
            context.detach(token)
    assert inside == "tenant=acme"
    assert "langfuse_session_id=app-decided" in app_session


@pytest.mark.parametrize(
    ("own", "scope", "expected", "opted_in"),
    [
        # tags add up in the process; out goes the app's own entry (or all, opted in)
        (("langfuse_tags", "app-own"), {"tags": ["pkg"]}, "langfuse_tags=app-own", "app-own,pkg"),
        (
            ("langfuse_metadata_tenant", "app-own"),
            {"metadata": {"tenant": "pkg"}},
            "langfuse_metadata_tenant=app-own",
            "pkg",
        ),
        (
            ("langfuse_environment", "staging"),
            {"environment": "prod"},
            "langfuse_environment=staging",
            "prod",
        ),
        (
            ("langfuse_session_id", "app-decided"),
            {},
            "langfuse_session_id=app-decided",
            "conv-1",
        ),
    ],
    ids=["tags", "metadata", "environment", "session"],
)
@pytest.mark.parametrize("nested", [False, True], ids=["one-scope", "nested-scopes"])
def test_the_apps_own_entry_keeps_propagating_under_a_scope_writing_its_key(
    own: tuple[str, str], scope: dict[str, Any], expected: str, opted_in: str, nested: bool
) -> None:
    """An entry the app wrote goes out as the app wrote it, also while a ``session()`` scope
    wrote the same key over it (the scope's value stays in the process unless opted in)."""
    received: list[str | None] = []
    key, _ = own
    with serve_wsgi(third_party(received)) as url:
        for options, wanted in (({}, expected), ({"propagate_session_to": ["*"]}, None)):
            traced = make_traced(**options)  # the second opts the global guard in
            token = context.attach(baggage.set_baggage(*own))
            try:
                with session("conv-1", **scope):
                    if nested:
                        with session("conv-1", **scope):
                            sent = baggage_sent(traced, url, received)
                    else:
                        sent = baggage_sent(traced, url, received)
            finally:
                context.detach(token)
            members = dict(member.split("=", 1) for member in sent.split(",") if member)
            if wanted is not None:
                assert sent == wanted
            else:  # opted in: the scope's value (tags: the app's and the scope's)
                assert unquote(members[key]) == opted_in


def test_the_session_the_middleware_decided_is_not_sent(traced: Traced) -> None:
    received: list[str | None] = []
    with serve_wsgi(third_party(received)) as third:

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            sent = baggage_sent(traced, third, received)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [sent.encode()]

        front = WSGISessionMiddleware(app, user_header="X-User-Id")
        with serve_wsgi(front) as url:
            answer = httpx.get(url, headers={"X-Session-Id": "s-9", "X-User-Id": "bob"})
    assert answer.text == ""


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_opting_in_sends_them(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "environment":
        monkeypatch.setenv("LANGFUSE_OTEL_PROPAGATE_SESSION_TO", "*")
        traced = make_traced()
    else:
        traced = make_traced(propagate_session_to=["*"])
    received: list[str | None] = []
    with serve_wsgi(third_party(received)) as url, session("conv-1", user_id="alice"):
        sent = baggage_sent(traced, url, received)
    assert sorted(sent.split(",")) == ["langfuse_session_id=conv-1", "langfuse_user_id=alice"]


def test_opting_in_for_listed_hosts_only(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[str | None] = []
    with serve_wsgi(third_party(received)) as listed, serve_wsgi(third_party(received)) as other:
        monkeypatch.setenv("LANGFUSE_OTEL_PROPAGATE_SESSION_TO", f"api.internal, {listed[7:]}")
        traced = make_traced()
        with session("conv-1"):
            assert baggage_sent(traced, listed, received) == "langfuse_session_id=conv-1"
            assert baggage_sent(traced, other, received) == ""  # same host, another port


@pytest.mark.parametrize(
    ("listed", "attributes", "allowed"),
    [
        ("api.internal", {"url.full": "https://API.internal/v1"}, True),
        ("api.internal:443", {"url.full": "https://api.internal/v1"}, True),
        ("api.internal:8443", {"url.full": "https://api.internal/v1"}, False),
        ("*.svc.local", {"http.url": "http://back.ns.svc.local:8000/"}, True),
        ("*.svc.local", {"http.url": "http://svc.local.evil.com/"}, False),
        ("api.internal", {"server.address": "api.internal", "server.port": 80}, False),  # no URL
        ("[::1]:8000", {"url.full": "http://[::1]:8000/"}, True),
        ("api.internal", {}, False),  # destination unknown: not on any list
        ("*", {}, True),
    ],
)
def test_destinations_are_read_from_the_client_span(
    traced: Traced, listed: str, attributes: dict[str, Any], allowed: bool
) -> None:
    headers: dict[str, str] = {}
    propagator = SessionBaggagePropagator(propagate_session_to=[listed])
    client = traced.tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes=attributes)
    with session("conv-1"), client:
        propagator.inject(headers)
    assert ("baggage" in headers) is allowed


@pytest.mark.parametrize("kind", [SpanKind.SERVER, SpanKind.INTERNAL, SpanKind.CONSUMER])
def test_only_a_client_span_names_a_destination(traced: Traced, kind: SpanKind) -> None:
    headers: dict[str, str] = {}
    propagator = SessionBaggagePropagator(propagate_session_to=["api.internal"])
    span = traced.tracer.start_as_current_span(
        "GET", kind=kind, attributes={"url.full": "http://api.internal/"}
    )
    with session("conv-1"), span:
        propagator.inject(headers)
    assert "baggage" not in headers


@pytest.mark.skipif(sys.version_info < (3, 11), reason="langfuse 5 needs Python 3.11+")
def test_langfuse_sdk_baggage_is_the_apps_decision(traced: Traced) -> None:
    langfuse = pytest.importorskip("langfuse")
    received: list[str | None] = []
    lf_scope = langfuse.propagate_attributes(session_id="lf-1", as_baggage=True)
    with serve_wsgi(third_party(received)) as url, lf_scope:
        sent = baggage_sent(traced, url, received)
    assert "langfuse_session_id=lf-1" in sent


@pytest.mark.parametrize("bad", ["api.internal", ["http://api.internal/"], ["a b"], [""]])
def test_a_bad_argument_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="propagate_session_to"):
        make_traced(propagate_session_to=bad)


def test_a_bad_environment_value_warns_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LANGFUSE_OTEL_PROPAGATE_SESSION_TO", "https://api.internal")
    traced = make_traced()
    received: list[str | None] = []
    with serve_wsgi(third_party(received)) as url, session("conv-1"):
        assert baggage_sent(traced, url, received) == ""
    assert "LANGFUSE_OTEL_PROPAGATE_SESSION_TO" in caplog.text


@pytest.mark.parametrize("trusting", [False, True])
def test_the_session_decided_outside_the_server_instrumentation_is_not_sent(
    monkeypatch: pytest.MonkeyPatch, trusting: bool
) -> None:
    """Our middleware outside OpenTelemetry's: the decided ids reach the server context through
    the rewritten ``baggage`` header, and are still this package's, so they stay in."""
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    if trusting:
        monkeypatch.setenv("LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE", "true")
    traced = make_traced()
    received: list[str | None] = []
    with serve_wsgi(third_party(received)) as third:

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            sent = baggage_sent(traced, third, received)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [sent.encode()]

        instrumented = OpenTelemetryMiddleware(app, tracer_provider=traced.provider)
        front = WSGISessionMiddleware(instrumented, user_header="X-User-Id")
        with serve_wsgi(front) as url:
            answer = httpx.get(
                url, headers={"X-Session-Id": "s-9", "X-User-Id": "bob", "baggage": "tenant=a"}
            )
    assert answer.text == "tenant=a"
    assert traced.session_of("GET /") == "s-9"


@pytest.mark.parametrize("key", ["session.id", "langfuse.session.id", "user.id"])
@pytest.mark.parametrize("nested", [False, True], ids=["one-scope", "nested-scopes"])
def test_the_apps_own_rival_session_entry_keeps_propagating_under_a_scope(
    key: str, nested: bool
) -> None:
    """A scope removes the app's ``session.id`` (or another key the processor reads) inside the
    process, so that it does not outrank the scope's id; outgoing requests where not opted in
    still carry it, as they would without the package."""
    traced = make_traced()
    received: list[str | None] = []
    with serve_wsgi(third_party(received)) as url:
        token = context.attach(baggage.set_baggage(key, "app-s"))
        try:
            with session("pkg-s", user_id="pkg-u"):
                if nested:
                    with session("pkg-s2"):
                        sent = baggage_sent(traced, url, received)
                else:
                    sent = baggage_sent(traced, url, received)
                with traced.tracer.start_as_current_span("inside"):
                    pass
        finally:
            context.detach(token)
    assert sent == f"{key}=app-s"
    stamped = traced.span("inside").attributes or {}
    assert stamped["langfuse.session.id"] == "pkg-s"
    assert stamped["langfuse.user.id"] == "pkg-u"


def test_a_listed_client_span_opens_the_gate_for_its_own_request_only() -> None:
    """A listed request's CLIENT span is still current in ``requests``' response hook: an
    ``inject`` by hand there, sent to a host not on the list, carries no ids; the listed host
    (also through a redirect, which ``requests`` follows inside the first span) still gets them."""
    import urllib.request

    import requests
    from opentelemetry import propagate
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    from langfuse_otel_sessions import SessionSpanProcessor, configure

    listed_rx: list[str | None] = []
    other_rx: list[str | None] = []

    def redirecting(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/away":
            start_response("302 Found", [("Location", "/")])
            return [b""]
        return third_party(listed_rx)(environ, start_response)

    with serve_wsgi(redirecting) as listed, serve_wsgi(third_party(other_rx)) as other:

        def hand_made_call(span: Any, request: Any, response: Any) -> None:
            headers: dict[str, str] = {}
            propagate.inject(headers)
            urllib.request.urlopen(urllib.request.Request(other, headers=headers)).read()

        provider = TracerProvider()
        processor = SessionSpanProcessor(propagate_session_to=[listed.removeprefix("http://")])
        configure(provider, export=False, processor=processor)
        instrumentor = RequestsInstrumentor()
        instrumentor.instrument(tracer_provider=provider, response_hook=hand_made_call)
        try:
            with session("conv-3"):
                requests.get(listed, timeout=10)
                requests.get(f"{listed}/away", timeout=10)
        finally:
            instrumentor.uninstrument()
    assert listed_rx == ["langfuse_session_id=conv-3"] * 2
    assert len(other_rx) == 2  # one per response hook
    assert not any("conv-3" in (sent or "") for sent in other_rx), other_rx


def test_httpx_sync_and_async_carry_the_ids_to_a_listed_host_behind_both_propagators() -> None:
    """The guard wrapping ``langfuse_baggage`` (both apply the policy, one injection each)."""
    import asyncio

    from opentelemetry import propagate
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    received: list[str | None] = []
    with serve_wsgi(third_party(received)) as listed:
        hosts = [listed.removeprefix("http://")]
        inner = SessionBaggagePropagator(propagate_session_to=hosts)
        propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator(), inner]))
        traced = make_traced(propagate_session_to=hosts)

        async def call_async() -> None:
            async with httpx.AsyncClient() as client:
                HTTPXClientInstrumentor.instrument_client(client, tracer_provider=traced.provider)
                await client.get(listed)

        with session("conv-4"):
            sync = baggage_sent(traced, listed, received)
            asyncio.run(call_async())
    assert [sync, received.pop()] == ["langfuse_session_id=conv-4"] * 2
