"""Holding ended spans of a running local request until its session is known.

Langfuse sums a session's cost and usage over the observations whose *own* session id is set.
When a request learns its session late (an agent resolves the conversation after its setup
steps), the spans that ended before were exported without it. So the exporter holds the ended
spans of a local request that is still running and has no session yet, and sends them, completed
with the session, as soon as the request has one or its local root ends.

Bounds: a request's spans are held at most ``max_seconds`` after the first of them (checked at
each export), and at most ``max_spans`` spans in all (past that, the requests held longest are
sent as they are, counted in ``released_early``). ``force_flush`` and ``shutdown`` send
everything held. Spans of requests whose session is known, spans the processor did not see, and
requests that ended without a session are never delayed.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan

from .._logging import logger
from ..attributes import ENV_LATE_SESSION_MAX_SPANS, ENV_LATE_SESSION_SECONDS
from ..environment import env_positive_int
from ..errors import ConfigurationError
from ..spans.local_requests import LocalRequest, request_of
from .mapping import ids_of

DEFAULT_LATE_SESSION_SECONDS = 30.0
DEFAULT_LATE_SESSION_MAX_SPANS = 4096


def late_session_seconds(value: float | None) -> float:
    """Explicit argument > ``LANGFUSE_OTEL_LATE_SESSION_SECONDS`` > 30; ``0`` turns holding off."""
    if value is None:
        raw = os.environ.get(ENV_LATE_SESSION_SECONDS, "").strip()
        if not raw:
            return DEFAULT_LATE_SESSION_SECONDS
        try:
            parsed = float(raw)
        except ValueError:
            parsed = -1.0
        if not math.isfinite(parsed) or parsed < 0:
            logger.warning(
                "%s must be a number of seconds >= 0; using %s",
                ENV_LATE_SESSION_SECONDS,
                DEFAULT_LATE_SESSION_SECONDS,
            )
            return DEFAULT_LATE_SESSION_SECONDS
        return parsed
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError("late_session_seconds must be a number of seconds >= 0")
    if not math.isfinite(value):
        raise ConfigurationError("late_session_seconds must be finite")
    return float(value)


def late_session_max_spans(value: int | None) -> int:
    """Explicit argument > ``LANGFUSE_OTEL_LATE_SESSION_MAX_SPANS`` > 4096."""
    if value is None:
        return env_positive_int(ENV_LATE_SESSION_MAX_SPANS, DEFAULT_LATE_SESSION_MAX_SPANS)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError("late_session_max_spans must be a positive integer")
    return value


class _Held:
    __slots__ = ("deadline", "request", "spans")

    def __init__(self, request: LocalRequest, deadline: float) -> None:
        self.request = request
        self.deadline = deadline
        self.spans: list[ReadableSpan] = []


class LateSessionHold:
    """The spans held back, per local request; thread-safe."""

    def __init__(
        self,
        max_seconds: float,
        max_spans: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_seconds = max_seconds
        self.max_spans = max_spans
        self.released_early = 0  # sent without waiting longer: too old or over the bound
        self._clock = clock
        self._held: dict[int, _Held] = {}  # insertion order: oldest first
        self._count = 0
        self._lock = threading.Lock()

    @property
    def held_spans(self) -> int:
        """Spans held now."""
        return self._count

    def take(
        self, spans: Sequence[ReadableSpan], knows_session: Callable[[int], bool]
    ) -> list[ReadableSpan]:
        """The spans to send now: those of ``spans`` not held, and held ones now released.
        ``knows_session(key)``: the exporter learned a session for that request already."""
        if self.max_seconds <= 0 and not self._held:
            return list(spans)
        now = self._clock()
        send: list[ReadableSpan] = []
        with self._lock:
            for span in spans:
                request = request_of(span.context)
                if self._holds(span, request, knows_session):
                    assert request is not None  # noqa: S101 - _holds checked it
                    held = self._held.get(request.key)
                    if held is None:
                        held = self._held[request.key] = _Held(request, now + self.max_seconds)
                    held.spans.append(span)
                    self._count += 1
                else:
                    send.append(span)
            send.extend(self._released(now, knows_session))
        return send

    def drain(self) -> list[ReadableSpan]:
        """Everything held (``force_flush``, ``shutdown``)."""
        with self._lock:
            spans = [span for held in self._held.values() for span in held.spans]
            self._held.clear()
            self._count = 0
        return spans

    def _holds(
        self,
        span: ReadableSpan,
        request: LocalRequest | None,
        knows_session: Callable[[int], bool],
    ) -> bool:
        if self.max_seconds <= 0 or request is None or not request.open:
            return False
        context = span.context
        if context is None or context.span_id == request.key:  # the local root itself
            return False
        if request.ids is not None and request.ids.session_id is not None:
            return False
        own = ids_of(span)
        if own is not None and own.session_id is not None:
            return False
        return not knows_session(request.key)

    def _released(self, now: float, knows_session: Callable[[int], bool]) -> list[ReadableSpan]:
        released: list[ReadableSpan] = []
        for key in list(self._held):
            held = self._held[key]
            request = held.request
            known = (
                not request.open
                or (request.ids is not None and request.ids.session_id is not None)
                or knows_session(key)
            )
            if known or now >= held.deadline:
                if not known:
                    self.released_early += len(held.spans)
                released.extend(held.spans)
                self._count -= len(held.spans)
                del self._held[key]
        while self._count > self.max_spans:  # the bound: the requests held longest go first
            key = next(iter(self._held))
            held = self._held.pop(key)
            self.released_early += len(held.spans)
            self._count -= len(held.spans)
            released.extend(held.spans)
        return released
