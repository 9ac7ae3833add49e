"""`WSGISessionMiddleware`: the session for every span of a WSGI request.

Flask: ``app.wsgi_app = WSGISessionMiddleware(app.wsgi_app)``; Django: wrap the application in
``wsgi.py``: ``application = WSGISessionMiddleware(get_wsgi_application())``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry.context import Context, attach, detach, get_current

from ..boundary.propagator import deciding, done_deciding
from ..boundary.web_input import from_wsgi, to_wsgi
from .request_session import SessionMiddlewareBase

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class _InContext:
    """The app's response iterable, each step run with the request's context attached, so that
    spans made while the body is produced carry the session too, until ``close()``."""

    def __init__(self, result: Iterable[bytes], context: Context) -> None:
        self._result = result
        self._context = context

    def __iter__(self) -> Iterator[bytes]:
        iterator = iter(self._result)
        while True:
            token = attach(self._context)
            try:
                chunk = next(iterator)
            except StopIteration:
                return
            finally:
                detach(token)
            yield chunk

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            token = attach(self._context)
            try:
                close()
            finally:
                detach(token)


class WSGISessionMiddleware(SessionMiddlewareBase):
    """Sets the request's session in OTel context for the whole request — the response
    iterable until closed included — stamps the server span, and keeps session ids from the
    client's ``baggage`` header out unless trusted."""

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            context, carried, start_response = self._prepare(environ, start_response)
        except Exception:  # noqa: BLE001 - a request must never fail because of us
            self._log.exception("wsgi", "Session middleware failed; request continues without")
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        token = attach(context)
        decided = deciding(carried)
        try:
            result = self.app(environ, start_response)
        finally:
            done_deciding(decided)
            detach(token)
        return _InContext(result, context)

    def _prepare(
        self, environ: Environ, start_response: StartResponse
    ) -> tuple[Context, dict[str, str], StartResponse]:
        sessions = self.sessions
        headers = {
            name: from_wsgi(value)
            for name, key in self._wsgi_names
            if isinstance(value := environ.get(key), str)
        }
        ids = sessions.decide(environ, headers)
        raw = environ.get("HTTP_BAGGAGE")
        decoded = None if raw is None else from_wsgi(raw)
        # What the request brought, as OpenTelemetry (the raw text) and we (UTF-8) read it.
        incoming = raw if raw == decoded else f"{raw},{decoded}"
        facts = sessions.facts(get_current(), ids, incoming)
        carried = sessions.carried_entries(facts)
        rewritten = sessions.baggage_header(decoded, facts, carried)
        if rewritten is not None:
            environ["HTTP_BAGGAGE"] = to_wsgi(rewritten)
        context = sessions.request_context(facts)
        sessions.stamp_server_span(facts, context)
        if ids.new_session and ids.session_id is not None:
            cookie = sessions.set_cookie(ids.session_id)
            original = start_response

            def start_response(
                status: str, response_headers: list[tuple[str, str]], *args: object
            ) -> object:
                return original(status, [*response_headers, ("Set-Cookie", cookie)], *args)

        return context, carried, start_response
