"""The trust rule for everything that decides by what a request brought (its baggage, its
``traceparent``'s sampled flag): it counts only where the processor and every session middleware
alive trust remote input (the stricter wins). Untrusted, only vouched entries count.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

from opentelemetry import baggage
from opentelemetry.context import Context

from ..baggage_keys import IdKeys
from ..sessions.context_slots import OWN_ENTRIES, entries_in
from .propagator import DECIDED, BaggageGuard

_distrusting: weakref.WeakSet[object] = weakref.WeakSet()


def distrust_remote(owner: object) -> None:
    """Count ``owner``, an untrusting session middleware, for as long as it exists."""
    _distrusting.add(owner)


def remote_trusted(reader: IdKeys) -> bool:
    """Whether what a request brought may decide, for a reader with these keys."""
    return reader.trust_remote and not _distrusting


def vouched_entries(context: Context | None) -> Mapping[str, object]:
    """The baggage entries of ``context`` that count when remote input is not trusted: ours,
    and the app's where an untrusting guard withholds what requests bring."""
    # Imported here: opentelemetry.propagate loads OTEL_PROPAGATORS (langfuse_baggage among them).
    from opentelemetry import propagate  # noqa: PLC0415

    entries, textmap = baggage.get_all(context), propagate.get_global_textmap()
    if not entries or (isinstance(textmap, BaggageGuard) and not textmap.trusted):
        return entries
    own = entries_in(OWN_ENTRIES, context)
    vouched = DECIDED.get() or {}  # our middleware, outside the server's
    return {k: v for k, v in entries.items() if own.get(k) == v or vouched.get(k) == v}
