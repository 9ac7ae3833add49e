"""The outbound policy: the session and user ids this package writes stay in the process.

``session()``, the session middleware and the header source put the ids in OpenTelemetry
baggage, which every instrumented HTTP client would send in its ``baggage`` header — to an LLM
API, a payment provider, any third party. So each id written here is recorded in the context
(:func:`with_own_entries`), and the propagators' ``inject`` leaves out an entry that still holds
that value unless the user opted in for the destination (``propagate_session_to``,
``LANGFUSE_OTEL_PROPAGATE_SESSION_TO``). Entries the app wrote itself — ``baggage.set_baggage``,
the Langfuse SDK's ``propagate_attributes(..., as_baggage=True)`` — are the app's decision and
propagate as always, also under a scope that wrote the same key: the app's value goes out
(``session(tags=[...])`` inside the app's own ``langfuse_tags``: the app's tags only).

``inject`` is not told where the request goes, but every HTTP client instrumentation calls it
inside the CLIENT span it started, whose attributes name the destination (``url.full`` /
``http.url``, ``server.address`` / ``net.peer.name``). Any other current span (a SERVER span
names this process, from the caller's ``Host`` header) or a CLIENT span that is not recording
leaves the destination unknown, on no list: only ``*`` sends the ids there. A CLIENT span opens
the gate once, for the instrumentation's own injection: a later ``inject`` under the same span
(by hand, in a response hook) may go anywhere, so it sends nothing.
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
from ..sessions.context_slots import OWN_ENTRIES, app_entries_beneath, hidden_app_entries

EVERYWHERE = "*"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_URL_KEYS = ("url.full", "http.url")
_HOST_KEYS = (("server.address", "server.port"), ("net.peer.name", "net.peer.port"))
_CHECKED = create_key("langfuse-otel-sessions.outbound-checked")  # a wrapped propagator's inject
_DESTINATION = re.compile(r"(\*\.)?[a-z0-9_.\-]+(:[0-9]{1,5})?|\[[0-9a-f:.]+\](:[0-9]{1,5})?")


class OutboundPolicy:
    """Where the ids this package wrote may be sent: nowhere (default), everywhere (``*``), or
    to the listed hosts — ``api.internal``, ``api.internal:8443``, ``*.svc.cluster.local``."""

    __slots__ = ("destinations", "everywhere")

    def __init__(self, destinations: Iterable[str] = ()) -> None:
        cleaned = tuple(d.strip().lower() for d in destinations)
        self.everywhere = EVERYWHERE in cleaned
        self.destinations = frozenset(d for d in cleaned if d != EVERYWHERE)

    def __repr__(self) -> str:
        listed = ("*",) if self.everywhere else tuple(sorted(self.destinations))
        return f"OutboundPolicy({listed!r})"

    def allows(self, context: Context) -> bool:
        """Whether the request being injected in ``context`` may carry the package's ids."""
        if self.everywhere:
            return True
        if not self.destinations:
            return False
        span = trace.get_current_span(context)
        destination = _destination(span)
        if destination is None or not _injected.first(span.get_span_context().span_id):
            return False
        host, port = destination
        return bool(
            {host, f"{host}:{port}"} & self.destinations
            or any(
                pattern.startswith("*.") and host.endswith(pattern[1:])
                for pattern in self.destinations
            )
        )


