"""Zero code: the ids from the request headers ``LANGFUSE_OTEL_SESSION_HEADER`` /
``LANGFUSE_OTEL_USER_HEADER`` name, read when a server instrumentation extracts the request's
context, written as ``session()`` writes them. The client writes them: see the trust boundary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import baggage
from opentelemetry.context import Context, create_key, get_current, set_value
from opentelemetry.propagators import textmap

from .._logging import RateLimitedLog
from ..attributes import DEFAULT_MAX_ID_LENGTH, ENV_SESSION_HEADER, ENV_USER_HEADER
from ..baggage_keys import known_keys
from ..ids import id_problem
from ..sessions.context import scoped_context
from .web_input import from_wsgi

#: Context slot: the entries :func:`with_header_ids` wrote (key -> id).
HEADER_ENTRIES = create_key("langfuse-otel-sessions.header-ids")
_log = RateLimitedLog()


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
    if isinstance(carrier, Mapping) and "wsgi.version" in carrier:  # a WSGI environ (PEP 3333)
        value = from_wsgi(value)
    problem = id_problem(value, DEFAULT_MAX_ID_LENGTH)
    if problem is not None:
        _log.warning(f"invalid-{what}", "Ignoring the %s id from %s: %s", what, header, problem)
        return None
    return value


def header_entries(context: Context) -> Mapping[str, str]:
    """The baggage entries (key -> id) the request's headers brought into ``context``."""
    entries = context.get(HEADER_ENTRIES)  # get_value, without its call
    return entries if isinstance(entries, dict) else {}  # written as a dict below


def with_header_ids(
    extracted: Context,
    start: Context | None,
    carrier: textmap.CarrierT,
    getter: textmap.Getter[textmap.CarrierT],
) -> Context:
    """``extracted`` with the ids the configured headers hold, unless the process already set
    one in ``start`` (default: the current context). Never raises."""
    session_header = os.environ.get(ENV_SESSION_HEADER, "").strip()
    user_header = os.environ.get(ENV_USER_HEADER, "").strip()
    if not (session_header or user_header):
        return extracted
    try:
        known = known_keys()
        present = baggage.get_all(get_current() if start is None else start)
        session_id = user_id = None
        if session_header and known.session.isdisjoint(present):
            session_id = _read(carrier, getter, session_header, "session")
        if user_header and known.user.isdisjoint(present):
            user_id = _read(carrier, getter, user_header, "user")
        if session_id is None and user_id is None:
            return extracted
        entries = {key: session_id for key in known.session_writes if session_id}
        entries.update({key: user_id for key in known.user_writes if user_id})
        return set_value(HEADER_ENTRIES, entries, scoped_context(extracted, session_id, user_id))
    except Exception:  # noqa: BLE001 - never raise into the host application
        _log.exception("header-ids", "Could not read the session header; no id taken from it")
        return extracted
