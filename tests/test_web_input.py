"""The web layer against hostile and non-ASCII input, through real servers and the public
middleware: UTF-8 header values, cookies parsed only when asked for and in linear time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from langfuse_otel_sessions import (
    ASGISessionMiddleware,
    WSGISessionMiddleware,
    current_session_id,
    current_user_id,
    session,
)
from langfuse_otel_sessions.boundary.web_input import cookie_values

from .conftest import Traced
from .servers import serve_asgi, serve_wsgi

IDS = ["café-ü", "会话-42", "chat-🦜", "plain-ascii"]


def asgi_echo(seen: list[Any]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((current_session_id(), current_user_id()))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def wsgi_echo(seen: list[Any]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append((current_session_id(), current_user_id()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


SERVERS: list[tuple[str, Callable[..., Any], Callable[..., Any], Callable[..., Any]]] = [
    ("asgi", ASGISessionMiddleware, asgi_echo, serve_asgi),
    ("wsgi", WSGISessionMiddleware, wsgi_echo, serve_wsgi),
]


@pytest.mark.parametrize(("kind", "middleware", "echo", "serve"), SERVERS, ids=["asgi", "wsgi"])
def test_utf8_ids_in_headers_and_cookies_are_the_ids_session_sets(
    traced: Traced, kind: str, middleware: Any, echo: Any, serve: Any
) -> None:
    seen: list[Any] = []
    app = middleware(echo(seen), session_header=None, session_cookie="sid", user_header="X-User")
    with serve(app) as url:
        for value in IDS:
            raw = value.encode()
            httpx.get(url, headers={b"X-User": raw, b"Cookie": b"a=b; sid=" + raw})
    expected = []
    for value in IDS:
        with session(value, user_id=value):
            expected.append((current_session_id(), current_user_id()))
    assert seen == expected


@pytest.mark.parametrize(("kind", "middleware", "echo", "serve"), SERVERS, ids=["asgi", "wsgi"])
def test_bytes_that_are_not_utf8_are_refused_by_name(
    traced: Traced,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    middleware: Any,
    echo: Any,
    serve: Any,
) -> None:
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    seen: list[Any] = []
    with serve(middleware(echo(seen))) as url:
        answer = httpx.get(url, headers={b"X-Session-Id": b"caf\xe9"})  # latin-1 'café'
    assert answer.status_code == 200
    assert seen == [(None, None)]
    assert "not valid UTF-8" in caplog.text
    assert "control characters" not in caplog.text


def test_percent_encoded_ids_are_taken_literally(traced: Traced) -> None:
    seen: list[Any] = []
    with serve_wsgi(WSGISessionMiddleware(wsgi_echo(seen))) as url:
        httpx.get(url, headers={"X-Session-Id": "caf%C3%A9"})
    assert seen == [("caf%C3%A9", None)]


def _hostile_cookie(size: int) -> str:
    # CPython's SimpleCookie un-escapes quoted values in quadratic time (3.10-3.12).
    return 'sid="' + "\\\\" * (size // 2) + '"'


def _best_time(run: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def test_hostile_cookie_headers_cost_linear_time_through_the_middleware(traced: Traced) -> None:
    """Growth, not a deadline: an 8x larger header may cost at most ~3x of 8x (linear) more,
    far below the 64x of a quadratic parser. Minimum of several runs to shed machine noise."""
    seen: list[Any] = []
    app = WSGISessionMiddleware(wsgi_echo(seen), session_cookie="sid")

    def request(size: int) -> Callable[[], object]:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_COOKIE": _hostile_cookie(size)}
        return lambda: list(app(environ, lambda *args: None))

    small, large = 16 * 1024, 128 * 1024
    request(small)()  # warm up
    ratio = _best_time(request(large)) / max(_best_time(request(small)), 1e-6)
    assert ratio < 24, f"an 8x larger Cookie header took {ratio:.1f}x longer"
    assert len(seen) == 11  # every request answered; the hostile value is no valid id (length)


def test_cookies_are_not_parsed_without_a_cookie_source(traced: Traced) -> None:
    seen: list[Any] = []
    app = WSGISessionMiddleware(wsgi_echo(seen))  # default options: header only
    hostile = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_COOKIE": _hostile_cookie(1 << 20)}
    calls: list[str] = []
    original = SimpleCookie.load
    SimpleCookie.load = lambda self, raw: calls.append("load")  # type: ignore[method-assign,assignment,misc]
    try:
        list(app({**hostile, "HTTP_X_SESSION_ID": "s-1"}, lambda *args: None))
    finally:
        SimpleCookie.load = original  # type: ignore[method-assign]
    assert calls == []
    assert seen == [("s-1", None)]


# Names SimpleCookie takes for cookie attributes are left out: it would not return them.
RESERVED = {"expires", "path", "comment", "domain", "max-age", "secure", "httponly", "version"}
COOKIE_NAME = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=12
).filter(lambda name: name not in RESERVED | {"samesite", "partitioned"})
# RFC 6265 cookie-octets: printable ASCII without space, DQUOTE, comma, semicolon, backslash.
COOKIE_VALUE = st.text(
    alphabet=[chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\'], max_size=30
)


@given(st.dictionaries(COOKIE_NAME, COOKIE_VALUE, min_size=1, max_size=6), st.data())
def test_cookie_lookup_agrees_with_the_standard_library_on_well_formed_headers(
    cookies: dict[str, str], data: st.DataObject
) -> None:
    quoted = data.draw(st.sets(st.sampled_from(sorted(cookies))))
    header = "; ".join(
        f'{name}="{value}"' if name in quoted else f"{name}={value}"
        for name, value in cookies.items()
    )
    reference = SimpleCookie()
    reference.load(header)
    expected = {name: morsel.value for name, morsel in reference.items()}
    assert cookie_values(header, tuple(cookies)) == {
        name: value for name, value in expected.items() if name in cookies
    }
