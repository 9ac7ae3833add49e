"""The ASGI and WSGI middleware on plain apps: sources, cookies, bad input, scope types."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs

import pytest
from opentelemetry import baggage, trace

from langfuse_otel_sessions import (
    ASGISessionMiddleware,
    WSGISessionMiddleware,
    current_session_id,
    current_user_id,
)

from .conftest import Traced


def asgi_app(traced: Traced, seen: list[tuple[str | None, str | None]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            seen.append(("lifespan", None))
            return
        with traced.tracer.start_as_current_span("handler"):
            seen.append((current_session_id(), current_user_id()))
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def call_asgi(
    app: Any, headers: dict[str, str] | None = None, query: str = "", kind: str = "http"
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": kind,
        "path": "/",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_header_is_the_default_source(traced: Traced) -> None:
    seen: list[Any] = []
    call_asgi(ASGISessionMiddleware(asgi_app(traced, seen)), {"X-Session-Id": "from-header"})
    assert seen == [("from-header", None)]
    assert traced.session_of("handler") == "from-header"


def test_sources_in_order_callable_header_cookie(traced: Traced) -> None:
    seen: list[Any] = []
    middleware = ASGISessionMiddleware(
        asgi_app(traced, seen),
        session_cookie="sid",
        session_from=lambda scope: "from-callable" if scope["path"] == "/" else None,
        user_header="X-User",
    )
    call_asgi(middleware, {"X-Session-Id": "h", "Cookie": "sid=c", "X-User": "u-1"})
    only_cookie = ASGISessionMiddleware(asgi_app(traced, seen), session_cookie="sid")
    call_asgi(only_cookie, {"Cookie": "a=b; sid=from-cookie"})
    # the query string is read the documented way: a session_from callable
    query = ASGISessionMiddleware(
        asgi_app(traced, seen),
        session_from=lambda scope: parse_qs(scope["query_string"].decode()).get("s", [None])[0],
    )
    call_asgi(query, {}, "s=from-query&x=1")
    assert seen == [("from-callable", "u-1"), ("from-cookie", None), ("from-query", None)]


def test_a_raising_callable_is_logged_and_the_request_goes_on(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(scope: Any) -> str:
        raise RuntimeError("auth backend down")

    seen: list[Any] = []
    sent = call_asgi(ASGISessionMiddleware(asgi_app(traced, seen), session_from=broken), {})
    assert seen == [(None, None)]
    assert sent[0]["status"] == 200
    assert "session_from callable raised" in caplog.text


@pytest.mark.parametrize("bad", ["x" * 201, "a\x00b", "line\x7fbreak"])
def test_invalid_ids_are_ignored_and_logged(
    traced: Traced, caplog: pytest.LogCaptureFixture, bad: str
) -> None:
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    seen: list[Any] = []
    middleware = ASGISessionMiddleware(asgi_app(traced, seen))
    call_asgi(middleware, {"X-Session-Id": bad})
    assert seen == [(None, None)]
    assert "Ignoring the session id from the header" in caplog.text


@pytest.mark.parametrize("padded", ["alice ", " alice", "\xa0alice", "alice\u2028"])
def test_an_id_with_whitespace_at_either_end_is_refused(traced: Traced, padded: str) -> None:
    # baggage strips it: a span would get "alice" here and "alice " there, two sessions
    seen: list[Any] = []
    middleware = ASGISessionMiddleware(asgi_app(traced, seen), session_from=lambda _: padded)
    call_asgi(middleware, {"X-Session-Id": padded})
    assert seen == [(None, None)]
    assert traced.session_of("handler") is None


def test_generated_session_is_set_in_a_safe_cookie(traced: Traced) -> None:
    seen: list[Any] = []
    sent = call_asgi(ASGISessionMiddleware(asgi_app(traced, seen), generate_session=True))
    ((session_id, _),) = seen
    assert session_id is not None
    assert session_id.startswith("session_")
    cookies = [v.decode() for k, v in sent[0]["headers"] if k == b"set-cookie"]
    assert cookies == [f"lf_session_id={session_id}; Path=/; HttpOnly; SameSite=Lax; Secure"]
    again: list[Any] = []
    resent = call_asgi(
        ASGISessionMiddleware(asgi_app(traced, again), generate_session=True),
        {"Cookie": f"lf_session_id={session_id}"},
    )
    assert again == [(session_id, None)]  # the cookie brings it back; no new cookie
    assert not [k for k, _ in resent[0]["headers"] if k == b"set-cookie"]


def test_lifespan_passes_through_and_websockets_get_the_session(traced: Traced) -> None:
    seen: list[Any] = []
    middleware = ASGISessionMiddleware(asgi_app(traced, seen))
    call_asgi(middleware, kind="lifespan")
    call_asgi(middleware, {"X-Session-Id": "ws-session"}, kind="websocket")
    assert seen == [("lifespan", None), ("ws-session", None)]


def test_forged_baggage_is_stripped_but_other_entries_stay(traced: Traced) -> None:
    seen: list[Any] = []
    tenants: list[object] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        tenants.append(headers.get(b"baggage"))
        await asgi_app(traced, seen)(scope, receive, send)

    call_asgi(ASGISessionMiddleware(app), {"baggage": "session.id=victim, tenant=acme,user.id=x"})
    assert tenants == [b" tenant=acme"]
    assert seen == [(None, None)]


def test_a_failure_inside_the_middleware_never_breaks_the_request(
    traced: Traced, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    middleware = ASGISessionMiddleware(asgi_app(traced, seen))
    sent = call_asgi(middleware, {"X-Session-Id": "ok"})
    monkeypatch.setattr(middleware, "_decide", None)  # simulate an internal bug
    sent = call_asgi(middleware, {"X-Session-Id": "ok"})
    assert sent[0]["status"] == 200
    assert "Session middleware failed" in caplog.text


def wsgi_app(traced: Traced, seen: list[Any]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append((current_session_id(), current_user_id(), baggage.get_baggage("tenant")))
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body() -> Any:
            for i in range(3):
                with traced.tracer.start_as_current_span(f"chunk {i}"):
                    yield b"x"

        return body()

    return app


def call_wsgi(app: Any, environ: dict[str, Any]) -> tuple[list[Any], bytes]:
    started: list[Any] = []
    result = app(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/", **environ}, lambda *a: started.append(a)
    )
    try:
        body = b"".join(result)
    finally:
        result.close()
    return started, body


def test_wsgi_iterable_spans_carry_the_session_until_closed(traced: Traced) -> None:
    seen: list[Any] = []
    middleware = WSGISessionMiddleware(wsgi_app(traced, seen), user_header="X-User-Id")
    _, body = call_wsgi(middleware, {"HTTP_X_SESSION_ID": "wsgi-s", "HTTP_X_USER_ID": "u"})
    assert body == b"xxx"
    assert seen == [("wsgi-s", "u", None)]
    for i in range(3):
        assert traced.session_of(f"chunk {i}") == "wsgi-s"
        assert traced.user_of(f"chunk {i}") == "u"
    assert current_session_id() is None  # nothing leaks into the server's thread


def test_wsgi_generated_cookie_and_stripped_baggage(traced: Traced) -> None:
    seen: list[Any] = []
    middleware = WSGISessionMiddleware(wsgi_app(traced, seen), generate_session=True)
    started, _ = call_wsgi(middleware, {"HTTP_BAGGAGE": "langfuse_session_id=victim"})
    ((_status, headers),) = started
    (cookie,) = [v for k, v in headers if k == "Set-Cookie"]
    ((session_id, _, _),) = seen
    assert cookie.startswith(f"lf_session_id={session_id};")
    assert session_id != "victim"


def test_server_span_is_stamped_and_a_forged_id_on_it_is_blanked(traced: Traced) -> None:
    seen: list[Any] = []
    middleware = WSGISessionMiddleware(wsgi_app(traced, seen))
    with traced.tracer.start_as_current_span("server") as server:
        server.set_attribute("langfuse.session.id", "victim")  # as an unguarded stamp would
        call_wsgi(middleware, {"HTTP_BAGGAGE": "langfuse.session.id=victim"})
        with traced.tracer.start_as_current_span("server 2"):
            call_wsgi(middleware, {"HTTP_X_SESSION_ID": "real"})
    assert traced.session_of("server") == ""  # Langfuse skips empty ids
    assert traced.session_of("server 2") == "real"
    assert trace.get_current_span().is_recording() is False