class _Injected:
    """The CLIENT spans (by span id) that already injected: each opens the gate once. Bounded:
    the oldest are forgotten first; by then their spans have ended and open nothing."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._seen: dict[int, None] = {}
        self._lock = threading.Lock()

    def first(self, span_id: int) -> bool:
        with self._lock:
            if span_id in self._seen:
                return False
            self._seen[span_id] = None
            if len(self._seen) > self._limit:
                del self._seen[next(iter(self._seen))]
            return True


_injected = _Injected()


def _destination(span: trace.Span) -> tuple[str, int | None] | None:
    attributes = getattr(span, "attributes", None)
    client = getattr(span, "kind", None) is SpanKind.CLIENT
    if not (client and span.is_recording() and isinstance(attributes, Mapping)):
        return None
    for key in _URL_KEYS:
        url = attributes.get(key)
        if isinstance(url, str):
            try:
                parts = urlsplit(url)
                port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
            except ValueError:
                return None
            host = (parts.hostname or "").rstrip(".")
            return (_bracketed(host), port) if host else None
    for host_key, port_key in _HOST_KEYS:
        address = attributes.get(host_key)
        if isinstance(address, str) and address:
            number = attributes.get(port_key)
            port = number if isinstance(number, int) else None
            return _bracketed(address.lower().rstrip(".")), port
    return None


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _check(destinations: Iterable[str]) -> str | None:
    for destination in destinations:
        if destination != EVERYWHERE and not _DESTINATION.fullmatch(destination.lower()):
            return destination
    return None


def resolve_outbound_policy(argument: Sequence[str] | None) -> OutboundPolicy:
    """The policy from ``propagate_session_to`` (a sequence of hosts, ``"*"`` for all), else
    ``LANGFUSE_OTEL_PROPAGATE_SESSION_TO`` (comma-separated), else: nowhere. A bad argument
    raises :class:`ConfigurationError`; a bad environment value warns and sends nowhere."""
    if argument is not None:
        if isinstance(argument, str) or not all(isinstance(d, str) and d for d in argument):
            raise ConfigurationError(
                'propagate_session_to must be a sequence of host names, e.g. ["api.internal"]'
            )
        bad = _check(d.strip() for d in argument)
        if bad is not None:
            raise ConfigurationError(f"propagate_session_to: not a host name: {bad!r}")
        return OutboundPolicy(argument)
    listed = env_keys(ENV_PROPAGATE_SESSION_TO, ())
    bad = _check(listed)
    if bad is not None:
        logger.warning(
            "Ignoring %s: %r is not a host name; session ids are not propagated",
            ENV_PROPAGATE_SESSION_TO,
            bad,
        )
        return OutboundPolicy()
    return OutboundPolicy(listed)


class _TraceClaims:
    """Whether this process exports its traces to Langfuse (a live ``LangfuseSpanExporter``
    that marks app roots): then outgoing requests say so, as the Langfuse SDK does."""

    def __init__(self) -> None:
        self._exporters: weakref.WeakSet[object] = weakref.WeakSet()

    def register(self, exporter: object) -> None:
        self._exporters.add(exporter)

    def discard(self, exporter: object) -> None:
        self._exporters.discard(exporter)

    def active(self) -> bool:
        return len(self._exporters) > 0


trace_claims = _TraceClaims()


def _with_trace_claim(current: Context) -> Context | None:
    """``current`` with the ``langfuse_trace_id`` claim of its sampled span's trace, when this
    process exports to Langfuse and the claim is not there yet; else ``None``.

    The claim tells a downstream service (ours, or the Langfuse SDK) that the trace's root is
    exported upstream, so it does not mark an app root of its own. It carries only the trace
    id, which ``traceparent`` already sends."""
    if not trace_claims.active():
        return None
    span_context = trace.get_current_span(current).get_span_context()
    if not (span_context.is_valid and span_context.trace_flags.sampled):
        return None
    claim = format_trace_id(span_context.trace_id)
    if baggage.get_baggage(BAGGAGE_LANGFUSE_TRACE_ID, current) == claim:
        return None
    return baggage.set_baggage(BAGGAGE_LANGFUSE_TRACE_ID, claim, current)


def outbound_context(context: Context | None, policy: OutboundPolicy) -> Context | None:
    """The context to inject: ``context`` (default: the current one) without the entries this
    package wrote, unless ``policy`` allows the destination, and with the trace's
    ``langfuse_trace_id`` claim when this process exports to Langfuse. Never raises; fails
    closed."""
    try:
        current = get_current() if context is None else context
        if get_value(_CHECKED, current):
            return context  # a guard around this propagator decided already
        allowed = policy.allows(current)  # before anything else: a CLIENT span opens it once
        current = set_value(_CHECKED, True, _with_trace_claim(current) or current)
        own = get_value(OWN_ENTRIES, current)
        if not isinstance(own, Mapping) or not own:
            return current
        entries = baggage.get_all(current)
        ours = [key for key, value in own.items() if key in entries and entries[key] == value]
        hidden = {  # the app's rival entries a scope removed, unless the app set them again
            key: value for key, value in hidden_app_entries(current).items() if key not in entries
        }
        if not (ours or hidden) or allowed:
            return current
        for key, value in hidden.items():
            current = baggage.set_baggage(key, value, current)
        beneath = app_entries_beneath(current)
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
