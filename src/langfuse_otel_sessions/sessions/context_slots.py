"""Our private slots in the OpenTelemetry context (never baggage: nothing of them leaves).

* Baggage entries this package wrote (:func:`with_own_entries`): the outbound policy sends them
  only where the user opted in; elsewhere the app's own value beneath them goes out instead.
* Remote session/user entries the trust boundary withheld (:func:`withheld_remote_entries`),
  read when remote baggage is trusted.
* Whether the session id in force was generated (:data:`GENERATED_SESSION_ID`): the GenAI
  conventions keep generated ids off ``gen_ai.conversation.id``.
* A per-scope box (:data:`PLANS`) where each processor keeps what spans starting in that context
  get, worked out once per scope however requests interleave.
"""

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
#: Context slot: entries the app wrote under a rival session/user key (``session.id``, ...) that
#: a scope removed from the baggage (key -> the app's value).
HIDDEN_APP_ENTRIES = create_key("langfuse-otel-sessions.app-baggage-hidden")
#: Context slot holding the session/user entries withheld from remote baggage.
WITHHELD_REMOTE_ENTRIES = create_key("langfuse-otel-sessions.withheld-remote-baggage")

_EMPTY: Mapping[str, object] = MappingProxyType({})


def with_own_entries(context: Context, entries: Mapping[str, str]) -> Context:
    """``context`` with ``entries`` set in its baggage and recorded as written by this package;
    where one covers a value the package did not write (the app's own, a trusted caller's),
    that value is recorded too (:func:`app_entries_beneath`)."""
    own = get_value(OWN_ENTRIES, context)
    earlier = get_value(APP_ENTRIES_BENEATH, context)
    beneath = dict(earlier) if isinstance(earlier, Mapping) else {}
    for key, value in entries.items():
        previous = baggage.get_baggage(key, context)
        if previous is None:
            beneath.pop(key, None)
        elif not (isinstance(own, Mapping) and own.get(key) == previous):
            beneath[key] = previous  # not ours: the app's value under this scope's
        context = baggage.set_baggage(key, value, context)
    if beneath or earlier:
        context = set_value(APP_ENTRIES_BENEATH, MappingProxyType(beneath), context)
    return mark_own(context, entries)


def without_rival_entries(context: Context, keys: frozenset[str] | set[str]) -> Context:
    """``context`` without the baggage entries under ``keys`` (rival session/user keys, so
    that none outranks a scope's id in the process); a value the package did not write is
    recorded (:func:`hidden_app_entries`) so that it still goes out where the outbound policy
    withholds the package's entries, as if the package had written nothing."""
    own = get_value(OWN_ENTRIES, context)
    hidden: dict[str, object] = {}
    for key in keys:
        value = baggage.get_baggage(key, context)
        if value is None:
            continue
        context = baggage.remove_baggage(key, context)
        if not (isinstance(own, Mapping) and own.get(key) == value):
            hidden[key] = value
    if not hidden:
        return context
    return set_value(
        HIDDEN_APP_ENTRIES, MappingProxyType({**hidden_app_entries(context), **hidden}), context
    )


def hidden_app_entries(context: Context) -> Mapping[str, object]:
    """The app's entries a scope removed from ``context``'s baggage (see
    :func:`without_rival_entries`)."""
    entries = get_value(HIDDEN_APP_ENTRIES, context)
    return entries if isinstance(entries, Mapping) else _EMPTY


def app_entries_beneath(context: Context) -> Mapping[str, object]:
    """The values (key -> value) that entries this package wrote cover in ``context``."""
    entries = get_value(APP_ENTRIES_BENEATH, context)
    return entries if isinstance(entries, Mapping) else _EMPTY


def mark_own(context: Context, entries: Mapping[str, object]) -> Context:
    """``context`` recording ``entries`` (already in its baggage) as written by this package."""
    earlier = get_value(OWN_ENTRIES, context)
    mine = {**earlier, **entries} if isinstance(earlier, Mapping) else dict(entries)
    return set_value(OWN_ENTRIES, MappingProxyType(mine), context)


def without_withheld(context: Context) -> Context:
    """``context`` keeping none of the remote entries the boundary withheld: a processor that
    trusts remote baggage finds nothing there (an untrusting middleware decided the request)."""
    if not withheld_remote_entries(context):
        return context
    return set_value(WITHHELD_REMOTE_ENTRIES, _EMPTY, context)


def withheld_remote_entries(context: Context | None = None) -> Mapping[str, object]:
    """The session/user entries the boundary withheld from the request's remote baggage."""
    entries = get_value(WITHHELD_REMOTE_ENTRIES, context)
    return entries if isinstance(entries, Mapping) else _EMPTY


#: Context slot: the session id the scope in force generated itself, else absent or ``None``.
GENERATED_SESSION_ID = create_key("langfuse-otel-sessions.generated-session-id")


class GeneratedIds(TraceIds):
    """:class:`TraceIds` whose session id was generated (equal to the same plain ids)."""

    __slots__ = ()


def with_session_origin(context: Context, session_id: str, generated: bool) -> Context:
    """``context`` recording whether ``session_id``, just put in force, was generated."""
    if generated:
        return set_value(GENERATED_SESSION_ID, session_id, context)
    if get_value(GENERATED_SESSION_ID, context) is None:
        return context  # the common case: nothing to clear, no copy
    return set_value(GENERATED_SESSION_ID, None, context)


def generated_session_id(context: Context | None = None) -> str | None:
    """The generated session id recorded in ``context`` (default: the current one), if any."""
    value = get_value(GENERATED_SESSION_ID, context)
    return value if isinstance(value, str) else None


def marked(ids: TraceIds | None, generated: object) -> TraceIds | None:
    """``ids`` as :class:`GeneratedIds` when their session id is ``generated`` (the value of
    :data:`GENERATED_SESSION_ID` in the span's context)."""
    if ids is None or generated is None or ids.session_id != generated:
        return ids
    return GeneratedIds(*ids)


#: Context slot: a dict, processor -> what it resolved for this context.
PLANS = create_key("langfuse-otel-sessions.plans")


def with_new_plans(context: Context) -> Context:
    """``context`` with an empty box of its own."""
    return set_value(PLANS, {}, context)
