"""The outbound policy: the baggage entries this package wrote leave the process only for the
hosts the user listed (``docs/trust-boundary.md``); the app's own entries propagate as always.

``inject`` is not told where a request goes: a recording CLIENT span, current while its
instrumentation injects, names it in its attributes. Any other span leaves it unknown, on no
list. A CLIENT span opens the gate once: a later ``inject`` under it (by hand, in a response
hook) may go anywhere.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from opentelemetry import baggage, trace
from opentelemetry.context import Context, create_key, get_current, get_value, set_value
from opentelemetry.trace import SpanKind, format_trace_id

from .._logging import logger
from ..attributes import BAGGAGE_LANGFUSE_TRACE_ID, ENV_PROPAGATE_SESSION_TO
from ..environment import env_keys
from ..errors import ConfigurationError
from ..sessions.context_slots import (
    APP_ENTRIES_BENEATH,
    HIDDEN_APP_ENTRIES,
    OWN_ENTRIES,
    entries_in,
)

EVERYWHERE = "*"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_DESTINATION = re.compile(r"\*|(\*\.)?[a-z0-9_.\-]+(:[0-9]{1,5})?|\[[0-9a-f:.]+\](:[0-9]{1,5})?")
_CHECKED = create_key("langfuse-otel-sessions.outbound-checked")  # by a guard around us
#: The CLIENT spans (span id) that injected, oldest first; bounded: an old span has ended.
_injected: dict[int, None] = {}
_INJECTED_MAX = 4096
_injected_lock = threading.Lock()
#: The live ``LangfuseSpanExporter``s: while there is one, requests claim the trace's root.
trace_claims: weakref.WeakSet[object] = weakref.WeakSet()


class OutboundPolicy:
    """Where the ids this package wrote may be sent: nowhere (default), everywhere (``*``), or
    to the listed hosts — ``api.internal``, ``api.internal:8443``, ``*.svc.cluster.local``."""

    __slots__ = ("destinations", "everywhere")

    def __init__(self, destinations: Iterable[str] = ()) -> None:
        cleaned = {d.strip().lower() for d in destinations}
        self.everywhere = EVERYWHERE in cleaned
        self.destinations = frozenset(cleaned - {EVERYWHERE})

    def allows(self, context: Context) -> bool:
        """Whether the request being injected in ``context`` may carry the package's ids."""
        if self.everywhere or not self.destinations:
            return self.everywhere
        span = trace.get_current_span(context)
        destination = _destination(span)
        if destination is None or not _first_injection(span.get_span_context().span_id):
            return False
        host, port = destination
        return bool({host, f"{host}:{port}"} & self.destinations) or any(
            pattern.startswith("*.") and host.endswith(pattern[1:]) for pattern in self.destinations
        )


def _first_injection(span_id: int) -> bool:
    with _injected_lock:
        if span_id in _injected:
            return False
        _injected[span_id] = None
        if len(_injected) > _INJECTED_MAX:
            del _injected[next(iter(_injected))]
        return True


def _destination(span: trace.Span) -> tuple[str, int | None] | None:
    """The (host, port) of a recording CLIENT span's URL, else ``None``."""
    attributes = getattr(span, "attributes", None)
    client = getattr(span, "kind", None) is SpanKind.CLIENT
    if not (client and span.is_recording() and isinstance(attributes, Mapping)):
        return None
    url = attributes.get("url.full", attributes.get("http.url"))
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".")
    return (f"[{host}]" if ":" in host else host, port) if host else None


def resolve_outbound_policy(argument: Sequence[str] | None) -> OutboundPolicy:
    """The policy from ``propagate_session_to``, else ``LANGFUSE_OTEL_PROPAGATE_SESSION_TO``,
    else nowhere. A bad argument raises :class:`ConfigurationError`; a bad variable warns."""
    listed = env_keys(ENV_PROPAGATE_SESSION_TO, ()) if argument is None else argument
    if not isinstance(listed, str) and all(
        isinstance(d, str) and _DESTINATION.fullmatch(d.strip().lower()) for d in listed
    ):
        return OutboundPolicy(listed)
    if argument is not None:
        raise ConfigurationError(
            f'propagate_session_to must be a sequence of host names, e.g. ["api.internal"], '
            f"not {argument!r}"
        )
    logger.warning(
        "Ignoring %s=%s: not host names; ids are not propagated",
        ENV_PROPAGATE_SESSION_TO,
        ",".join(listed),
    )
    return OutboundPolicy()


def _with_trace_claim(current: Context) -> Context:
    """``current`` with the ``langfuse_trace_id`` claim of its sampled span's trace, while this
    process exports to Langfuse: the callee then marks no app root of its own."""
    span_context = trace.get_current_span(current).get_span_context()
    if not (trace_claims and span_context.is_valid and span_context.trace_flags.sampled):
        return current
    return baggage.set_baggage(
        BAGGAGE_LANGFUSE_TRACE_ID, format_trace_id(span_context.trace_id), current
    )


def outbound_context(context: Context | None, policy: OutboundPolicy) -> Context | None:
    """The context to inject: ``context`` (default: the current one) without the entries this
    package wrote unless ``policy`` allows the destination, with the trace claim. Never raises;
    fails closed."""
    try:
        current = get_current() if context is None else context
        if get_value(_CHECKED, current):
            return context  # a guard around this propagator decided already
        allowed = policy.allows(current)  # first: a CLIENT span opens the gate once
        current = set_value(_CHECKED, True, _with_trace_claim(current))
        entries = baggage.get_all(current)
        mine = entries_in(OWN_ENTRIES, current).items()
        ours = [key for key, value in mine if key in entries and entries[key] == value]
        hidden = {  # the app's rival entries a scope removed, unless the app set them again
            k: v for k, v in entries_in(HIDDEN_APP_ENTRIES, current).items() if k not in entries
        }
        if allowed or not (ours or hidden):
            return current
        for key, value in hidden.items():
            current = baggage.set_baggage(key, value, current)
        beneath = entries_in(APP_ENTRIES_BENEATH, current)
        for key in ours:
            app_value = beneath.get(key)  # the app's own entry this package's covered
            current = (
                baggage.remove_baggage(key, current)
                if app_value is None
                else baggage.set_baggage(key, app_value, current)
            )
        return current
    except Exception:  # noqa: BLE001 - never raise into the host application
        logger.exception("Could not apply the outbound session policy; sending no baggage")
        return baggage.clear(get_current() if context is None else context)
