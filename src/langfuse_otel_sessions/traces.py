"""A bounded memory of session (and user) ids by an integer key.

The exporter remembers the ids it learned from exported spans, per local request (the key is
the local root's span id), to complete spans of the same request exported later. At most
``capacity`` keys are remembered; past that the oldest entry is evicted and counted in
``evicted``.
"""

from __future__ import annotations

import threading
from typing import NamedTuple


class TraceIds(NamedTuple):
    """A session and user id (either may be ``None``)."""

    session_id: str | None
    user_id: str | None


class TraceSessions(dict[int, TraceIds]):
    """Key -> :class:`TraceIds`, bounded.

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
        """Record ``ids`` for ``trace_id``; a known trace that shows another session (user)
        keeps neither: it saw several, and no later span is completed with one of them."""
        known = self.get(trace_id)
        if known == ids:
            return
        with self._lock:
            known = self.get(trace_id)
            if known is not None:
                if known != ids:
                    self[trace_id] = TraceIds(
                        known.session_id if known.session_id == ids.session_id else None,
                        known.user_id if known.user_id == ids.user_id else None,
                    )
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
        """Forget ``trace_id``."""
        if trace_id in self:
            with self._lock:
                self.pop(trace_id, None)
