"""`ASGISessionMiddleware`: the session for every span of an ASGI request or websocket."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry.context import attach, detach

from ..boundary.propagator import DECIDED, deciding
from ..boundary.web_input import as_opentelemetry_reads, decode_bytes
from .request_session import SessionMiddlewareBase

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ASGISessionMiddleware(SessionMiddlewareBase):
    """The request's session in OTel context for the whole request (docs/sessions.md)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            raw = scope.get("headers") or []
            wanted = self._asgi_names
            headers: dict[str, str] = {}
            values: list[bytes] = []  # every baggage header counts (OpenTelemetry reads the first)
            for name, value in raw:
                name = name.lower()  # noqa: PLW2901 - the same name, lower-case
                if name == b"baggage":
                    values.append(value)
                elif name in wanted:
                    headers[name.decode("latin-1")] = decode_bytes(value)
            incoming = ",".join(map(decode_bytes, values)) if values else None
            raw_text = None  # a header that is not UTF-8 OpenTelemetry reads otherwise: both count
            if incoming is not None and not incoming.isascii():
                raw_text = ",".join(map(as_opentelemetry_reads, values))
            context, carried, header, cookie = self._decide(scope, headers, incoming, raw_text)
            if header is not None:
                scope = dict(scope)  # the scope is the caller's: change a copy
                scope["headers"] = [
                    *((name, value) for name, value in raw if name.lower() != b"baggage"),
                    (b"baggage", header.encode()),  # UTF-8: what is not was left out
                ]
            if cookie is not None and scope["type"] == "http":
                send = _with_cookie(send, cookie.encode("latin-1"))
            token = attach(context)
        except Exception:  # noqa: BLE001 - a request must never fail because of us
            self._log.exception("asgi", "Session middleware failed; request continues without")
            context, carried = self._failed(), {}
            if not self._trusted:  # nor does OpenTelemetry's middleware inside read it
                kept = [h for h in scope.get("headers") or [] if h[0].lower() != b"baggage"]
                scope = {**scope, "headers": kept}
            token = attach(context)
        decided = deciding(carried)
        try:
            await self.app(scope, receive, send)
        finally:
            DECIDED.reset(decided)
            detach(token)


def _with_cookie(send: Send, cookie: bytes) -> Send:
    async def send_with_cookie(message: Message) -> None:
        if message.get("type") == "http.response.start":
            message = dict(message)
            message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie)]
        await send(message)

    return send_with_cookie
