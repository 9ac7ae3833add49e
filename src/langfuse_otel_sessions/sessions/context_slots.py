"""Our private slots in the OpenTelemetry context (never baggage: nothing of them leaves)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    return entries if isinstance(entries, MappingProxyType) else _EMPTY  # what our slots hold


def with_own_entries(
    context: Context,
    entries: Mapping[str, str],
    rivals: Iterable[str] = (),
    slots: Mapping[str, object] = _EMPTY,
) -> Context:
    """``context`` without the baggage entries under ``rivals`` (the app's recorded as hidden),
    with ``entries`` in its baggage, recorded as ours (and the app's beneath), and ``slots``."""
    start, present = context, baggage.get_all(context)
    own, hidden = entries_in(OWN_ENTRIES, context), {}
    for key in rivals:
        if (value := present.get(key)) is not None:
            context = baggage.remove_baggage(key, context)
            if own.get(key) != value:
                hidden[key] = value
    earlier = entries_in(APP_ENTRIES_BENEATH, context)
    beneath = dict(earlier) if earlier else {}  # a mapping proxy is slow to copy
    present = present if context is start else baggage.get_all(context)
    for key, value in entries.items():
        if (previous := present.get(key)) is None:
            beneath.pop(key, None)
        elif own.get(key) != previous:
            beneath[key] = previous  # not ours: the app's value under this scope's
        context = baggage.set_baggage(key, value, context)
    values = context.copy()  # one copy for every slot (set_value copies the context each)
    if hidden:
        merged = {**entries_in(HIDDEN_APP_ENTRIES, context), **hidden}
        values[HIDDEN_APP_ENTRIES] = MappingProxyType(merged)
    if beneath or earlier:
        values[APP_ENTRIES_BENEATH] = MappingProxyType(beneath)
    if entries:
        values[OWN_ENTRIES] = MappingProxyType({**own, **entries} if own else dict(entries))
    values.update(slots)
    return Context(values)


def mark_own(context: Context, entries: Mapping[str, object]) -> Context:
    """``context`` recording ``entries`` (already in its baggage) as written by this package."""
    mine = MappingProxyType({**entries_in(OWN_ENTRIES, context), **entries})
    return set_value(OWN_ENTRIES, mine, context)


def without_withheld(context: Context) -> Context:
    """``context`` where a processor that trusts remote baggage finds none withheld."""
    if not context.get(WITHHELD_REMOTE_ENTRIES):  # the usual case: a look-up, no call
        return context
    return set_value(WITHHELD_REMOTE_ENTRIES, _EMPTY, context)


def withheld_remote_entries(context: Context | None = None) -> Mapping[str, object]:
    """The session/user entries the boundary withheld from the request's remote baggage."""
    return entries_in(WITHHELD_REMOTE_ENTRIES, context)


class GeneratedIds(TraceIds):
    """:class:`TraceIds` whose session id was generated (equal to the same plain ids)."""

    __slots__ = ()
