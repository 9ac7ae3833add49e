"""The web layer's session decision, shared by the ASGI and WSGI middleware.

Where a request's session (and user) comes from — a header, a cookie, or a callable given the
request — whether to make a new session id, and the trust boundary for the
incoming ``baggage`` header. The middlewares only translate their protocol to this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import quote

from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import SpanLimits

from .._logging import RateLimitedLog
from ..attributes import (
    BAGGAGE_LANGFUSE_TAGS,
    BAGGAGE_METADATA_PREFIX,
    BAGGAGE_TRACE_ATTRIBUTES,
    DEFAULT_MAX_ID_LENGTH,
    ENV_TRUST_REMOTE_BAGGAGE,
    LANGFUSE_TRACE_TAGS,
)
from ..baggage_keys import KnownKeys, known_keys, member_key, member_value, split_members
from ..boundary.header_ids import header_entries
from ..boundary.trust import distrust_remote
from ..boundary.web_input import cookie_values
from ..environment import env_bool
from ..errors import ConfigurationError
from ..ids import TraceIds, id_problem, new_session_id
from ..sessions.context import scoped_context
from ..sessions.context_slots import GeneratedIds, withheld_remote_entries, without_withheld
from ..sessions.trace_attributes import (
    ARGUMENTS,
    Stamps,
    baggage_entries,
    entries_of,
    merged_tags,
    stamps_of,
)
from ..spans.memory import MEMORY

DEFAULT_SESSION_HEADER = "X-Session-Id"
DEFAULT_SESSION_COOKIE = "lf_session_id"
_MAX_BAGGAGE_BYTES = 8192  # OpenTelemetry ignores a longer baggage header (W3C's limit)

IdFromRequest = Callable[[Any], "str | None"]
#: ``session()``'s trace-attribute keywords (``tags``, ``metadata``, ``environment``,
#: ``release``, ``version``, ``trace_name``), or a callable given the request returning them.
TraceAttributes = "Mapping[str, Any] | Callable[[Any], Mapping[str, Any] | None]"
_NONE: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class IdSource:
    """Where one id is read from, in this order: callable, header, cookie."""

    header: str | None = None
    cookie: str | None = None
    from_request: IdFromRequest | None = None


class _Incoming(NamedTuple):
    request: object
    headers: Mapping[str, str]
    cookies: Mapping[str, str]


class Facts(NamedTuple):
    """One request, worked out once: the context the middleware runs in, what was decided, the
    ``baggage`` header(s) the request brought, the keys in force, and what the request brought
    under them (:func:`request_borne_entries`)."""

    current: Context
    ids: RequestIds
    incoming: str | None
    known: KnownKeys
    borne: dict[str, set[str]]


@dataclass(frozen=True)
class RequestIds:
    """What was decided for one request."""

    session_id: str | None
    user_id: str | None
    new_session: bool = False
    #: The trace-attribute baggage entries decided (static ones merged with the callable's).
    attributes: Mapping[str, str] = field(default_factory=lambda: _NONE)


class RequestSessions:
    """Decides each request's session and user; holds configuration only, never request state."""

    def __init__(
        self,
        *,
        session: IdSource,
        user: IdSource,
        generate_session: bool = False,
        trust_remote_baggage: bool | None = None,
        trace_attributes: Any = None,  # noqa: ANN401 - TraceAttributes
    ) -> None:
        for source in (session, user):
            if source.from_request is not None and not callable(source.from_request):
                raise ConfigurationError("session_from/user_from must be callables")
        static: Mapping[str, Any] = {}
        self.attributes_from: Callable[[Any], Mapping[str, Any] | None] | None = None
        if callable(trace_attributes):
            self.attributes_from = trace_attributes
        elif isinstance(trace_attributes, Mapping):
            static = trace_attributes
        elif trace_attributes is not None:
            raise ConfigurationError("trace_attributes must be a mapping or a callable")
        unknown = set(static) - set(ARGUMENTS)
        if unknown:
            raise ConfigurationError(f"trace_attributes: unknown key(s) {sorted(unknown)}")
        #: Static trace-attribute entries, validated by ``baggage_entries``.
        self.attributes: Mapping[str, str] = MappingProxyType(baggage_entries(**static))
        self._static_stamps = stamps_of(self.attributes, [])
        if generate_session and session.cookie is None:
            session = IdSource(session.header, DEFAULT_SESSION_COOKIE, session.from_request)
        self.session = session
        self.user = user
        self.generate_session = generate_session
        self.trust_remote_baggage = (
            env_bool(ENV_TRUST_REMOTE_BAGGAGE, False)
            if trust_remote_baggage is None
            else trust_remote_baggage
        )
        if not self.trust_remote_baggage:
            distrust_remote(self)  # the sampler then lets no caller's input decide
        # Only what a source names is parsed: no cookie source, no cookie parsing at all.
        self._cookie_names = tuple(c for c in (session.cookie, user.cookie) if c is not None)
        #: The request headers a source reads (lower-case): only these are decoded.
        self.header_names = frozenset(
            [*(h.lower() for h in (session.header, user.header) if h)]
            + (["cookie"] if self._cookie_names else [])
        )
        self._log = RateLimitedLog()

    # -- reading ids -----------------------------------------------------------------------------

    def decide(self, request: object, headers: Mapping[str, str]) -> RequestIds:
        """The ids for a request. ``headers`` are lower-cased names; never raises."""
        cookies = cookie_values(headers.get("cookie", ""), self._cookie_names)
        incoming = _Incoming(request, headers, cookies)
        session_id = self._read(self.session, "session", incoming)
        user_id = self._read(self.user, "user", incoming)
        attributes = self.attributes
        if self.attributes_from is not None:
            attributes = self._attributes_of(request)
        if session_id is None and self.generate_session:
            return RequestIds(new_session_id(), user_id, True, attributes)
        return RequestIds(session_id, user_id, False, attributes)

    def _attributes_of(self, request: object) -> Mapping[str, str]:
        """The callable's trace attributes; never raises."""
        problems: list[str] = []
        try:
            given = self.attributes_from(request)  # type: ignore[misc]  # checked by the caller
            own = {} if given is None else entries_of(given, problems)
        except Exception:  # noqa: BLE001 - a user callable must not break the request
            self._log.exception(
                "attributes-callable", "The trace_attributes callable raised; using none"
            )
            return _NONE
        if problems:
            self._log.warning(
                "invalid-attributes-callable",
                "Ignoring trace attributes from the trace_attributes callable: %s",
                "; ".join(problems),
            )
        return own or _NONE

    def _read(self, source: IdSource, what: str, incoming: _Incoming) -> str | None:
        request, headers, cookies = incoming
        candidates: list[tuple[str, Callable[[], object]]] = []
        if source.from_request is not None:
            call = source.from_request
            candidates.append(("callable", lambda: call(request)))
        if source.header is not None:
            name = source.header.lower()
            candidates.append(("header", lambda: headers.get(name)))
        if source.cookie is not None:
            cookie = source.cookie
            candidates.append(("cookie", lambda: cookies.get(cookie)))
        for origin, read in candidates:
            try:
                value = read()
            except Exception:  # noqa: BLE001 - a user callable must not break the request
                self._log.exception(
                    f"{what}-callable", "The %s_from callable raised; no %s id", what, what
                )
                continue
            if value is None or value == "":
                continue
            problem = id_problem(value, DEFAULT_MAX_ID_LENGTH)
            if problem is None:
                return value  # type: ignore[return-value]  # id_problem proved it is a str
            self._log.warning(
                f"invalid-{what}-{origin}",
                "Ignoring the %s id from the %s: %s",
                what,
                origin,
                problem,
            )
        return None

    # -- the trust boundary ----------------------------------------------------------------------

    def facts(self, current: Context, ids: RequestIds, incoming: str | None) -> Facts:
        """The request's :class:`Facts`."""
        known = known_keys()
        return Facts(current, ids, incoming, known, request_borne_entries(incoming, current, known))

    def carried_entries(self, facts: Facts) -> dict[str, str]:
        """The session/user entries this request's context is to carry, key -> value: the ids
        decided here, under every key the configured processors read (see
        :func:`known_keys`), and — where nothing was decided — the
        ones the process set itself before this middleware (not brought by the request); then
        the trace attributes decided here, their tags added to those the request inherits."""
        current, ids, incoming_baggage, known, borne = facts
        entries: dict[str, str] = {}
        for writes, keys, decided in (
            (known.session_writes, known.session, ids.session_id),
            (known.user_writes, known.user, ids.user_id),
        ):
            if decided is not None:
                entries.update(dict.fromkeys(writes, decided))
                continue
            for key in sorted(keys):
                value = baggage.get_baggage(key, current)
                if isinstance(value, str) and value not in borne.get(key, ()):
                    entries[key] = value
        if ids.attributes:
            entries.update(
                self._decided_attributes(current, ids.attributes, borne, incoming_baggage)
            )
        return entries

    def _decided_attributes(
        self,
        current: Context,
        decided: Mapping[str, str],
        borne: Mapping[str, set[str]],
        incoming_baggage: str | None,
    ) -> Mapping[str, str]:
        """``decided`` with its tags added to the tags the request's scope nests in: the
        process's own, or — trusted — the caller's (in the context, withheld by a guard, or
        still in the header)."""
        tags = decided.get(BAGGAGE_LANGFUSE_TAGS)
        if tags is None:
            return decided
        inherited = baggage.get_baggage(BAGGAGE_LANGFUSE_TAGS, current)
        trusted = self.trust_remote_baggage
        if (
            isinstance(inherited, str)
            and not trusted
            and inherited in borne.get(BAGGAGE_LANGFUSE_TAGS, ())
        ):
            inherited = None
        if inherited is None and trusted:
            inherited = withheld_remote_entries(current).get(BAGGAGE_LANGFUSE_TAGS)
            if inherited is None:
                inherited = _last_value(incoming_baggage, BAGGAGE_LANGFUSE_TAGS)
        if inherited is None:
            return decided
        return {**decided, BAGGAGE_LANGFUSE_TAGS: merged_tags(inherited, tags)}

    def baggage_header(self, value: str | None, facts: Facts, ours: dict[str, str]) -> str | None:
        """The ``baggage`` header to hand to the wrapped app, or ``None`` to leave it as is.

        Untrusted session/user members are removed — their keys decoded as OpenTelemetry's W3C
        extractor decodes them — and ``ours`` (:meth:`carried_entries`) are put
        first: when this middleware runs outside OpenTelemetry's server instrumentation, that
        instrumentation builds the request's context from the headers alone, so the headers are
        how the decision reaches its spans (the middleware vouches for them while it hands the
        request on — :func:`~..boundary.propagator.deciding` — so that a guard lets them pass).
        """
        ids, known = facts.ids, facts.known
        removed: frozenset[str] = frozenset() if self.trust_remote_baggage else known.guarded
        if ids.session_id is not None:
            removed |= known.session  # the decision here outranks any incoming session
        if ids.user_id is not None:
            removed |= known.user
        removed |= ours.keys()
        if value is None and not ours:
            return None
        members = [
            f"{quote(key, safe='')}={quote(decided, safe='')}" for key, decided in ours.items()
        ]
        size = sum(len(member) + 1 for member in members)
        for member in split_members(value or ""):
            if not member.strip(" \t") or member_key(member) in removed:
                continue
            size += len(member.encode()) + 1
            if size > _MAX_BAGGAGE_BYTES:  # OpenTelemetry would drop the whole header
                self._log.warning("baggage-size", "Dropping baggage entries past 8192 bytes")
                break
            members.append(member)
        return ",".join(members)

    def request_context(self, facts: Facts) -> Context:
        """The context for the request: the current one minus the session/user entries that the
        request's ``baggage`` header brought (unless trusted; trusted, what a propagator guard
        withheld is put back), plus the ids decided here (as :func:`session` would set them).
        Entries the process set itself — e.g. an outer middleware of the app — are kept."""
        current, ids = facts.current, facts.ids
        context = current
        for key, taken in header_entries(current).items():  # this middleware decides instead
            if baggage.get_baggage(key, context) == taken:
                context = baggage.remove_baggage(key, context)
        if self.trust_remote_baggage:
            # A guard in the propagator may have withheld them; this service trusts its caller.
            for key, value in withheld_remote_entries(context).items():
                if baggage.get_baggage(key, context) is None:
                    context = baggage.set_baggage(key, value, context)
        else:
            for key, values in facts.borne.items():
                if baggage.get_baggage(key, context) in values:
                    context = baggage.remove_baggage(key, context)
            # A processor trusting remote baggage finds no withheld entry in this request:
            # the middleware's untrusting default holds for the requests it decides.
            context = without_withheld(context)
        return scoped_context(
            context,
            ids.session_id,
            ids.user_id,
            ids.attributes,
            generated=ids.new_session,
            known=facts.known,
        )

    def stamp_server_span(self, facts: Facts, request_context: Context | None = None) -> None:
        """Stamp the span current when the middleware runs (the server span) with the decided
        ids, on every attribute a processor may stamp them on, overriding ids it got from the
        request's baggage; an untrusted id with nothing to replace it is blanked (Langfuse skips
        empty ids). Trace attributes likewise: untrusted ones the request brought are removed,
        the decided ones set (tags added to the span's own), and the request's memory of them
        (which the exporter completes spans from) replaced by those of ``request_context``
        (:meth:`request_context`), as the memory of ids is corrected."""
        span = trace.get_current_span(facts.current)
        if not span.is_recording():
            return
        current, ids, _, known, borne_entries = facts
        existing = getattr(span, "attributes", None) or {}
        parent = getattr(span, "parent", None)
        from_request = parent is not None and parent.is_remote
        borne = {v for values in borne_entries.values() for v in values}
        from_header = set(header_entries(current).values())  # this middleware decides instead
        forged = {} if self.trust_remote_baggage else _trace_attribute_entries(borne_entries)
        if ids.attributes or forged:
            stamps = (
                self._static_stamps
                if ids.attributes is self.attributes
                else stamps_of(ids.attributes, [])  # validated when decided
            )
            reserved = sum(  # room kept for the ids set below, as the processor keeps it
                key not in existing
                for keys, decided in (
                    (known.session_attributes, ids.session_id),
                    (known.user_attributes, ids.user_id),
                )
                if decided is not None
                for key in keys
            )
            left_out = _stamp_trace_attributes(span, existing, stamps, forged, reserved)
            if left_out:
                self._log.warning(
                    "span-attribute-limit",
                    "Not stamping %d trace attribute(s) on the server span at its attribute "
                    "limit (SpanLimits.max_span_attributes): the span's own attributes are kept",
                    left_out,
                )
        if forged:  # the processor may have remembered them for the request's other spans
            if request_context is not None:
                stamps = stamps_of(baggage.get_all(request_context), [])
            MEMORY.correct_attributes(span.get_span_context(), stamps)
        corrected = False
        stamped: dict[str, str] = {}  # set in one call: one lock, not one a key
        given_only = known.given_session_attributes if ids.new_session else frozenset()
        for keys, decided in (
            (known.session_attributes, ids.session_id),
            (known.user_attributes, ids.user_id),
        ):
            for key in sorted(keys):
                old = existing.get(key)
                value = None if key in given_only else decided  # no generated id there
                if value is not None:
                    corrected = corrected or old not in (None, value)
                    stamped[key] = value
                elif old and (
                    decided is not None  # a generated id replaces what the span had there
                    or old in from_header
                    or (not self.trust_remote_baggage and (from_request or old in borne))
                ):
                    corrected = True
                    stamped[key] = ""
        span.set_attributes(stamped)
        if corrected:  # the processor's request memory learnt the old ids from this span
            known_ids = ids.session_id is not None or ids.user_id is not None
            trace_ids = TraceIds(ids.session_id, ids.user_id) if known_ids else None
            if trace_ids is not None and ids.new_session:
                trace_ids = GeneratedIds(*trace_ids)
            MEMORY.correct(span.get_span_context(), trace_ids)

    def set_cookie(self, session_id: str) -> str:
        """The ``Set-Cookie`` value for a session id this middleware made."""
        return f"{self.session.cookie}={session_id}; Path=/; HttpOnly; SameSite=Lax; Secure"


