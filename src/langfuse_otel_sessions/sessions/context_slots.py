"""Our private slots in the OpenTelemetry context (never baggage: nothing of them leaves)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from opentelemetry import baggage
from opentelemetry.context import Context, create_key, get_value, set_value

from ..ids import TraceIds

#: Context slot: the baggage entries (key -> value) this package wrote.
OWN_ENTRIES = create_key("langfuse-otel-sessions.own-baggage")
#: Context slot: for the entries this package wrote over a value it did not write, that value.
APP_ENTRIES_BENEATH = create_key("langfuse-otel-sessions.app-baggage-beneath")
#: Context slot: the app's entries under rival session/user keys a scope removed (key -> value).
HIDDEN_APP_ENTRIES = create_key("langfuse-otel-sessions.app-baggage-hidden")
#: Context slot holding the session/user entries withheld from remote baggage.
WITHHELD_REMOTE_ENTRIES = create_key("langfuse-otel-sessions.withheld-remote-baggage")
#: Context slot: the session id the scope in force generated itself, else absent or ``None``.
GENERATED_SESSION_ID = create_key("langfuse-otel-sessions.generated-session-id")
#: Context slot: a scope's box, processor -> what it resolved for a context of that scope.
PLANS = create_key("langfuse-otel-sessions.plans")

_EMPTY: Mapping[str, object] = MappingProxyType({})


def entries_in(slot: str, context: Context | None = None) -> Mapping[str, object]:
    """The mapping held in ``slot`` of ``context`` (default: the current one), else empty."""
    entries = get_value(slot, context)
    return entries if isinstance(entries, Mapping) else _EMPTY


def with_own_entries(context: Context, entries: Mapping[str, str]) -> Context:
    """``context`` with ``entries`` in its baggage, recorded as ours (and the app's beneath)."""
    own = entries_in(OWN_ENTRIES, context)
    earlier = entries_in(APP_ENTRIES_BENEATH, context)
    beneath = dict(earlier)
    for key, value in entries.items():
        previous = baggage.get_baggage(key, context)
        if previous is None:
            beneath.pop(key, None)
        elif own.get(key) != previous:
            beneath[key] = previous  # not ours: the app's value under this scope's
        context = baggage.set_baggage(key, value, context)
    if beneath or earlier:
        context = set_value(APP_ENTRIES_BENEATH, MappingProxyType(beneath), context)
    return mark_own(context, entries)


def without_rival_entries(context: Context, keys: frozenset[str] | set[str]) -> Context:
    """``context`` without the baggage entries under ``keys`` (the app's recorded as hidden)."""
    own = entries_in(OWN_ENTRIES, context)
    hidden: dict[str, object] = {}
    for key in keys:
        value = baggage.get_baggage(key, context)
        if value is not None:
            context = baggage.remove_baggage(key, context)
            if own.get(key) != value:
                hidden[key] = value
    if not hidden:
        return context
    merged = MappingProxyType({**entries_in(HIDDEN_APP_ENTRIES, context), **hidden})
    return set_value(HIDDEN_APP_ENTRIES, merged, context)


def mark_own(context: Context, entries: Mapping[str, object]) -> Context:
    """``context`` recording ``entries`` (already in its baggage) as written by this package."""
    mine = MappingProxyType({**entries_in(OWN_ENTRIES, context), **entries})
    return set_value(OWN_ENTRIES, mine, context)


def without_withheld(context: Context) -> Context:
    """``context`` where a processor that trusts remote baggage finds none withheld."""
    if not withheld_remote_entries(context):
        return context
    return set_value(WITHHELD_REMOTE_ENTRIES, _EMPTY, context)


def withheld_remote_entries(context: Context | None = None) -> Mapping[str, object]:
    """The session/user entries the boundary withheld from the request's remote baggage."""
    return entries_in(WITHHELD_REMOTE_ENTRIES, context)


class GeneratedIds(TraceIds):
    """:class:`TraceIds` whose session id was generated (equal to the same plain ids)."""

    __slots__ = ()


def with_session_origin(context: Context, session_id: str, generated: bool) -> Context:
    """``context`` recording whether ``session_id``, just put in force, was generated."""
    if generated or get_value(GENERATED_SESSION_ID, context) is not None:
        return set_value(GENERATED_SESSION_ID, session_id if generated else None, context)
    return context  # the common case: nothing to clear, no copy
