"""The request's session decision and trust boundary, shared by the ASGI and WSGI middlewares."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import quote

from opentelemetry import baggage, trace
from opentelemetry.context import Context, get_current
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.trace import SpanContext

from .._logging import RateLimitedLog
from ..attributes import (
    BAGGAGE_LANGFUSE_TAGS,
    BAGGAGE_METADATA_PREFIX,
    BAGGAGE_TRACE_ATTRIBUTES,
    DEFAULT_MAX_ID_LENGTH,
    ENV_TRUST_REMOTE_BAGGAGE,
)
from ..baggage_keys import KnownKeys, keys_generation, known_keys, member_key, member_value
from ..boundary.header_ids import header_entries
from ..boundary.trust import distrust_remote
from ..boundary.web_input import cookie_values
from ..environment import env_bool
from ..errors import ConfigurationError
from ..ids import TraceIds, id_problem, is_generated_session_id, new_session_id
from ..sessions.context import scoped_context
from ..sessions.context_slots import GeneratedIds, withheld_remote_entries, without_withheld
from ..sessions.trace_attributes import entries_of, merged_tags, stamps_of
from ..spans.memory import MEMORY

DEFAULT_SESSION_HEADER = "X-Session-Id"
DEFAULT_SESSION_COOKIE = "lf_session_id"
_MAX_BAGGAGE_BYTES = 8192  # OpenTelemetry ignores a longer baggage header (W3C's limit)
_NONE: Mapping[str, str] = MappingProxyType({})

IdFromRequest = Callable[[Any], "str | None"]
_Headers = Mapping[str, str]  # lower-case name (or cookie name) -> value


class _Facts(NamedTuple):
    """One request, read once. ``taken``: the ids the header source took; ``borne``: what the
    request brought under a guarded key (key -> values, in order); ``parsed``: the members of
    its ``baggage`` header (``incoming``) and their keys, if read."""

    current: Context
    known: KnownKeys
    ids: tuple[str | None, str | None]
    new: bool
    attributes: Mapping[str, str]
    taken: Mapping[str, str]
    borne: dict[str, list[str]]
    incoming: str | None
    parsed: list[tuple[str, str | None]] | None


class SessionMiddlewareBase:
    """The keyword-only options both middlewares take after the app: see docs/sessions.md."""

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
        trace_attributes: Any = None,  # noqa: ANN401 - a mapping or a callable
    ) -> None:
        if any(f is not None and not callable(f) for f in (session_from, user_from)):
            raise ConfigurationError("session_from/user_from must be callables")
        self._attributes_from = trace_attributes if callable(trace_attributes) else None
        problems: list[str] = []
        static = {} if self._attributes_from else entries_of(trace_attributes or {}, problems)
        if problems:
            raise ConfigurationError(f"trace_attributes: {'; '.join(problems)}")
        self._static: Mapping[str, str] = MappingProxyType(static)
        self._static_stamps = stamps_of(static, [])
        self._static_members = [_member(key, value) for key, value in static.items()]
        if generate_session and session_cookie is None:
            session_cookie = DEFAULT_SESSION_COOKIE
        self.app = app
        session_header, user_header = (h and h.lower() for h in (session_header, user_header))
        self._session = (session_from, session_header, session_cookie)
        self._user = (user_from, user_header, None) if user_from or user_header else None
        self._generate = generate_session
        trusted = trust_remote_baggage
        self._trusted = env_bool(ENV_TRUST_REMOTE_BAGGAGE, False) if trusted is None else trusted
        if not self._trusted:
            distrust_remote(self)  # the sampler then lets no caller's input decide
        self._cookie_names = (session_cookie,) if session_cookie else ()
        # The request headers a source reads: only these are decoded.
        names = [h for h in (session_header, user_header, session_cookie and "cookie") if h]
        self._asgi_names = frozenset(name.encode("latin-1") for name in names)
        self._environ_keys = tuple((n, "HTTP_" + n.upper().replace("-", "_")) for n in names)
        limit = SpanLimits().max_span_attributes  # stamps fill three quarters, as the processor
        self._room = None if limit is None else limit * 3 // 4
        self._log = RateLimitedLog()
        self._known = (keys_generation(), known_keys())  # the environment's keys: read once

    def _id(
        self, what: str, source: tuple[Any, ...], request: object, found: tuple[_Headers, _Headers]
    ) -> str | None:
        """The first valid id of a source: its callable, header, cookie; never raises."""
        (from_request, header, cookie), (headers, jar) = source, found
        values = [
            ("header", header and headers.get(header)),
            ("cookie", cookie and jar.get(cookie)),
        ]
        if from_request is not None:
            try:
                values.insert(0, ("callable", from_request(request)))
            except Exception:  # noqa: BLE001 - a user callable must not break the request
                self._log.exception(f"{what}-callable", "The %s_from callable raised", what)
        for origin, value in values:
            if value is None or value == "":
                continue
            why = id_problem(value, DEFAULT_MAX_ID_LENGTH)
            if why is None and origin == "cookie" and self._generate:
                if is_generated_session_id(value):
                    return value
                why = "not an id this middleware issues"  # a client cannot choose one
            if why is None:
                return value  # id_problem proved it a str
            self._log.warning(
                f"invalid-{what}-{origin}", "Ignoring the %s id from the %s: %s", what, origin, why
            )
        return None

    def _attributes_of(self, request: object) -> Mapping[str, str]:
        """The ``trace_attributes`` callable's entries; what it gets wrong is logged, not raised."""
        problems: list[str] = []
        try:
            given = self._attributes_from(request)  # type: ignore[misc]  # set: checked by the caller
            own = {} if given is None else entries_of(given, problems)
        except Exception:  # noqa: BLE001 - a user callable must not break the request
            self._log.exception("attributes-callable", "The trace_attributes callable raised")
            return _NONE
        if problems:
            self._log.warning(
                "invalid-attributes-callable",
                "Ignoring trace attributes from the trace_attributes callable: %s",
                "; ".join(problems),
            )
        return own or _NONE

    def _failed(self) -> Context:
        """The context of a request whose decision failed: unless trusted, without baggage, and
        the server span it runs in without the ids and trace attributes stamped from it."""
        current = get_current()
        if self._trusted:
            return current
        span = trace.get_current_span(current)
        if span.is_recording():
            existing, known = _attributes(span), self._known[1]
            stamps = stamps_of(baggage.get_all(current), [])
            keys = (*known.session_attributes, *known.user_attributes, *dict(stamps))
            _restamp(span, {key: "" for key in keys if existing.get(key)})
            MEMORY.correct(span.get_span_context(), None)
            MEMORY.correct_attributes(span.get_span_context(), ())
        return baggage.clear(current)

    def _decide(
        self, request: object, headers: Mapping[str, str], incoming: str | None, raw: str | None
    ) -> tuple[Context, dict[str, str], str | None, str | None]:
        """The request's context, the entries it vouches for, and the ``baggage`` header and
        cookie to hand on (``None``: leave be), from the headers a source reads (lower-case
        names), its ``baggage`` header, and that header as OpenTelemetry reads it (``raw``)."""
        current = get_current()
        generation, known = self._known
        if generation != keys_generation():  # a processor came or went
            generation, known = self._known = (keys_generation(), known_keys())
        cookie_header = headers.get("cookie")
        cookies = cookie_values(cookie_header, self._cookie_names) if cookie_header else _NONE
        session_id = self._id("session", self._session, request, (headers, cookies))
        user_id = self._id("user", self._user, request, (headers, cookies)) if self._user else None
        if new := session_id is None and self._generate:
            session_id = new_session_id()
        attributes = self._static if self._attributes_from is None else self._attributes_of(request)
        taken = header_entries(current)
        borne: dict[str, list[str]] = {k: [v] for k, v in taken.items()} if taken else {}
        parsed = _members(incoming, known)  # most requests: None, nothing guarded in it
        raw_members = _members(raw, known) if raw and raw != incoming else None
        for member, key in [*(raw_members or ()), *(parsed or ())] if parsed or raw_members else ():
            if key in known.guarded:
                borne.setdefault(key, []).append(member_value(member))
        context = self._cleaned(current, taken, borne)
        tags = attributes.get(BAGGAGE_LANGFUSE_TAGS)
        if tags is not None:  # tags add up to those the request's scope nests in
            inherited = baggage.get_baggage(BAGGAGE_LANGFUSE_TAGS, context)
            if inherited is None and self._trusted and BAGGAGE_LANGFUSE_TAGS in borne:
                inherited = borne[BAGGAGE_LANGFUSE_TAGS][-1]  # still in the header
            if inherited is not None:
                attributes = {**attributes, BAGGAGE_LANGFUSE_TAGS: merged_tags(inherited, tags)}
        ids = (session_id, user_id)  # a TraceIds only for the memory: it costs a call
        facts = _Facts(current, known, ids, new, attributes, taken, borne, incoming, parsed)
        carried = self._carried(facts)
        if attributes:
            carried.update(attributes)
        context = scoped_context(context, *ids, attributes, generated=new, known=known)
        span = trace.get_current_span(current)
        inside = span.is_recording()  # inside OpenTelemetry's server span, which it stamps
        if inside:
            self._stamp(span, facts, context)
        header = None if inside and parsed is None else self._header(facts, carried, inside)
        cookie = None
        if new:
            cookie = f"{self._session[2]}={session_id}; Path=/; HttpOnly; SameSite=Lax; Secure"
        return context, carried, header, cookie

    def _cleaned(
        self, current: Context, taken: Mapping[str, str], borne: Mapping[str, list[str]]
    ) -> Context:
        """``current`` without the ids the header source took and, untrusted, without all the
        request brought (``borne``); trusted, with what a guard withheld."""
        context = current
        dropped = {key: [value] for key, value in taken.items()} if self._trusted else borne
        for key, values in dropped.items():
            if baggage.get_baggage(key, context) in values:
                context = baggage.remove_baggage(key, context)
        if not self._trusted:  # nor may a trusting processor find what a guard withheld
            return without_withheld(context)
        for key, held in withheld_remote_entries(context).items():
            if baggage.get_baggage(key, context) is None:
                context = baggage.set_baggage(key, held, context)
        return context

    @staticmethod
    def _carried(facts: _Facts) -> dict[str, str]:
        """The ids the request's context carries: those decided, else the process's own."""
        carried: dict[str, str] = {}
        present = baggage.get_all(facts.current)
        known = facts.known
        for writes, keys, decided in (
            (known.session_writes, known.session, facts.ids[0]),
            (known.user_writes, known.user, facts.ids[1]),
        ):
            if decided is not None:
                carried.update(dict.fromkeys(writes, decided))
            elif not keys.isdisjoint(present):
                for key in sorted(keys.intersection(present)):
                    value = present[key]
                    if isinstance(value, str) and value not in facts.borne.get(key, ()):
                        carried[key] = value
        return carried

    def _header(self, facts: _Facts, carried: Mapping[str, str], inside: bool) -> str | None:
        """The ``baggage`` header for OpenTelemetry's middleware inside ours: ``carried`` first,
        untrusted guarded members removed (``None``: the header as it came)."""
        known, (session_id, user_id), parsed = facts.known, facts.ids, facts.parsed
        if parsed is None:  # no member under a guarded key: none is read
            parsed = [(member, None) for member in (facts.incoming or "").split(",")]
        kept = [
            member
            for member, key in parsed
            if not (
                not member.strip(" \t")
                or key in carried
                or (not self._trusted and key in known.guarded)
                or (session_id is not None and key in known.session)
                or (user_id is not None and key in known.user)
            )
        ]
        if (inside and len(kept) == len(parsed)) or (facts.incoming is None and not carried):
            return None  # nothing to remove, and OpenTelemetry read the headers already
        static = self._static if facts.attributes is self._static else _NONE  # made once
        members = [_member(k, v) for k, v in carried.items() if k not in static]
        members += self._static_members if static else ()
        size = sum(len(member) + 1 for member in members)
        for member in kept:
            try:
                size += len(member.encode()) + 1
            except UnicodeEncodeError:  # not UTF-8: left out, so that OpenTelemetry reads the
                continue  # header as UTF-8 (otherwise ASGI's reads it with unicode_escape)
            if size > _MAX_BAGGAGE_BYTES:  # OpenTelemetry would drop the whole header
                self._log.warning("baggage-size", "Dropping baggage entries past 8192 bytes")
                break
            members.append(member)
        return ",".join(members)

    def _stamp(self, span: trace.Span, facts: _Facts, context: Context) -> None:
        """Stamp the server span as the processor would have, had the decision come first
        (untrusted ids and forged trace attributes blanked), and correct the request's memory."""
        known, ids, borne = facts.known, facts.ids, facts.borne
        existing, stamped = _attributes(span), {}  # blanks over what the request forged, then ids
        if borne and not self._trusted:
            stamped = self._forged_blanks(span.get_span_context(), existing, facts, context)
        suspects = [[*facts.taken.values()]] if self._trusted else borne.values()
        doubtful = {value for values in suspects for value in values} if borne else ()
        given_only = known.given_session_attributes if facts.new else ()
        corrected = False
        for keys, decided in (
            (known.session_attributes, ids[0]),
            (known.user_attributes, ids[1]),
        ):
            for key in keys:
                old = existing.get(key)
                if decided is not None and key not in given_only:
                    corrected = corrected or old not in (None, decided)
                    stamped[key] = decided
                elif old and (decided is not None or old in doubtful or self._remote(span)):
                    corrected = True  # a generated id replaces what the span had there
                    stamped[key] = ""
        if facts.attributes:  # after the ids, as the processor stamps them
            self._trace_stamps(existing, facts, stamped)
        _restamp(span, stamped)
        if corrected:  # the memory learnt the span's old ids
            kind = GeneratedIds if facts.new else TraceIds
            MEMORY.correct(span.get_span_context(), None if ids == (None, None) else kind(*ids))

    def _remote(self, span: trace.Span) -> bool:
        """Untrusted, whether the span's parent is remote (ids not from us: above, or remote)."""
        return not self._trusted and getattr(getattr(span, "parent", None), "is_remote", False)

    @staticmethod
    def _forged_blanks(
        span_context: SpanContext, existing: Mapping[str, object], facts: _Facts, context: Context
    ) -> dict[str, object]:
        """Blanks over the trace attributes on the span that the request's baggage forged."""
        blanks: dict[str, object] = {}
        forged = {key: values for key, values in facts.borne.items() if _is_trace_key(key)}
        for key, values in forged.items():
            for value in values:
                for attribute, stamp in stamps_of({key: value}, []):
                    if existing.get(attribute) == stamp:
                        blanks[attribute] = ""  # Langfuse skips an empty value
        if forged:  # the processor may have remembered them for the request's other spans
            MEMORY.correct_attributes(span_context, stamps_of(baggage.get_all(context), []))
        return blanks

    def _trace_stamps(
        self, existing: Mapping[str, object], facts: _Facts, stamped: dict[str, object]
    ) -> None:
        """Add to ``stamped`` (blanks and ids) the decided trace attributes, within the room the
        span's attribute limit leaves (as the processor fills it)."""
        attributes = facts.attributes
        decided = self._static_stamps if attributes is self._static else stamps_of(attributes, [])
        room = None if self._room is None else self._room - len(existing.keys() | stamped.keys())
        left_out = 0
        for attribute, stamp in decided:
            if room is not None and attribute not in existing:
                if room <= 0:
                    left_out += 1
                    continue
                room -= 1
            own = stamped.get(attribute, existing.get(attribute))  # after blanking forged ones
            if isinstance(own, tuple) and isinstance(stamp, tuple):  # tags add up
                stamp = tuple(dict.fromkeys([*own, *stamp]))  # noqa: PLW2901 - the merged tags
            stamped[attribute] = stamp
        if left_out:
            message = "Not stamping %d trace attribute(s) on the server span (attribute limit)"
            self._log.warning("span-attribute-limit", message, left_out)