def _trace_attribute_entries(entries: Mapping[str, set[str]]) -> dict[str, set[str]]:
    return {
        key: values
        for key, values in entries.items()
        if key in BAGGAGE_TRACE_ATTRIBUTES or key.startswith(BAGGAGE_METADATA_PREFIX)
    }


def _stamp_trace_attributes(
    span: trace.Span,
    existing: Mapping[str, object],
    decided: Stamps,
    forged: Mapping[str, set[str]],
    reserved: int = 0,
) -> int:
    """Remove from ``span`` the trace attributes a processor stamped from the ``forged``
    baggage entries, then set the ``decided`` ones (its tags added to the span's) into the room
    its attribute limit leaves (``reserved`` kept for the ids), as the processor does: setting
    one more would evict the span's oldest attribute. Returns how many did not fit."""
    problems: list[str] = []  # the forged ones' problems: nothing was stamped from them
    for key, values in forged.items():
        for value in values:
            for attribute, stamped in stamps_of({key: value}, problems):
                if existing.get(attribute) == stamped:
                    span.set_attribute(attribute, "")  # Langfuse skips an empty value
    room = None
    limit = SpanLimits().max_span_attributes
    if limit is not None:  # as the processor: stamps fill three quarters of the limit at most
        room = limit * 3 // 4 - len(existing) - reserved
    left_out = 0
    for attribute, stamp in decided:
        if room is not None and attribute not in existing:
            if room <= 0:
                left_out += 1
                continue
            room -= 1
        own = existing.get(attribute) if attribute == LANGFUSE_TRACE_TAGS else None
        if isinstance(own, tuple) and isinstance(stamp, tuple):  # tags add up
            stamp = tuple(dict.fromkeys([*own, *stamp]))  # noqa: PLW2901 - the merged tags
        span.set_attribute(attribute, stamp)  # type: ignore[arg-type]
    return left_out


