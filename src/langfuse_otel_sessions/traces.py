"""A bounded memory of which session (and user) each live trace belongs to.

The span processor records a trace's ids the first time it stamps one of its spans, reads them
back for spans that start outside the session's scope (the trace fallback), and releases them
when the trace's local root ends. At most ``capacity`` traces are remembered; past that the oldest
entry is evicted and counted in ``evicted``.
"""

from __future__ import annotations

import threading
import weakref
from typing import NamedTuple


class TraceIds(NamedTuple):
    """The session and user id a trace was stamped with (either may be ``None``)."""

    session_id: str | None
    user_id: str | None


class TraceSessions(dict[int, TraceIds]):
    """Trace id -> :class:`TraceIds`, bounded.

    A ``dict`` so that the look-ups on the span hot path (``in``, ``get``) stay C calls; writes
    go through :meth:`remember` and :meth:`release`, which hold a lock.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.evicted = 0
        self._lock = threading.Lock()

    def remember(self, trace_id: int, ids: TraceIds) -> None:
        """Record ``ids`` for ``trace_id`` unless the trace is already known."""
        if trace_id in self:
            return
        with self._lock:
            if trace_id in self:
                return
            while len(self) >= self.capacity:
                del self[next(iter(self))]
                self.evicted += 1
            self[trace_id] = ids

    def replace(self, trace_id: int, ids: TraceIds | None) -> None:
        """Correct what a known trace is remembered with (``None``: forget it)."""
        with self._lock:
            if trace_id in self:
                if ids is None:
                    del self[trace_id]
                else:
                    self[trace_id] = ids

    def release(self, trace_id: int) -> None:
        """Forget ``trace_id`` (its local root ended)."""
        if trace_id in self:
            with self._lock:
                self.pop(trace_id, None)


# The memories of live span processors, so that an exporter can ask which session a trace
# belongs to without holding a reference to any processor.
_LIVE: weakref.WeakValueDictionary[int, TraceSessions] = weakref.WeakValueDictionary()


def register_live(memory: TraceSessions) -> None:
    """Make ``memory`` visible to :func:`lookup_live` for as long as it exists."""
    _LIVE[id(memory)] = memory


def any_live() -> bool:
    """Whether any span processor's memory is alive (so some processor can stamp spans)."""
    return len(_LIVE) > 0


def lookup_live(trace_id: int) -> TraceIds | None:
    """The ids any live processor remembers for ``trace_id``."""
    for memory in list(_LIVE.values()):
        ids = memory.get(trace_id)
        if ids is not None:
            return ids
    return None


def correct_live(trace_id: int, ids: TraceIds | None) -> None:
    """Correct what live processors remember for ``trace_id`` (after an untrusted id was
    stamped on its server span): ``ids`` replaces it, ``None`` forgets it."""
    for memory in list(_LIVE.values()):
        memory.replace(trace_id, ids)
