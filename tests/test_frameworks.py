"""The middlewares in real frameworks, behind OpenTelemetry's own instrumentation, over real HTTP:
FastAPI on uvicorn, Flask and Django on a WSGI server."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the framework stack is in requirements/test.txt")
import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from flask import Flask, Response
from opentelemetry import propagate
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.flask import FlaskInstrumentor

from langfuse_otel_sessions import (
    ASGISessionMiddleware,
    WSGISessionMiddleware,
    current_session_id,
    current_user_id,
)
from langfuse_otel_sessions.attributes import LANGFUSE_SESSION_ID

from .conftest import Traced, make_traced
from .django_app import configure_django
from .servers import serve_asgi, serve_wsgi

FORGED = "langfuse.session.id=victim,session.id=victim,langfuse_session_id=victim,user.id=mallory"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ORDERS = ["session-middleware-inside-otel", "session-middleware-outside-otel"]


def fastapi_service(traced: Traced, order: str, **options: Any) -> Any:
    app = FastAPI()
    tracer = traced.tracer

    @app.get("/chat")
    async def chat() -> dict[str, str | None]:
        with tracer.start_as_current_span("handler"):
            await asyncio.sleep(0)
            return {"session": current_session_id(), "user": current_user_id()}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> Any:
            for i in range(3):
                with tracer.start_as_current_span(f"chunk {i}"):
                    yield b"x"
                await asyncio.sleep(0)

        return StreamingResponse(chunks())

    if order == ORDERS[0]:
        app.add_middleware(ASGISessionMiddleware, **options)
        FastAPIInstrumentor.instrument_app(app, tracer_provider=traced.provider)
        return app
    FastAPIInstrumentor.instrument_app(app, tracer_provider=traced.provider)
    return ASGISessionMiddleware(app, **options)


def flask_service(traced: Traced, order: str, **options: Any) -> Any:
    app = Flask(__name__)
    tracer = traced.tracer

    @app.route("/chat")
    def chat() -> dict[str, str | None]:
        with tracer.start_as_current_span("handler"):
            return {"session": current_session_id(), "user": current_user_id()}

    @app.route("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            for i in range(3):
                with tracer.start_as_current_span(f"chunk {i}"):
                    yield "x"

        return Response(chunks())

    if order == ORDERS[0]:
        app.wsgi_app = WSGISessionMiddleware(app.wsgi_app, **options)  # type: ignore[method-assign]
        FlaskInstrumentor().instrument_app(app, tracer_provider=traced.provider)
    else:
        FlaskInstrumentor().instrument_app(app, tracer_provider=traced.provider)
        app.wsgi_app = WSGISessionMiddleware(app.wsgi_app, **options)  # type: ignore[method-assign]
    return app


SERVICES = {"fastapi": (fastapi_service, serve_asgi), "flask": (flask_service, serve_wsgi)}


@pytest.fixture(params=list(SERVICES))
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=ORDERS)
def order(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def served(framework: str, traced: Traced, order: str, **options: Any) -> Any:
    build, serve = SERVICES[framework]
    return serve(build(traced, order, **options))


def all_attribute_values(traced: Traced) -> set[object]:
    return {value for span in traced.spans() for value in (span.attributes or {}).values()}


def test_every_span_of_the_request_carries_the_session_server_span_included(
    framework: str, order: str
) -> None:
    traced = make_traced()
    with served(framework, traced, order, user_header="X-User-Id") as url:
        answer = httpx.get(
            url + "/chat", headers={"X-Session-Id": "s-1", "X-User-Id": "u-1"}
        ).json()
    assert answer == {"session": "s-1", "user": "u-1"}
    spans = traced.spans()
    server = [s for s in spans if s.kind.name == "SERVER"]
    assert len(server) == 1
    assert len(spans) >= 2
    for span in spans:
        assert (span.attributes or {})[LANGFUSE_SESSION_ID] == "s-1", span.name
        assert (span.attributes or {})["langfuse.user.id"] == "u-1", span.name


def test_a_streamed_responses_spans_carry_the_session(framework: str, order: str) -> None:
    traced = make_traced()
    with served(framework, traced, order) as url:
        assert httpx.get(url + "/stream", headers={"X-Session-Id": "streamed"}).text == "xxx"
    for i in range(3):
        assert traced.session_of(f"chunk {i}") == "streamed"


@pytest.mark.parametrize("with_traceparent", [True, False], ids=["traceparent", "no-traceparent"])
def test_forged_baggage_reaches_no_span(framework: str, order: str, with_traceparent: bool) -> None:
    # No propagator guard here: the middleware alone must hold the boundary.
    traced = make_traced(guard_remote_baggage=False)
    headers = {"baggage": FORGED + ",tenant=acme"}
    if with_traceparent:
        headers["traceparent"] = TRACEPARENT
    with served(framework, traced, order) as url:
        answer = httpx.get(url + "/chat", headers=headers).json()
        httpx.get(url + "/chat", headers={**headers, "X-Session-Id": "own"})
    assert answer == {"session": None, "user": None}
    values = all_attribute_values(traced)
    assert "victim" not in values
    assert "mallory" not in values
    assert "own" in values


def test_trusted_incoming_baggage_is_stamped(framework: str, order: str) -> None:
    traced = make_traced(trust_remote_baggage=True)
    with served(framework, traced, order, trust_remote_baggage=True) as url:
        answer = httpx.get(
            url + "/chat", headers={"baggage": "langfuse_session_id=upstream"}
        ).json()
    assert answer["session"] == "upstream"
    assert {(s.attributes or {}).get(LANGFUSE_SESSION_ID) for s in traced.spans()} == {"upstream"}


def test_200_concurrent_requests_keep_their_sessions_apart(framework: str) -> None:
    traced = make_traced()

    async def hammer(url: str) -> list[tuple[str, dict[str, Any]]]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

            async def one(i: int) -> tuple[str, dict[str, Any]]:
                response = await client.get("/chat", headers={"X-Session-Id": f"c-{i}"})
                return f"c-{i}", response.json()

            return await asyncio.gather(*(one(i) for i in range(200)))

    with served(framework, traced, ORDERS[0]) as url:
        results = asyncio.run(hammer(url))
    assert all(answer["session"] == sent for sent, answer in results)
    by_trace: dict[int, set[object]] = defaultdict(set)
    for span in traced.spans():
        by_trace[span.context.trace_id].add((span.attributes or {}).get(LANGFUSE_SESSION_ID))  # type: ignore[union-attr]
    assert len(by_trace) == 200
    assert all(len(sessions) == 1 for sessions in by_trace.values())
    assert {next(iter(s)) for s in by_trace.values()} == {f"c-{i}" for i in range(200)}


# -- Django -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def django_service() -> Iterator[tuple[Traced, Any]]:
    from django.core.wsgi import get_wsgi_application
    from django.test import override_settings
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    propagator = propagate.get_global_textmap()
    traced = make_traced()  # installs the guard for this module's tests
    urlconf = configure_django(traced)
    DjangoInstrumentor().instrument(tracer_provider=traced.provider)
    try:
        with override_settings(ROOT_URLCONF=urlconf):
            yield traced, WSGISessionMiddleware(get_wsgi_application())
    finally:
        DjangoInstrumentor().uninstrument()
        propagate.set_global_textmap(propagator)


def test_django_spans_carry_the_session_and_forged_baggage_does_not(
    django_service: tuple[Traced, Any],
) -> None:
    traced, application = django_service
    traced.exporter.clear()
    with serve_wsgi(application) as url:
        good = httpx.get(url + "/chat", headers={"X-Session-Id": "dj-1"}).json()
        forged = httpx.get(url + "/chat", headers={"baggage": FORGED}).json()
    assert good == {"session": "dj-1"}
    assert forged == {"session": None}
    spans = traced.spans()
    assert {s.kind.name for s in spans} >= {"SERVER", "INTERNAL"}
    first_trace = spans[0].context.trace_id  # type: ignore[union-attr]
    for span in spans:
        session = (span.attributes or {}).get(LANGFUSE_SESSION_ID)
        if span.context.trace_id == first_trace:  # type: ignore[union-attr]
            assert session == "dj-1", span.name
        else:
            assert session in (None, ""), span.name
    assert "victim" not in all_attribute_values(traced)