def _last_value(header: str | None, key: str) -> str | None:
    """The value OpenTelemetry's W3C extractor keeps for ``key`` (the last member's)."""
    value = None
    for member in split_members(header or ""):
        if member_key(member) == key:
            value = member_value(member)
    return value


def request_borne_entries(
    header: str | None, current: Context | None = None, known: KnownKeys | None = None
) -> dict[str, set[str]]:
    """The session/user entries a request's ``baggage`` header carries, key -> values, decoded
    as OpenTelemetry's W3C extractor decodes them, and those the header source took from the
    request's headers into ``current``."""
    borne: dict[str, set[str]] = {}
    if current is not None:
        for name, taken in header_entries(current).items():
            borne.setdefault(name, set()).add(taken)
    if not header:
        return borne
    guarded = (known or known_keys()).guarded
    for member in split_members(header):
        key = member_key(member)
        if key is not None and key in guarded:
            borne.setdefault(key, set()).add(member_value(member))
    return borne


class SessionMiddlewareBase:
    """The options both middlewares take (keyword-only, after the wrapped app).

    * ``session_header`` (default ``X-Session-Id``), ``session_cookie``, ``session_from`` (a
      callable given the ASGI scope / WSGI environ, returning an id or ``None``): where the
      session id comes from, callable first, then header, then cookie;
    * ``user_header``, ``user_from``: the same for the user;
    * ``generate_session``: no id in the request -> a new one (``Session.new_id()``), set in a
      session cookie (``session_cookie``, default ``lf_session_id``; Secure, HttpOnly,
      SameSite=Lax);
    * ``trust_remote_baggage``: keep session/user entries of the incoming ``baggage`` header
      (default: ``LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE``, else false: they never reach a span);
    * ``trace_attributes``: ``session()``'s trace-attribute keywords (``tags``, ``metadata``,
      ``environment``, ``release``, ``version``, ``trace_name``) for every request, validated
      as ``session()`` validates them (a bad one raises :class:`ConfigurationError`), or a
      callable given the request returning such a mapping (or ``None``); what a callable gets
      wrong is skipped and logged, never raised.
    """

    def __init__(
        self,
        app: Any,  # noqa: ANN401 - any ASGI or WSGI application
        *,
        session_header: str | None = DEFAULT_SESSION_HEADER,
        session_cookie: str | None = None,
        session_from: IdFromRequest | None = None,
        user_header: str | None = None,
        user_from: IdFromRequest | None = None,
        generate_session: bool = False,
        trust_remote_baggage: bool | None = None,
        trace_attributes: Any = None,  # noqa: ANN401 - TraceAttributes
    ) -> None:
        self.app = app
        self.sessions = RequestSessions(
            session=IdSource(session_header, session_cookie, session_from),
            user=IdSource(user_header, None, user_from),
            generate_session=generate_session,
            trust_remote_baggage=trust_remote_baggage,
            trace_attributes=trace_attributes,
        )
        self._log = RateLimitedLog()
        names = self.sessions.header_names
        self._asgi_names = frozenset(name.encode("latin-1") for name in names)
        self._wsgi_names = tuple((name, "HTTP_" + name.upper().replace("-", "_")) for name in names)
