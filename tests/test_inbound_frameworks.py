"""The inbound trust boundary in real frameworks over real HTTP: FastAPI (uvicorn), Flask and
Django, with OpenTelemetry's instrumentation on either side of our middleware, with no guard,
with the guard, with the ``langfuse_baggage`` propagator and with both."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the framework stack is in requirements/test.txt")
pytest.importorskip("django", reason="the framework stack is in requirements/test.txt")
import httpx
from fastapi import FastAPI
from flask import Flask
from opentelemetry import baggage, context, propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from langfuse_otel_sessions import (
    ASGISessionMiddleware,
    SessionBaggagePropagator,
    WSGISessionMiddleware,
    current_session_id,
    install_baggage_guard,
    session,
)

from .conftest import Traced, make_traced
from .django_app import configure_django, django_traced
from .servers import serve_asgi, serve_wsgi

# OpenTelemetry decodes each of these keys to a session key; a plain key too, for good measure.
FORGED = (
    "langfuse%2Esession%2Eid=victim,langfuse_session_id+=victim,session.id+=victim,"
    "user%2Eid=mallory,conversation%5Fid=victim,session.id=victim,tenant=acme"
)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ORDERS = ["ours-inside-otel", "ours-outside-otel"]
SETUPS = ["no-guard", "guard", "langfuse_baggage", "both"]
# A processor with a custom key, that stamps the session on an extra attribute too.
OPTIONS: dict[str, Any] = {
    "session_keys": ("langfuse.session.id", "session.id", "langfuse_session_id", "conversation_id"),
    "also_emit": "openinference",
}


@contextmanager
def propagation(setup: str, *, trust_remote_baggage: bool = False) -> Iterator[Traced]:
    """The global propagator and processor of one setup; restored afterwards (conftest).
    ``trust_remote_baggage``: the processor (and the guard) trust remote baggage, the
    middlewares not unless told (the mixed setup)."""
    baggage_propagator = (
        SessionBaggagePropagator()
        if setup in ("langfuse_baggage", "both")
        else W3CBaggagePropagator()
    )
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), baggage_propagator])
    )
    traced = make_traced(
        guard_remote_baggage=False, trust_remote_baggage=trust_remote_baggage, **OPTIONS
    )
    if setup in ("guard", "both"):
        install_baggage_guard(trust_remote_baggage=trust_remote_baggage)
    yield traced


def outer_app_middleware_asgi(app: Any) -> Any:
    """The app's own middleware, setting the session in-process from its own header."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        own = dict(scope.get("headers") or []).get(b"x-app-session")
        if own is None:
            await app(scope, receive, send)
            return
        token = context.attach(baggage.set_baggage("session.id", own.decode()))
        try:
            await app(scope, receive, send)
        finally:
            context.detach(token)

    return wrapped


def nested_scope(traced: Traced) -> None:
    """What the ``/nested`` routes run: a span in the app's own ``session()`` scope."""
    with (
        session("inner", tags=["inner"], metadata={"k2": "inner"}, environment="inner"),
        traced.tracer.start_as_current_span("nested"),
    ):
        pass


def fastapi_service(traced: Traced, order: str, **options: Any) -> Any:
    app = FastAPI()

    @app.get("/chat")
    async def chat() -> dict[str, str | None]:
        with traced.tracer.start_as_current_span("handler"):
            return {"session": current_session_id()}

    @app.get("/nested")
    async def nested() -> dict[str, str]:
        nested_scope(traced)
        return {}

    if order == ORDERS[0]:  # OTel -> app's own middleware -> ours -> handler
        app.add_middleware(ASGISessionMiddleware, session_header="X-Session-Id", **options)
        app.add_middleware(_Pure, inner=outer_app_middleware_asgi)
        FastAPIInstrumentor.instrument_app(app, tracer_provider=traced.provider)
        return app
    FastAPIInstrumentor.instrument_app(app, tracer_provider=traced.provider)
    return ASGISessionMiddleware(app, **options)