def _members(text: str | None, known: KnownKeys) -> list[tuple[str, str | None]] | None:
    """A ``baggage`` header's members and keys; ``None`` if none can be guarded (most: unread)."""
    if not text or not known.may_guard(text):
        return None
    return [(member, member_key(member)) for member in text.split(",")]


def _attributes(span: trace.Span) -> Mapping[str, object]:
    """The span's attributes (the SDK's copied: a real dict reads faster)."""
    existing = getattr(span, "attributes", None)
    return existing.copy() if isinstance(existing, MappingProxyType) else existing or _NONE


def _restamp(span: trace.Span, stamped: dict[str, object]) -> None:
    """Set ``stamped`` (ids, blanks: Langfuse skips an empty value) on the server span."""
    if len(stamped) > 2:  # measured: one call for many, one a key for a few
        span.set_attributes(stamped)  # type: ignore[arg-type]  # stamps are valid values
    else:
        for key, value in stamped.items():
            span.set_attribute(key, value)  # type: ignore[arg-type]


def _member(key: str, value: str) -> str:
    return f"{quote(key, safe='')}={quote(value, safe='')}"


def _is_trace_key(key: str) -> bool:
    return key in BAGGAGE_TRACE_ATTRIBUTES or key.startswith(BAGGAGE_METADATA_PREFIX)
