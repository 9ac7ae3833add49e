"""`SessionSpanProcessor`: stamps the ids and trace attributes from baggage on every span."""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Collection, Mapping, Sequence
from typing import NamedTuple

from opentelemetry import baggage
from opentelemetry.context import Context, get_current
from opentelemetry.sdk.trace import Span, SpanLimits, SpanProcessor
from opentelemetry.trace import format_trace_id
from opentelemetry.util.types import AttributeValue

from .._logging import RateLimitedLog, logger
from ..attributes import (
    BAGGAGE_LANGFUSE_TRACE_ID,
    DEFAULT_SESSION_BAGGAGE_KEYS,
    DEFAULT_USER_BAGGAGE_KEYS,
    ENV_ALSO_EMIT,
    ENV_SESSION_BAGGAGE_KEYS,
    ENV_TRUST_REMOTE_BAGGAGE,
    ENV_USER_BAGGAGE_KEYS,
    GEN_AI_CONVERSATION_ID,
    LANGFUSE_ENVIRONMENT,
    LANGFUSE_IS_APP_ROOT,
    LANGFUSE_SESSION_ID,
    LANGFUSE_USER_ID,
    SESSION_ATTRIBUTE_KEYS,
    SESSION_ID,
    SPAN_ENVIRONMENT_KEYS,
    USER_ATTRIBUTE_KEYS,
    USER_ID,
)
from ..baggage_keys import IdKeys, register_reader
from ..boundary.outbound import resolve_outbound_policy
from ..environment import env_bool, env_keys
from ..errors import ConfigurationError
from ..ids import TraceIds
from ..sessions._setup_warnings import note_processor
from ..sessions.context import ids_of
from ..sessions.context_slots import (
    GENERATED_SESSION_ID,
    PLANS,
    WITHHELD_REMOTE_ENTRIES,
    GeneratedIds,
)
from ..sessions.trace_attributes import Stamps, stamps_of
from .memory import MEMORY, Request

_SESSION_ATTRIBUTES = frozenset(SESSION_ATTRIBUTE_KEYS)
_USER_ATTRIBUTES = frozenset(USER_ATTRIBUTE_KEYS)


class _Plan(NamedTuple):
    """What spans starting in one baggage get, and what it was resolved from."""

    entries: Mapping[str, object]
    withheld: object
    generated: object
    ids: TraceIds | None
    stamps: Stamps  # trace attributes, validated
    attributes: dict[str, AttributeValue]  # the ids on every target key, then the stamps


#: A context held by a processor (in the box of its scope), its attributes, ``MEMORY.splits``
#: when every span started there was known to be in the request noted (else -1), its plan.
_Held = tuple["weakref.ref[Context]", dict[str, AttributeValue], int, _Plan]


#: ``also_emit`` names: do they add ``session.id``/``user.id``, ``gen_ai.conversation.id``?
_ALSO_EMIT = {"openinference": (True, False), "gen_ai": (False, True), "otel": (True, True)}
_KNOWN = ", ".join(map(repr, _ALSO_EMIT))