class _Pure:
    """Adapts a function middleware to Starlette's ``add_middleware``."""

    def __init__(self, app: Any, inner: Any) -> None:
        self.app = inner(app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def outer_app_middleware_wsgi(app: Any) -> Any:
    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        own = environ.get("HTTP_X_APP_SESSION")
        if own is None:
            return app(environ, start_response)
        token = context.attach(baggage.set_baggage("session.id", own))
        try:
            return list(app(environ, start_response))
        finally:
            context.detach(token)

    return wrapped


def flask_service(traced: Traced, order: str, **options: Any) -> Any:
    app = Flask(__name__)

    @app.route("/chat")
    def chat() -> dict[str, str | None]:
        with traced.tracer.start_as_current_span("handler"):
            return {"session": current_session_id()}

    @app.route("/nested")
    def nested() -> dict[str, str]:
        nested_scope(traced)
        return {}

    if order == ORDERS[0]:
        app.wsgi_app = outer_app_middleware_wsgi(WSGISessionMiddleware(app.wsgi_app, **options))  # type: ignore[method-assign]
        FlaskInstrumentor().instrument_app(app, tracer_provider=traced.provider)
    else:  # the order the README gives for Flask
        FlaskInstrumentor().instrument_app(app, tracer_provider=traced.provider)
        app.wsgi_app = WSGISessionMiddleware(app.wsgi_app, **options)  # type: ignore[method-assign]
    return app


def django_nested(request: Any) -> Any:
    from django.http import JsonResponse

    nested_scope(django_traced())
    return JsonResponse({})


@contextmanager
def django_service(traced: Traced, order: str, **options: Any) -> Iterator[Any]:
    from django.core.wsgi import get_wsgi_application
    from django.test import override_settings
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    with override_settings(ROOT_URLCONF=configure_django(traced, nested=django_nested)):
        if order == ORDERS[0]:  # OpenTelemetry's WSGI middleware outside ours
            yield OpenTelemetryMiddleware(
                outer_app_middleware_wsgi(WSGISessionMiddleware(get_wsgi_application(), **options)),
                tracer_provider=traced.provider,
            )
            return
        DjangoInstrumentor().instrument(tracer_provider=traced.provider)
        try:  # the README's Django recipe: wsgi.py wraps the application
            yield WSGISessionMiddleware(get_wsgi_application(), **options)
        finally:
            DjangoInstrumentor().uninstrument()


@contextmanager
def served(framework: str, traced: Traced, order: str, **options: Any) -> Iterator[str]:
    """``framework`` served with our middleware (``options``) on the ``order`` side of
    OpenTelemetry's instrumentation; yields the base URL."""
    if framework == "fastapi":
        with serve_asgi(fastapi_service(traced, order, **options)) as url:
            yield url
    elif framework == "flask":
        with serve_wsgi(flask_service(traced, order, **options)) as url:
            yield url
    else:
        with django_service(traced, order, **options) as app, serve_wsgi(app) as url:
            yield url


def attribute_values(traced: Traced) -> set[object]:
    return {value for span in traced.spans() for value in (span.attributes or {}).values()}


def sessions_of(traced: Traced, key: str = "langfuse.session.id") -> set[object]:
    """The ids on the spans of every trace but the forged request's (whose last spans may end
    after its response arrived)."""
    forged_trace = int(TRACEPARENT.split("-")[1], 16)
    return {
        (span.attributes or {}).get(key)
        for span in traced.spans()
        if span.context is not None and span.context.trace_id != forged_trace
    }


@pytest.mark.parametrize("framework", ["fastapi", "flask", "django"])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("setup", SETUPS)
def test_forged_encoded_keys_reach_no_span_and_the_decided_session_wins(
    framework: str, order: str, setup: str
) -> None:
    with propagation(setup) as traced, served(framework, traced, order) as url:
        forged = httpx.get(url + "/chat", headers={"baggage": FORGED, "traceparent": TRACEPARENT})
        assert forged.json() == {"session": None}
        assert "victim" not in attribute_values(traced)
        assert "mallory" not in attribute_values(traced)
        decided = httpx.get(url + "/chat", headers={"baggage": FORGED, "X-Session-Id": "own"})
        assert decided.json() == {"session": "own"}
    assert sessions_of(traced) == {"own"}  # the server span too
    assert sessions_of(traced, "session.id") == {"own"}  # the extra attribute as well


@pytest.mark.parametrize("framework", ["fastapi", "flask", "django"])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("setup", SETUPS)
def test_the_session_decided_from_the_header_reaches_every_span_with_no_warning(
    framework: str, order: str, setup: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    with propagation(setup) as traced, served(framework, traced, order) as url:
        answer = httpx.get(url + "/chat", headers={"X-Session-Id": "own"})
    assert answer.json() == {"session": "own"}
    assert sessions_of(traced) == {"own"}
    assert "Ignoring" not in caplog.text  # nothing came from the client's baggage


@pytest.mark.parametrize("framework", ["fastapi", "flask", "django"])
@pytest.mark.parametrize("setup", SETUPS)
def test_a_session_the_apps_own_outer_middleware_set_survives_ours(
    framework: str, setup: str
) -> None:
    with propagation(setup) as traced, served(framework, traced, ORDERS[0]) as url:
        answer = httpx.get(
            url + "/chat", headers={"X-App-Session": "app-set", "baggage": "session.id=victim"}
        )
    assert answer.json() == {"session": "app-set"}
    assert traced.session_of("handler") == "app-set"
    assert "victim" not in attribute_values(traced)


# Not UTF-8 (one Latin-1 byte): OpenTelemetry's ASGI getter then reads the header with
# ``unicode_escape``, so an escaped key becomes a session key to it.
NOT_UTF8 = (
    b"langfuse.session.id=victim,langfuse\\x2esession\\x2eid=victim,user.id=mallory,z=caf\xe9"
)


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("setup", ["no-guard", "guard"])
def test_a_baggage_header_that_is_not_utf8_forges_nothing_and_keeps_the_decided_session(
    framework: str, order: str, setup: str
) -> None:
    with propagation(setup) as traced, served(framework, traced, order) as url:
        forged = httpx.get(url + "/chat", headers={"baggage": NOT_UTF8})
        assert forged.json() == {"session": None}
        decided = httpx.get(url + "/chat", headers={"baggage": NOT_UTF8, "X-Session-Id": "own"})
        assert decided.json() == {"session": "own"}
    assert "victim" not in attribute_values(traced)
    assert "mallory" not in attribute_values(traced)
    assert sessions_of(traced) - {None, ""} == {"own"}  # "": a blanked forged id


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
@pytest.mark.parametrize("order", ORDERS)
def test_a_middleware_that_fails_lets_no_remote_baggage_through(
    framework: str, order: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(ASGISessionMiddleware, "_decide", fail)  # a fault injected: no API for it
    monkeypatch.setattr(WSGISessionMiddleware, "_decide", fail)
    forged = "langfuse.session.id=victim,langfuse_tags=evil,langfuse_environment=evil,langfuse_metadata_role=evil"
    with propagation("no-guard") as traced, served(framework, traced, order) as url:
        answer = httpx.get(url + "/chat", headers={"baggage": forged})
    assert answer.json() == {"session": None}
    assert "victim" not in sessions_of(traced)
    assert not {"evil", ("evil",)} & attribute_values(traced)  # trace attributes, server span too
