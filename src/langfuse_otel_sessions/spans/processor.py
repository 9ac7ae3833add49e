"""`SessionSpanProcessor`: stamps the session (and user) id from baggage on every span it sees.

Hot path: no I/O, no raising, a handful of dict look-ups per span.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.baggage import _BAGGAGE_KEY  # the baggage slot: a dict get, not a copy
from opentelemetry.context import Context, get_current
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import format_trace_id

from .._logging import RateLimitedLog, logger
from .._reach import note_processor
from ..attributes import (
    BAGGAGE_LANGFUSE_TRACE_ID,
    DEFAULT_MAX_ID_LENGTH,
    DEFAULT_MAX_TRACKED_TRACES,
    DEFAULT_SESSION_BAGGAGE_KEYS,
    DEFAULT_USER_BAGGAGE_KEYS,
    ENV_EXTRA_SESSION_ATTRIBUTES,
    ENV_EXTRA_USER_ATTRIBUTES,
    ENV_MAX_ID_LENGTH,
    ENV_MAX_TRACKED_TRACES,
    ENV_SESSION_BAGGAGE_KEYS,
    ENV_TRUST_REMOTE_BAGGAGE,
    ENV_USER_BAGGAGE_KEYS,
    LANGFUSE_IS_APP_ROOT,
    LANGFUSE_SESSION_ID,
    LANGFUSE_USER_ID,
    SESSION_ATTRIBUTE_KEYS,
    USER_ATTRIBUTE_KEYS,
)
from ..boundary.outbound import resolve_outbound_policy
from ..boundary.propagator import install_baggage_guard
from ..environment import env_bool, env_keys, env_positive_int
from ..errors import ConfigurationError
from ..ids import id_problem
from ..keys import IdKeys, register_reader
from ..sessions.entry_marks import WITHHELD_REMOTE_ENTRIES
from ..sessions.generated import GENERATED_SESSION_ID, GeneratedIds, marked
from ..sessions.trace_attributes import Stamps, stamps_of
from ..traces import TraceIds
from .conventions import resolve_also_emit
from .local_requests import REQUEST_SLOT, TAGGABLE, LocalRequest, request_of

_SESSION_ATTRIBUTES = frozenset(SESSION_ATTRIBUTE_KEYS)
_USER_ATTRIBUTES = frozenset(USER_ATTRIBUTE_KEYS)
_VALID_CACHE_SIZE = 4096
_NOTHING = object()


def _keys_option(
    name: str, value: tuple[str, ...] | list[str] | None, env: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    if value is None:
        return env_keys(env, default)
    if isinstance(value, str) or not all(isinstance(k, str) and k for k in value):
        raise ConfigurationError(f"{name} must be a sequence of non-empty strings")
    return tuple(value)


def _positive_option(name: str, value: int | None, env: str, default: int) -> int:
    if value is None:
        return env_positive_int(env, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive integer")
    return value


class SessionSpanProcessor(SpanProcessor):
    """Stamps ``langfuse.session.id`` / ``langfuse.user.id`` from baggage when a span starts.

    Works for every span of the provider, including those third-party instrumentations create.
    Options (explicit argument > environment variable > default):

    * ``session_keys`` / ``user_keys``: baggage keys read in order
      (``LANGFUSE_OTEL_SESSION_BAGGAGE_KEYS`` / ``LANGFUSE_OTEL_USER_BAGGAGE_KEYS``);
    * ``extra_session_attributes`` / ``extra_user_attributes``: further attribute keys to stamp,
      e.g. ``("gen_ai.conversation.id",)`` (``LANGFUSE_OTEL_EXTRA_*_ATTRIBUTES``);
    * ``also_emit``: other conventions' names to stamp the ids on too: ``"openinference"``
      (``session.id``, ``user.id``), ``"gen_ai"`` (``gen_ai.conversation.id``, for ids that were
      given only, never generated ones) or ``"otel"`` (all three); one name or several
      (``LANGFUSE_OTEL_ALSO_EMIT``; default: none — see ``docs/sessions.md``);
    * ``max_id_length``: longer ids are skipped (``LANGFUSE_OTEL_MAX_ID_LENGTH``, 200);
    * ``trust_remote_baggage``: also stamp ids that arrived in a request's baggage
      (``LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE``, false);
    * ``max_tracked_traces``: no longer used (the fallback memory is per local request and
      freed with its spans); accepted for compatibility;
    * ``propagate_session_to``: hosts that outgoing requests may carry the session/user ids
      this package wrote to (``["api.internal", "*.svc.cluster.local"]``, ``["*"]`` for all;
      ``LANGFUSE_OTEL_PROPAGATE_SESSION_TO``; default: none — see ``docs/outbound-propagation.md``);
    * ``guard_remote_baggage``: wrap the global propagator in a
      :class:`~langfuse_otel_sessions.BaggageGuard` (default ``True``), which withholds
      remote ids unless trusting and applies the outbound policy.
    """

    def __init__(
        self,
        *,
        session_keys: tuple[str, ...] | list[str] | None = None,
        user_keys: tuple[str, ...] | list[str] | None = None,
        extra_session_attributes: tuple[str, ...] | list[str] | None = None,
        extra_user_attributes: tuple[str, ...] | list[str] | None = None,
        also_emit: str | Sequence[str] | None = None,
        max_id_length: int | None = None,
        trust_remote_baggage: bool | None = None,
        max_tracked_traces: int | None = None,
        guard_remote_baggage: bool = True,
        propagate_session_to: Sequence[str] | None = None,
    ) -> None:
        self.session_keys = _keys_option(
            "session_keys", session_keys, ENV_SESSION_BAGGAGE_KEYS, DEFAULT_SESSION_BAGGAGE_KEYS
        )
        self.user_keys = _keys_option(
            "user_keys", user_keys, ENV_USER_BAGGAGE_KEYS, DEFAULT_USER_BAGGAGE_KEYS
        )
        self.extra_session_attributes = _keys_option(
            "extra_session_attributes", extra_session_attributes, ENV_EXTRA_SESSION_ATTRIBUTES, ()
        )
        self.extra_user_attributes = _keys_option(
            "extra_user_attributes", extra_user_attributes, ENV_EXTRA_USER_ATTRIBUTES, ()
        )
        self.max_id_length = _positive_option(
            "max_id_length", max_id_length, ENV_MAX_ID_LENGTH, DEFAULT_MAX_ID_LENGTH
        )
        self.trust_remote_baggage = (
            env_bool(ENV_TRUST_REMOTE_BAGGAGE, False)
            if trust_remote_baggage is None
            else bool(trust_remote_baggage)
        )
        # Accepted for compatibility: the memory is now per local request, kept on the spans
        # themselves, and freed with them (see local_requests.py).
        self.max_tracked_traces = _positive_option(
            "max_tracked_traces",
            max_tracked_traces,
            ENV_MAX_TRACKED_TRACES,
            DEFAULT_MAX_TRACKED_TRACES,
        )
        emit = resolve_also_emit(also_emit)
        self.also_emit = emit.names
        #: Stamped with session ids that were given only (not with generated ones).
        self._given_session_targets = emit.given_session_only
        self._session_targets = tuple(
            key
            for key in dict.fromkeys(
                (LANGFUSE_SESSION_ID, *self.extra_session_attributes, *emit.session)
            )
            if key not in emit.given_session_only
        )
        self._user_targets = tuple(
            dict.fromkeys((LANGFUSE_USER_ID, *self.extra_user_attributes, *emit.user))
        )
        self._id_keys = (
            len(self._session_targets) + len(self._given_session_targets) + len(self._user_targets)
        )
        #: What this processor reads and stamps, registered so that ``session()``, the guard and
        #: the middleware know these keys too, whatever the order they were built in.
        self.keys = IdKeys(
            session=self.session_keys,
            user=self.user_keys,
            session_attributes=(*self._session_targets, *self._given_session_targets),
            given_session_attributes=self._given_session_targets,
            user_attributes=self._user_targets,
            max_id_length=self.max_id_length,
            trust_remote=self.trust_remote_baggage,
        )
        register_reader(self.keys)
        self._session_extras = len(self._session_targets) > 1 or bool(self._given_session_targets)
        self._valid_ids: set[str] = set()
        #: The last baggage mapping seen: its ids and its stamps.
        self._last: tuple[object, TraceIds | None, Stamps] = (_NOTHING, None, ())

        self._log = RateLimitedLog()
        self._told_about_remote: set[str] = set()
        #: Trace attributes left out because a span had no room left (see ``_stamp_into_room``).
        self.dropped_trace_attributes = 0
        if propagate_session_to is not None:
            resolve_outbound_policy(propagate_session_to)  # a bad argument raises here
        if guard_remote_baggage:
            install_baggage_guard(
                trust_remote_baggage=self.trust_remote_baggage,
                propagate_session_to=propagate_session_to,
            )
        note_processor(self)  # a session set with no processor alive warns

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:  # noqa: PLR0912, PLR0915 - hot path inlined on purpose: see benchmarks/span_processor.py
        try:
            context = get_current() if parent_context is None else parent_context
            entries = context.get(_BAGGAGE_KEY)
            if isinstance(entries, dict) and BAGGAGE_LANGFUSE_TRACE_ID in entries:
                _note_upstream_root_claim(span, entries[BAGGAGE_LANGFUSE_TRACE_ID])
            # Spans of one scope share one (immutable) baggage mapping: the ids resolved for
            # the last span are reused by identity. A race between threads costs only a redo.
            last = self._last
            if last[0] is not entries:
                last = self._last = (
                    entries,
                    self._resolve_in(context, entries),
                    self._stamps(entries),
                )
            ids = last[1]
            store = None
            if last[2]:  # tags, metadata, ... (trace_attributes.py)
                store = self._stamp_trace_attributes(span, last[2], ids)
            # The local request: the parent's if it is a local span the processor saw, else a
            # new one rooted here (a remote parent never shares its memory: see local_requests).
            span_context = span.context
            parent = span.parent
            request = None
            if parent is not None and not parent.is_remote:
                request = getattr(parent, REQUEST_SLOT, None)
            if request is None:
                request = LocalRequest(span_context.span_id, self.keys)
            if TAGGABLE:
                span_context.__dict__[REQUEST_SLOT] = request
            if last[2]:  # remembered for the request's spans exported without them
                attributes = request.attributes
                if attributes is None or attributes.last is not last[2]:
                    request.note_attributes(last[2])
            if ids is None:
                ids = self._remote_ids(context)
                if self.trust_remote_baggage:
                    self._stamp_remote_trace_attributes(span, context)
                if ids is None:
                    ids = request.ids  # the fallback: the ids in force last in this request
                    if ids is None:
                        return
                else:
                    request.note(ids)
            elif request.ids is not ids:
                request.note(ids)
            session_id, user_id = ids
            try:  # the SDK span's own mapping: the public property wraps it in a new proxy
                existing = span._attributes
            except AttributeError:
                existing = span.attributes
            if existing:  # an attribute the span already has wins over baggage
                if session_id is not None and not _SESSION_ATTRIBUTES.isdisjoint(existing):
                    session_id = None
                if user_id is not None and not _USER_ATTRIBUTES.isdisjoint(existing):
                    user_id = None
            if store is None:
                store = _direct_store(existing, self._id_keys)
            if store is not None:  # what set_attribute would store (see _direct_store)
                # As set_attribute does, a key already there (only an extra_*_attributes one
                # can be: the span has none of the guarded keys) is removed, then put last.
                if session_id is not None:
                    if self._session_extras:
                        for key in self._session_targets:
                            if key in store:
                                del store[key]
                            store[key] = session_id
                        if self._given_session_targets and type(ids) is not GeneratedIds:
                            for key in self._given_session_targets:
                                if key in store:
                                    del store[key]
                                store[key] = session_id
                    else:
                        store[LANGFUSE_SESSION_ID] = session_id
                if user_id is not None:
                    for key in self._user_targets:
                        if key in store:
                            del store[key]
                        store[key] = user_id
                return
            # Span limits that could truncate or evict, or not an SDK span: the public way.
            # One set_attribute per key: measured faster than one set_attributes call.
            if session_id is not None:
                if self._session_extras:
                    for key in self._session_targets:
                        span.set_attribute(key, session_id)
                    if self._given_session_targets and type(ids) is not GeneratedIds:
                        for key in self._given_session_targets:
                            span.set_attribute(key, session_id)
                else:
                    span.set_attribute(LANGFUSE_SESSION_ID, session_id)
            if user_id is not None:
                for key in self._user_targets:
                    span.set_attribute(key, user_id)
        except Exception:  # noqa: BLE001 - never raise into the host application
            self._log.exception("on_start", "SessionSpanProcessor could not stamp a span")

    def on_end(self, span: ReadableSpan) -> None:
        request = request_of(span.context)
        if request is not None and request.key == span.context.span_id:
            request.open = False  # the local root ended: nothing of this request is pending

    def shutdown(self) -> None:
        """Nothing to release: the processor holds no thread or connection."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered: always ``True``."""
        return True

    def ids_in(self, context: Context | None = None) -> TraceIds | None:
        """The ids a span starting in ``context`` gets from its baggage, read as ``on_start``
        reads them (keys, validation, trust boundary). :class:`SessionSampler` decides by this."""
        context = get_current() if context is None else context
        ids = self._resolve(context.get(_BAGGAGE_KEY))
        return self._remote_ids(context) if ids is None else ids

    def _stamps(self, entries: object) -> Stamps:
        """The trace attributes of a baggage mapping (validated; problems logged, rate-limited)."""
        if not isinstance(entries, Mapping) or not entries:
            return ()
        problems: list[str] = []
        try:
            stamps = stamps_of(entries, problems)
        except Exception:  # noqa: BLE001 - never raises; if it did, the ids still get stamped
            self._log.exception("trace-attributes", "Could not read trace attributes")
            return ()
        if problems:
            self._log.warning(
                "invalid-trace-attribute",
                "Not stamping trace attributes from baggage: %s",
                "; ".join(problems),
            )
        return stamps

    def _stamp_remote_trace_attributes(self, span: Span, context: Context) -> None:
        withheld = context.get(WITHHELD_REMOTE_ENTRIES)
        if isinstance(withheld, Mapping) and withheld:
            self._stamp_trace_attributes(span, self._stamps(withheld))

    def _stamp_trace_attributes(
        self, span: Span, stamps: Stamps, ids: TraceIds | None = None
    ) -> dict[str, object] | None:
        """Stamp ``stamps`` (validated strings and tuples of strings) where the span has no
        such attribute yet: straight into its attribute mapping where :func:`_direct_store`
        allows (measured 2.2x faster: see benchmarks/span_processor.py). Returns that mapping
        when written directly (room is left for the session and user keys), else ``None``."""
        try:
            existing = span._attributes
        except AttributeError:
            existing = span.attributes
        store = _direct_store(existing, len(stamps) + self._id_keys)
        if store is not None:
            maxlen = existing.maxlen  # type: ignore[union-attr]  # _direct_store checked it
            if maxlen is not None and (len(store) + len(stamps)) * 4 > maxlen * 3:
                _stamp_first(store, stamps)  # a crowded span: see _stamp_first
                return store
            for key, value in stamps:
                if key not in store:  # an explicit attribute wins
                    store[key] = value
            return store
        try:
            self._stamp_into_room(span, existing, stamps, self._id_room(ids))
        except Exception:  # noqa: BLE001 - the trace attributes alone are lost, not the ids
            self._log.exception("trace-attributes", "Could not stamp trace attributes on a span")
        return None

    def _id_room(self, ids: TraceIds | None) -> int:
        """How many attributes the ids of a span will take (all id keys when not yet known)."""
        if ids is None:
            return self._id_keys
        session = len(self._session_targets) + len(self._given_session_targets)
        return (session if ids[0] is not None else 0) + (
            len(self._user_targets) if ids[1] is not None else 0
        )

    def _stamp_into_room(
        self, span: Span, existing: Mapping[str, object] | None, stamps: Stamps, reserved: int
    ) -> None:
        """Stamp ``stamps`` through ``set_attribute``, into the room the span's attribute limit
        leaves (room kept for the ids): the SDK would evict an attribute the span already has
        to make room for one more, and an explicit attribute wins. What does not fit is
        counted and logged."""
        maxlen = getattr(existing, "maxlen", None)
        room = None
        crowded = False  # as in _stamp_trace_attributes: the stamps then go first
        if isinstance(maxlen, int) and existing is not None:
            room = maxlen - len(existing) - reserved
            crowded = (len(existing) + len(stamps)) * 4 > maxlen * 3
        left_out = 0
        stamped: list[tuple[str, object]] = []
        for key, value in stamps:
            if existing and key in existing:
                continue
            if room is not None:
                if room <= 0:
                    left_out += 1
                    continue
                room -= 1
            span.set_attribute(key, value)  # type: ignore[arg-type]
            stamped.append((key, value))
        store = getattr(existing, "_dict", None)
        if crowded and stamped and isinstance(store, dict):
            put_first(store, [key for key, _ in stamped])  # as set_attribute stored them
        if left_out:
            self.dropped_trace_attributes += left_out
            self._log.warning(
                "span-attribute-limit",
                "Not stamping %d trace attribute(s) on a span at its attribute limit (%d, "
                "SpanLimits.max_span_attributes): the span's own attributes are kept",
                left_out,
                maxlen,
            )

    def _resolve_in(self, context: Context, entries: object) -> TraceIds | None:
        """:meth:`_resolve`, as :class:`GeneratedIds` when the scope generated the session.

        Read once per baggage mapping: every scope that records whether its session was
        generated writes that session into a new baggage mapping (see :mod:`.generated`)."""
        ids = self._resolve(entries)
        if not self._given_session_targets or ids is None:
            return ids
        return marked(ids, context.get(GENERATED_SESSION_ID))

    def _resolve(self, entries: object) -> TraceIds | None:
        """The valid session and user ids of a baggage mapping, or ``None``."""
        if not isinstance(entries, Mapping) or not entries:
            return None
        return self._valid_ids_of(entries)

    def _remote_ids(self, context: Context) -> TraceIds | None:
        """Ids withheld from a request's baggage: used when trusted, else reported once."""
        withheld = context.get(WITHHELD_REMOTE_ENTRIES)
        if not isinstance(withheld, Mapping) or not withheld:
            return None
        if self.trust_remote_baggage:
            return self._valid_ids_of(withheld)
        if len(self._told_about_remote) < 2:
            self._tell_about_remote(withheld)
        return None

    def _tell_about_remote(self, withheld: Mapping[str, object]) -> None:
        """Say once that remote ids, and once that remote trace attributes, were ignored."""
        ids = any(key in withheld for key in (*self.session_keys, *self.user_keys))
        what = "session/user ids" if ids else "trace attributes (tags, metadata, environment...)"
        if what in self._told_about_remote:
            return
        self._told_about_remote.add(what)
        logger.warning(
            "Ignoring %s that arrived in a request's baggage header: "
            "a client can write any value there. For a service behind a trusted edge, "
            "use SessionSpanProcessor(trust_remote_baggage=True) or set %s=true.",
            what,
            ENV_TRUST_REMOTE_BAGGAGE,
        )

    def _valid_ids_of(self, entries: Mapping[str, object]) -> TraceIds | None:
        session_id = _first_present(entries, self.session_keys)
        user_id = _first_present(entries, self.user_keys)
        if session_id is not None:
            session_id = self._checked(session_id, "session")
        if user_id is not None:
            user_id = self._checked(user_id, "user")
        if session_id is None and user_id is None:
            return None
        return TraceIds(session_id, user_id)

    def _checked(self, value: object, what: str) -> str | None:
        if isinstance(value, str) and value in self._valid_ids:
            return value
        problem = id_problem(value, self.max_id_length)
        if problem is None and isinstance(value, str):
            if len(self._valid_ids) >= _VALID_CACHE_SIZE:
                self._valid_ids.clear()
            self._valid_ids.add(value)
            return value
        self._log.warning(f"invalid-{what}", "Not stamping a %s id from baggage: %s", what, problem)
        return None


