"""The trust rule, for everything that decides by what a request brought.

What a request brings — its ``baggage`` entries, its ``traceparent``'s sampled flag, its trace
id — counts only where every part of the boundary trusts remote input: the processor that reads
the ids (``trust_remote_baggage``) and every session middleware alive
(``trust_remote_baggage``). A middleware decides its requests, and it may run only after
OpenTelemetry's server span started, so its distrust holds process-wide (the stricter wins, as
for the propagator guard).

Untrusted, only the entries this package vouches for count: those it wrote itself
(``session()``, a middleware's decision, the header source) and, where the global propagator is
an untrusting :class:`~.propagator.BaggageGuard` (which withholds what a request brings), the
application's own. Without a guard, an entry the application set cannot be told apart from one
a client forged (``docs/trust-boundary.md``), so it does not count.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

from opentelemetry import baggage
from opentelemetry.context import Context, get_value

from ..baggage_keys import IdKeys
from ..sessions.context_slots import OWN_ENTRIES
from .propagator import BaggageGuard, decided_entries

_distrusting: weakref.WeakSet[object] = weakref.WeakSet()
_EMPTY: Mapping[str, object] = {}


def distrust_remote(owner: object) -> None:
    """Count ``owner`` — a session middleware that does not trust its callers — for as long as
    it exists."""
    _distrusting.add(owner)


def remote_trusted(reader: IdKeys) -> bool:
    """Whether what a request brought may decide, for a reader with these keys."""
    return reader.trust_remote and not _distrusting


def vouched_entries(context: Context | None) -> Mapping[str, object]:
    """The baggage entries of ``context`` that count when remote input is not trusted."""
    entries = baggage.get_all(context)
    if not entries or _guarded():
        return entries
    own = get_value(OWN_ENTRIES, context)
    vouched = decided_entries() or _EMPTY  # our middleware, outside the server's
    own = own if isinstance(own, Mapping) else _EMPTY
    return {
        key: value
        for key, value in entries.items()
        if own.get(key, _EMPTY) == value or vouched.get(key, _EMPTY) == value
    }


def _guarded() -> bool:
    # Imported here: opentelemetry.propagate loads the propagators OTEL_PROPAGATORS names
    # (langfuse_baggage among them) when first imported.
    from opentelemetry import propagate  # noqa: PLC0415

    textmap = propagate.get_global_textmap()
    return isinstance(textmap, BaggageGuard) and not textmap.trusted
