"""Stamping the ids under other conventions' attribute names too (``also_emit``).

* ``"openinference"``: ``session.id`` and ``user.id`` — what OpenInference instrumentations
  write and Arize Phoenix groups by (also OpenTelemetry's general session and user attributes);
* ``"gen_ai"``: ``gen_ai.conversation.id`` — the OpenTelemetry GenAI conventions' name, stamped
  for ids that were given only, never for generated ones (:mod:`.context_slots`);
* ``"otel"``: both (every OpenTelemetry name other tools read).

Langfuse reads all three too, after ``langfuse.session.id`` / ``langfuse.user.id``, which are
always stamped with the same values.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

from .._logging import logger
from ..attributes import ENV_ALSO_EMIT, GEN_AI_CONVERSATION_ID, SESSION_ID, USER_ID
from ..errors import ConfigurationError

OPENINFERENCE = "openinference"
GEN_AI = "gen_ai"
OTEL = "otel"
#: Each name -> (session keys, user keys, session keys for ids that were given only).
CONVENTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    OPENINFERENCE: ((SESSION_ID,), (USER_ID,), ()),
    GEN_AI: ((), (), (GEN_AI_CONVERSATION_ID,)),
    OTEL: ((SESSION_ID,), (USER_ID,), (GEN_AI_CONVERSATION_ID,)),
}
_KNOWN = ", ".join(repr(name) for name in CONVENTIONS)


class AlsoEmit(NamedTuple):
    """The resolved option: the names, and the attribute keys they add."""

    names: tuple[str, ...] = ()
    session: tuple[str, ...] = ()
    user: tuple[str, ...] = ()
    given_session_only: tuple[str, ...] = ()


def resolve_also_emit(value: str | Sequence[str] | None) -> AlsoEmit:
    """``also_emit`` (a name or names) > ``LANGFUSE_OTEL_ALSO_EMIT`` (comma-separated) > none.

    A bad argument raises :class:`ConfigurationError`; a bad variable warns and emits none."""
    if value is None:
        raw = os.environ.get(ENV_ALSO_EMIT, "")
        names = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
        unknown = [name for name in names if name not in CONVENTIONS]
        if unknown:
            logger.warning(
                "Ignoring %s=%r: expected a comma-separated list of %s; emitting none",
                ENV_ALSO_EMIT,
                raw,
                _KNOWN,
            )
            return AlsoEmit()
    else:
        names = (value,) if isinstance(value, str) else tuple(value)
        if not all(isinstance(name, str) and name in CONVENTIONS for name in names):
            raise ConfigurationError(f"also_emit must be one or more of {_KNOWN}")
    return _keys_of(tuple(dict.fromkeys(names)))


def _keys_of(names: tuple[str, ...]) -> AlsoEmit:
    session: dict[str, None] = {}
    user: dict[str, None] = {}
    given_only: dict[str, None] = {}
    for name in names:
        for keys, into in zip(CONVENTIONS[name], (session, user, given_only), strict=True):
            into.update(dict.fromkeys(keys))
    return AlsoEmit(names, tuple(session), tuple(user), tuple(given_only))
