"""`WSGISessionMiddleware`: the session for every span of a WSGI request (docs/sessions.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry.context import Context, attach, detach

from ..boundary.propagator import DECIDED, deciding
from ..boundary.web_input import from_wsgi
from .request_session import SessionMiddlewareBase

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class _InContext:
    """The app's response iterable, each step and ``close()`` run in the request's context."""

    def __init__(self, result: Iterable[bytes], context: Context) -> None:
        self._result = result
        self._context = context

    def __iter__(self) -> Iterator[bytes]:
        iterator = iter(self._result)
        while (chunk := _run_in(self._context, next, iterator, None)) is not None:
            yield chunk

    def close(self) -> None:
        _run_in(self._context, getattr(self._result, "close", lambda: None))


def _run_in(context: Context, call: Callable[..., Any], *args: object) -> Any:  # noqa: ANN401
    token = attach(context)
    try:
        return call(*args)
    finally:
        detach(token)


class WSGISessionMiddleware(SessionMiddlewareBase):
    """The request's session in OTel context until its response is closed (docs/sessions.md)."""

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            headers = {
                name: from_wsgi(value)
                for name, key in self._environ_keys
                if isinstance(value := environ.get(key), str)
            }
            raw = environ.get("HTTP_BAGGAGE")
            incoming = None if raw is None else from_wsgi(raw)
            # OpenTelemetry reads the raw text; we read UTF-8: what either reads counts.
            context, carried, header, cookie = self._decide(environ, headers, incoming, raw)
            if header is not None:  # UTF-8 (what is not was left out), as latin-1 text: PEP 3333
                environ["HTTP_BAGGAGE"] = header.encode().decode("latin-1")
            if cookie is not None:
                start_response = _with_cookie(start_response, cookie)
        except Exception:  # noqa: BLE001 - a request must never fail because of us
            self._log.exception("wsgi", "Session middleware failed; request continues without")
            context, carried = self._failed(), {}
            if not self._trusted:  # nor does OpenTelemetry's middleware inside read it
                environ.pop("HTTP_BAGGAGE", None)
        token = attach(context)
        vouched = deciding(carried)
        try:
            result = self.app(environ, start_response)
        finally:
            DECIDED.reset(vouched)
            detach(token)
        if isinstance(result, (list, tuple)):  # no code runs while it is iterated
            return result
        return _InContext(result, context)


def _with_cookie(start_response: StartResponse, cookie: str) -> StartResponse:
    def with_cookie(status: str, headers: list[tuple[str, str]], *args: object) -> object:
        return start_response(status, [*headers, ("Set-Cookie", cookie)], *args)

    return with_cookie
