"""The trace attributes one local request showed, to complete its spans that lack them.

The processor notes the trace attributes of every scope in force when a span of the request
starts (only when they change: once per scope, not per span); the exporter fills them onto the
request's spans exported without them — a server span started before the scope, a parent
span, spans ended before the scope was entered and held for a late session. Explicit
attributes on a span always win. When the request showed different values for one key, Langfuse
would show one of them depending on which span it wrote last, so (``docs/trace-attributes.md``):

* tags: the union of every tag shown (what Langfuse's legacy path shows; on v4, which keeps the
  last list written, the local root ending last then shows it too);
* every other key (environment, release, version, trace name, each metadata key): filled only
  when the request showed one value for it; a key with conflicting values is left as it is.

Bounded: at most :data:`MAX_REQUEST_ATTRIBUTE_BYTES` per request, estimated per entry as its
key and value plus :data:`ENTRY_OVERHEAD` (measured in ``tests/test_request_attributes.py``).
Past the bound, new keys are not remembered: counted in :data:`DROPPED` and logged.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from .._logging import RateLimitedLog
from ..attributes import LANGFUSE_TRACE_TAGS

#: The most one request remembers, in (estimated) bytes.
MAX_REQUEST_ATTRIBUTE_BYTES = 16 * 1024
#: The estimated cost of one remembered entry beyond its text: its dict slot and string headers.
ENTRY_OVERHEAD = 160
_CONFLICT = object()
#: Taken only when a request's scope attributes change (and to create its record).
LOCK = threading.Lock()
_log = RateLimitedLog()


class _Counter:
    __slots__ = ("dropped",)

    def __init__(self) -> None:
        self.dropped = 0


#: Entries not remembered because a request reached its bound (process-wide).
DROPPED = _Counter()


class RequestAttributes:
    """The trace attributes shown in one local request (see the module docstring)."""

    __slots__ = ("_fills", "last", "size", "tags", "values")

    def __init__(self) -> None:
        self.last: object = None
        self.values: dict[str, object] = {}
        self.tags: dict[str, None] = {}
        self.size = 0
        self._fills: dict[str, object] | None = None

    def note(self, stamps: tuple[tuple[str, object], ...]) -> None:
        """Record the attributes of the scope in force for a span just started."""
        if stamps is self.last:
            return
        with LOCK:
            self.last = stamps
            self._fills = None
            for key, value in stamps:
                if key == LANGFUSE_TRACE_TAGS and isinstance(value, tuple):
                    for tag in value:
                        if tag not in self.tags and self._room(key, tag):
                            self.tags[tag] = None
                    continue
                known = self.values.get(key)
                if known is None:
                    if self._room(key, value):
                        self.values[key] = value
                elif known is not _CONFLICT and known != value:
                    self.values[key] = _CONFLICT

    def _room(self, key: str, value: object) -> bool:
        cost = ENTRY_OVERHEAD + len(key) + (len(value) if isinstance(value, str) else 0)
        if self.size + cost > MAX_REQUEST_ATTRIBUTE_BYTES:
            DROPPED.dropped += 1
            _log.warning(
                "request-attributes-full",
                "A request showed more trace attributes than the %d bytes remembered per "
                "request; spans exported without them are not completed with the rest "
                "(%d entries left out so far)",
                MAX_REQUEST_ATTRIBUTE_BYTES,
                DROPPED.dropped,
            )
            return False
        self.size += cost
        return True

    def fills(self) -> Mapping[str, object]:
        """What a span of the request lacking a key gets: unambiguous values and all tags."""
        fills = self._fills
        if fills is None:
            with LOCK:
                fills = {k: v for k, v in self.values.items() if v is not _CONFLICT}
                if self.tags:
                    fills[LANGFUSE_TRACE_TAGS] = tuple(self.tags)
                self._fills = fills
        return fills

    def __repr__(self) -> str:
        return f"RequestAttributes(keys={len(self.values)}, tags={len(self.tags)})"