def keys_option(
    name: str, value: Collection[str] | None, env: str, default: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """A collection of non-empty strings > the variable ``env`` (comma-separated) > default."""
    if value is None:
        return env_keys(env, default)
    if isinstance(value, str) or not all(isinstance(k, str) and k for k in value):
        raise ConfigurationError(f"{name} must be a collection of non-empty strings")
    return tuple(value)


def _also_emit(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``also_emit`` > ``LANGFUSE_OTEL_ALSO_EMIT`` (a bad value warns, emits none) > none."""
    if value is not None:
        names = (value,) if isinstance(value, str) else tuple(value)
        if not all(isinstance(name, str) and name in _ALSO_EMIT for name in names):
            raise ConfigurationError(f"also_emit must be one or more of {_KNOWN}")
        return tuple(dict.fromkeys(names))
    names = tuple(name.lower() for name in env_keys(ENV_ALSO_EMIT, ()))
    if all(name in _ALSO_EMIT for name in names):
        return tuple(dict.fromkeys(names))
    raw = os.environ[ENV_ALSO_EMIT]
    logger.warning("Ignoring %s=%r: expected some of %s", ENV_ALSO_EMIT, raw, _KNOWN)
    return ()


class SessionSpanProcessor(SpanProcessor):
    """Stamps the ids and trace attributes in baggage on every span (``docs/sessions.md``)."""

    def __init__(
        self,
        *,
        session_keys: Sequence[str] | None = None,
        user_keys: Sequence[str] | None = None,
        also_emit: str | Sequence[str] | None = None,
        trust_remote_baggage: bool | None = None,
        propagate_session_to: Sequence[str] | None = None,
    ) -> None:
        self.session_keys = keys_option(
            "session_keys", session_keys, ENV_SESSION_BAGGAGE_KEYS, DEFAULT_SESSION_BAGGAGE_KEYS
        )
        self.user_keys = keys_option(
            "user_keys", user_keys, ENV_USER_BAGGAGE_KEYS, DEFAULT_USER_BAGGAGE_KEYS
        )
        if trust_remote_baggage is None:
            trust_remote_baggage = env_bool(ENV_TRUST_REMOTE_BAGGAGE, False)
        self.trust_remote_baggage = bool(trust_remote_baggage)
        if propagate_session_to is not None:
            resolve_outbound_policy(propagate_session_to)  # a bad argument raises here
        self.propagate_session_to = propagate_session_to
        self.also_emit = _also_emit(also_emit)
        plain = any(_ALSO_EMIT[name][0] for name in self.also_emit)
        #: Stamped with session ids that were given only (not with generated ones).
        given = (GEN_AI_CONVERSATION_ID,) if any(_ALSO_EMIT[n][1] for n in self.also_emit) else ()
        #: Registered so that ``session()``, the guard and the middleware know these keys too.
        self.keys = IdKeys(
            session=self.session_keys,
            user=self.user_keys,
            session_attributes=(LANGFUSE_SESSION_ID, *((SESSION_ID,) if plain else ()), *given),
            given_session_attributes=given,
            user_attributes=(LANGFUSE_USER_ID, *((USER_ID,) if plain else ())),
            trust_remote=self.trust_remote_baggage,
        )
        register_reader(self.keys)
        #: Trace attributes fill at most three quarters of the span attribute limit.
        self._max_attributes = SpanLimits().max_span_attributes
        self._room = sys.maxsize if self._max_attributes is None else self._max_attributes * 3 // 4
        self._guarded = frozenset(
            (*SESSION_ATTRIBUTE_KEYS, *USER_ATTRIBUTE_KEYS, *SPAN_ENVIRONMENT_KEYS)
        ).union(self.keys.session_attributes, self.keys.user_attributes)
        self._last: _Held | None = None  # for contexts outside any scope
        self._log = RateLimitedLog()
        #: Trace attributes left out because a span had no room left.
        self.dropped_trace_attributes = 0
        note_processor(self)  # a session set with no processor alive warns

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            context = get_current() if parent_context is None else parent_context
            box: dict[object, _Held] | None = context.get(PLANS)  # type: ignore[assignment]
            held = self._last if box is None else box.get(self)  # a scope's box: its contexts'
            if held is None or held[0]() is not context or held[2] != MEMORY.splits:
                attributes = self._hold(span, context, box, held)
            else:  # a context met before (contexts never change): one more span in its request
                attributes = held[1]
            if attributes:
                existing = span.attributes
                if existing or len(attributes) > self._room:
                    attributes = self._fitting(existing or {}, attributes)
                if len(attributes) > 2:  # measured: one call for many, one per key for a few
                    span.set_attributes(attributes)
                else:
                    for key, value in attributes.items():
                        span.set_attribute(key, value)
        except Exception:  # noqa: BLE001 - never raise into the host application
            self._log.exception("on_start", "SessionSpanProcessor could not stamp a span")

    def _hold(
        self, span: Span, context: Context, box: dict[object, _Held] | None, held: _Held | None
    ) -> dict[str, AttributeValue]:
        """A span in a context not held yet, a root, or in a fallback: its plan and request."""
        plan = self._plan(context, held)
        attributes = plan.attributes
        span_context = span.context
        parent = span.parent
        splits, noted = -1, MEMORY.splits  # read first: a split after the look-up is seen
        if parent is None or parent.is_remote:
            request = MEMORY.new(span, span_context, self.keys)
            if parent is not None:  # no app root if an upstream Langfuse SDK claimed it
                claimed = plan.entries.get(BAGGAGE_LANGFUSE_TRACE_ID)
                trace_id = format_trace_id(span_context.trace_id)
                if isinstance(claimed, str) and claimed.lower() == trace_id:
                    attributes = {**attributes, LANGFUSE_IS_APP_ROOT: False}
        else:
            request = MEMORY.traces.get(span_context.trace_id)  # type: ignore[assignment]
            if type(request) is not Request:
                request = MEMORY.child(span, parent.span_id, self.keys)
            elif plan.ids is not None:  # the request of every span here: noted once, not per span
                splits = noted
        if request is not None:
            if plan.ids is not None:
                request.note(plan.ids)
            elif request.ids is not None:  # the fallback: the ids in force last in it
                attributes = {**self._attributes(request.ids, ()), **attributes}
            if plan.stamps:
                request.note_attributes(plan.stamps)
        held = (weakref.ref(context), plan.attributes, splits, plan)
        if box is None:
            self._last = held
        else:
            box[self] = held
        return attributes

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered (OpenTelemetry 1.30's default, ``None``, reads as a failure)."""
        return True

    def _plan(self, context: Context, held: _Held | None) -> _Plan:
        """The plan held, if for this context or the same baggage, else a new one."""
        if held is not None and held[0]() is context:
            return held[3]
        entries = baggage.get_all(context)
        withheld = context.get(WITHHELD_REMOTE_ENTRIES)
        generated = context.get(GENERATED_SESSION_ID)
        if held is not None and held[3][:3] == (entries, withheld, generated):
            return held[3]  # the same baggage in another context
        ids = self._valid_ids_of(entries) if entries else None
        stamps = self._stamps(entries) if entries else ()
        if ids is None and withheld and isinstance(withheld, Mapping):
            if self.trust_remote_baggage:
                ids = self._valid_ids_of(withheld)
                stamps = (*stamps, *self._stamps(withheld))
            else:
                self._tell_about_remote(withheld)
        if ids is not None and generated is not None and ids.session_id == generated:
            ids = GeneratedIds(*ids)  # kept off the given-only keys
        return _Plan(entries, withheld, generated, ids, stamps, self._attributes(ids, stamps))

    def _attributes(self, ids: TraceIds | None, stamps: Stamps) -> dict[str, AttributeValue]:
        """The ids on every key this processor stamps them on (a generated session id: not on
        the given-only keys), then ``stamps``."""
        keys, (session_id, user_id) = self.keys, ids or (None, None)
        session = () if session_id is None else keys.session_attributes
        if type(ids) is GeneratedIds:
            session = tuple(key for key in session if key not in keys.given_session_attributes)
        attributes: dict[str, AttributeValue] = dict.fromkeys(session, session_id)
        if user_id is not None:
            attributes.update(dict.fromkeys(keys.user_attributes, user_id))
        attributes.update(stamps)  # type: ignore[arg-type]  # stamps hold valid values
        return attributes

    def _fitting(
        self, existing: Mapping[str, object], attributes: dict[str, AttributeValue]
    ) -> dict[str, AttributeValue]:
        """``attributes`` the span lacks, within three quarters of its attribute limit."""
        has, keys = existing.keys(), self.keys
        fits = len(has) + len(attributes) <= self._room
        if fits and has.isdisjoint(self._guarded) and has.isdisjoint(attributes):
            return attributes
        kept = set(has)  # the span's own attributes win, and so do a session, user, environment
        if not _SESSION_ATTRIBUTES.isdisjoint(has):
            kept.update(keys.session_attributes)
        if not _USER_ATTRIBUTES.isdisjoint(has):
            kept.update(keys.user_attributes)
        if any(existing.get(key) for key in SPAN_ENVIRONMENT_KEYS):
            kept.add(LANGFUSE_ENVIRONMENT)
        fitting = {k: v for k, v in attributes.items() if k not in kept}
        id_keys = (*keys.session_attributes, *keys.user_attributes)
        ids = {k: v for k, v in fitting.items() if k in id_keys}
        room = max(self._room - len(has) - len(ids), 0)
        left_out = len(fitting) - len(ids) - room
        if left_out > 0:
            self.dropped_trace_attributes += left_out
            self._log.warning(
                "span-attribute-limit",
                "Not stamping %d trace attribute(s) on a span at its attribute limit (%d, "
                "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT): the span's own attributes are kept",
                left_out,
                self._max_attributes,
            )
            fitting = {**ids, **dict([i for i in fitting.items() if i[0] not in ids][:room])}
        return fitting

    def _stamps(self, entries: Mapping[str, object]) -> Stamps:
        """The trace attributes of a baggage mapping (validated; problems logged, rate-limited)."""
        problems: list[str] = []
        stamps = stamps_of(entries, problems, self._max_attributes)
        if problems:
            self._log.warning(
                "invalid-trace-attribute",
                "Not stamping trace attributes from baggage: %s",
                "; ".join(problems),
            )
        return stamps

    def _tell_about_remote(self, withheld: Mapping[str, object]) -> None:
        """Say (rate-limited) that remote ids, or remote trace attributes, were ignored."""
        ids = not withheld.keys().isdisjoint((*self.session_keys, *self.user_keys))
        self._log.warning(
            f"remote-{ids}",
            "Ignoring %s that arrived in a request's baggage header: a client can write any "
            "value there. For a service behind a trusted edge, use "
            "SessionSpanProcessor(trust_remote_baggage=True) or set %s=true.",
            "session/user ids" if ids else "trace attributes (tags, metadata, environment...)",
            ENV_TRUST_REMOTE_BAGGAGE,
        )

    def _valid_ids_of(self, entries: Mapping[str, object]) -> TraceIds | None:
        session_id, user_id = ids_of(entries, self.keys, self._log)
        return None if session_id is None and user_id is None else TraceIds(session_id, user_id)
