"""Which session id in force was generated (not given), known cheaply when a span starts.

The OpenTelemetry GenAI conventions ask that ``gen_ai.conversation.id`` not be filled with a
generated fallback. An id made by ``Session.start()`` or by the middleware's
``generate_session`` is recorded in the OTel context (a private context key, never baggage:
nothing of it leaves the process) by the scope that puts it in force; a scope with an id that was
given clears it, so an explicit id equal in value to a generated one stays explicit. The
processor reads the key when it resolves a baggage mapping's ids — once per mapping: whoever
sets the key also writes the session into a new baggage mapping — and remembers the ids as
:class:`GeneratedIds` for the spans of the request that start outside any scope.
"""

from __future__ import annotations

from opentelemetry.context import Context, create_key, get_value, set_value

from ..traces import TraceIds

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
