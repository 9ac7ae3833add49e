"""Zero code, sessions from a request header: ``LANGFUSE_OTEL_SESSION_HEADER=X-Session-Id``.

When a server (or message consumer) instrumentation extracts the incoming request's context,
the propagator guard and the ``langfuse_baggage`` propagator also read the headers these
variables name, through the instrumentation's own getter, so the server span and everything
under it carry the ids. The ids follow the id rule (:func:`~.ids.id_problem`: an invalid value
is refused with a warning), are written as :func:`~langfuse_otel_sessions.session` writes them
(under the keys the configured processor reads, recorded as this package's, so they are not
sent on outgoing requests unless ``LANGFUSE_OTEL_PROPAGATE_SESSION_TO`` says so), and never
replace an id the process already set before the extraction.

The client writes that header: use this only behind a front end that sets or checks it
(``docs/trust-boundary.md``), as with the middleware's header source.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import baggage
from opentelemetry.context import Context, create_key, get_current, get_value, set_value
from opentelemetry.propagators import textmap

from .._logging import RateLimitedLog
from ..attributes import (
    DEFAULT_MAX_ID_LENGTH,
    ENV_SESSION_HEADER,
    ENV_USER_HEADER,
)
from ..baggage_keys import known_keys
from ..ids import id_problem
from ..sessions.context import scoped_context
from .web_input import from_wsgi

#: Context slot: the entries :func:`with_header_ids` wrote (key -> id).
HEADER_ENTRIES = create_key("langfuse-otel-sessions.header-ids")
_WSGI_MARKER = "wsgi.version"  # in every WSGI environ (PEP 3333)
_log = RateLimitedLog()


def configured_headers() -> tuple[str | None, str | None]:
    """The header names for the session and the user id, from the environment (or ``None``)."""
    return _name(ENV_SESSION_HEADER), _name(ENV_USER_HEADER)


def _name(variable: str) -> str | None:
    value = os.environ.get(variable, "").strip()
    return value or None


def _read(
    carrier: textmap.CarrierT, getter: textmap.Getter[textmap.CarrierT], header: str, what: str
) -> str | None:
    """The valid id the carrier's ``header`` holds, or ``None`` (an invalid one is warned)."""
    values = getter.get(carrier, header)
    if not values and header != header.lower():  # ASGI's getter matches lower-case names only
        values = getter.get(carrier, header.lower())
    value = next((v for v in values or () if v), None)
    if value is None:
        return None
    if isinstance(value, str) and isinstance(carrier, Mapping) and _WSGI_MARKER in carrier:
        value = from_wsgi(value)  # WSGI hands the header's bytes as latin-1 text
    problem = id_problem(value, DEFAULT_MAX_ID_LENGTH)
    if problem is None:
        return value
    _log.warning(
        f"invalid-{what}-header", "Ignoring the %s id from the %s header: %s", what, header, problem
    )
    return None


def header_entries(context: Context) -> Mapping[str, str]:
    """The baggage entries (key -> id) :func:`with_header_ids` wrote into ``context``: what the
    request's headers brought. Where a session middleware runs, it decides instead."""
    entries = get_value(HEADER_ENTRIES, context)
    return entries if isinstance(entries, Mapping) else {}


def with_header_ids(
    extracted: Context,
    start: Context | None,
    carrier: textmap.CarrierT,
    getter: textmap.Getter[textmap.CarrierT],
) -> Context:
    """``extracted`` with the ids the configured headers hold, unless the process already set
    one in ``start`` (default: the current context). Never raises: on error, ``extracted``."""
    session_header, user_header = configured_headers()
    if session_header is None and user_header is None:
        return extracted
    try:
        known = known_keys()
        present = baggage.get_all(get_current() if start is None else start)
        session_id = user_id = None
        if session_header is not None and known.session.isdisjoint(present):
            session_id = _read(carrier, getter, session_header, "session")
        if user_header is not None and known.user.isdisjoint(present):
            user_id = _read(carrier, getter, user_header, "user")
        if session_id is None and user_id is None:
            return extracted
        entries = {
            **dict.fromkeys(known.session_writes if session_id else (), session_id),
            **dict.fromkeys(known.user_writes if user_id else (), user_id),
        }
        return set_value(HEADER_ENTRIES, entries, scoped_context(extracted, session_id, user_id))
    except Exception:  # noqa: BLE001 - never raise into the host application
        _log.exception("header-ids", "Could not read the session header; no id taken from it")
        return extracted