def _stamp_first(store: dict[str, object], stamps: Stamps) -> None:
    """Write ``stamps`` (where ``store`` has no such key) as its *oldest* entries.

    When a span is full, OpenTelemetry's SDK evicts its oldest attribute for each one set
    later: with our stamps oldest (metadata first), an attribute the app sets later evicts a
    stamp, never one of the span's own attributes. Only on crowded spans (a full rebuild)."""
    fresh = [key for key, _ in stamps if key not in store]
    for key, value in stamps:
        if key not in store:  # an explicit attribute wins
            store[key] = value
    put_first(store, fresh)


def put_first(store: dict[str, object], keys: list[str]) -> None:
    """Make ``keys`` (present in ``store``) its oldest entries, the last key first."""
    first = {key: store.pop(key) for key in reversed(keys) if key in store}
    if not first:
        return
    rest = dict(store)
    store.clear()
    store.update(first)
    store.update(rest)


def _direct_store(attributes: object, room: int) -> dict[str, object] | None:
    """The dict inside an SDK span's attributes, if writing ``room`` more valid keys straight
    into it stores exactly what ``set_attribute`` would: a ``BoundedAttributes`` still mutable,
    with no value-length limit (nothing to truncate) and room below ``max_attributes`` (nothing
    evicted, nothing dropped). Else ``None``: then ``set_attribute`` applies the limits.

    Written without the span's and the mapping's locks and without re-validating strings
    this processor validated: in ``on_start`` the span is not yet visible to any other thread.
    """
    if type(attributes) is not BoundedAttributes or attributes.max_value_len is not None:
        return None
    store = getattr(attributes, "_dict", None)
    if not isinstance(store, dict) or getattr(attributes, "_immutable", True):
        return None
    maxlen = attributes.maxlen
    if maxlen is not None and len(store) + room > maxlen:
        return None
    return store


def _note_upstream_root_claim(span: Span, claimed: object) -> None:
    """An upstream Langfuse SDK claimed this trace's root (baggage ``langfuse_trace_id``): the
    span starting under the remote parent is marked as no app root, so the exporter leaves it."""
    parent = span.parent
    if parent is None or not parent.is_remote:
        return
    if isinstance(claimed, str) and claimed.lower() == format_trace_id(span.context.trace_id):
        span.set_attribute(LANGFUSE_IS_APP_ROOT, False)


def _first_present(entries: Mapping[str, object], keys: tuple[str, ...]) -> object:
    for key in keys:
        value = entries.get(key)
        if value is not None:
            return value
    return None
