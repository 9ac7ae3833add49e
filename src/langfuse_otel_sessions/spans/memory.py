"""The one memory per local request, bounded by one byte budget.

A *local request* is a local root span (no parent, or a parent from another process) and every
span started under it in this process. For each one this module remembers what the processor
and the exporter need once a span has left the context it started in:

* the ids in force last (the processor's fallback for spans started outside any scope, and the
  exporter's completion of spans exported without them); ``mixed`` when it saw two sessions;
* the trace attributes its scopes showed (tags add up; a key shown with two values is left out);
* its ended spans held until its session is known (:class:`LateSessionHold`).

Keyed by local request, never by trace id: a request that joins a trace with a forged or leaked
``traceparent`` shares nothing with the other requests of that trace. A map of our own, keyed by
span id, finds a span's request; nothing is stored on OpenTelemetry's objects.

One budget (:data:`REQUEST_MEMORY_BYTES`, 64 MiB) counts all of it: per request and per
span an estimate, the remembered trace attributes (at most 16 KiB a request) and the held spans'
attributes and events (``sys.getsizeof``: the bytes the strings really take, for any text). An
ended span or request stays known :data:`LINGER_SECONDS` (its batches are exported later).
Over the budget, the oldest ended ones are forgotten first, then the oldest running requests;
held spans fill at most three quarters of it, past which a span is sent as it is. Each is
counted (``MEMORY.over_budget``) and logged.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan

from .._logging import RateLimitedLog
from ..attributes import LANGFUSE_SESSION_ID, LANGFUSE_TRACE_TAGS, LANGFUSE_USER_ID
from ..baggage_keys import IdKeys
from ..ids import TraceIds
from ..sessions.context_slots import GeneratedIds
from ..sessions.trace_attributes import Stamps

REQUEST_MEMORY_BYTES = 64 * 1024 * 1024
#: The most one request remembers of trace attributes (keys and values, as stored).
MAX_REQUEST_ATTRIBUTE_BYTES = 16 * 1024
#: How long an ended request stays known to spans exported after its root.
LINGER_SECONDS = 30.0
#: Estimates: a request's record, and a span's entry in the index (measured in the tests).
REQUEST_BYTES = 512
SPAN_BYTES = 160
ENTRY_BYTES = 120
_CONFLICT = object()
_log = RateLimitedLog()


def _size(value: object) -> int:
    if isinstance(value, tuple):
        return sys.getsizeof(value) + sum(sys.getsizeof(item) for item in value)
    return sys.getsizeof(value)


def span_bytes(span: ReadableSpan) -> int:
    """What holding ``span`` costs: its attributes and its events' attributes, as stored."""
    total = SPAN_BYTES * 4
    for attributes in (span.attributes, *(event.attributes for event in span.events)):
        for key, value in (attributes or {}).items():
            total += ENTRY_BYTES + sys.getsizeof(key) + _size(value)
    return total


class Request:
    """What one local request showed (see the module docstring)."""

    __slots__ = (
        *("attribute_bytes", "bytes", "ended", "ids", "key", "last", "mixed", "open"),
        *("tags", "targets", "values"),
    )

    def __init__(self, key: int, targets: IdKeys | None) -> None:
        self.key = key
        self.targets = targets  # the keys of the processor that saw it: where ids are stamped
        self.ids: TraceIds | None = None
        self.mixed = False
        self.open = True
        self.ended = 0.0
        self.values: dict[str, object] = {}
        self.tags: dict[str, None] = {}
        self.bytes = REQUEST_BYTES  # its record and trace attributes (its spans: by the index)
        self.attribute_bytes = 0
        self.last: object = None  # the stamps noted last (each scope's are noted once)

    def note(self, ids: TraceIds) -> None:
        """Record the ids in force for a span just started in this request."""
        previous = self.ids
        if previous is not ids:
            if (
                previous is not None
                and previous.session_id is not None
                and ids.session_id not in (None, previous.session_id)
            ):
                self.mixed = True
            self.ids = ids

    def known(self) -> TraceIds | None:
        """The ids its spans are completed with (no session when it saw several)."""
        ids = self.ids
        if ids is not None and self.mixed:
            return TraceIds(None, ids.user_id)
        return ids

    def note_attributes(self, stamps: Iterable[tuple[str, object]]) -> None:
        """Record the trace attributes of the scope in force for a span just started."""
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
        cost = ENTRY_BYTES + sys.getsizeof(key) + _size(value)
        if self.attribute_bytes + cost > MAX_REQUEST_ATTRIBUTE_BYTES:
            MEMORY.refuse(
                "A request showed more trace attributes than the %d bytes remembered per "
                "request; spans exported without them are not completed with the rest",
                MAX_REQUEST_ATTRIBUTE_BYTES,
            )
            return False
        self.attribute_bytes += cost
        self.bytes += cost
        MEMORY.charge(cost)
        return True

    def fills(self) -> dict[str, object]:
        """What a span of the request lacking a key gets: unambiguous values and all tags."""
        fills = {k: v for k, v in self.values.items() if v is not _CONFLICT}
        if self.tags:
            fills[LANGFUSE_TRACE_TAGS] = tuple(self.tags)
        return fills

    def session_attributes(self, session_id: str) -> tuple[str, ...]:
        """The attributes a span completed with ``session_id`` gets: those the processor stamps,
        the given-only ones (``gen_ai.conversation.id``) only for a session that was given."""
        targets = self.targets
        if targets is None:
            return (LANGFUSE_SESSION_ID,)
        given_only = targets.given_session_attributes
        ids = self.ids
        if not given_only or (
            ids is not None and type(ids) is not GeneratedIds and ids.session_id == session_id
        ):
            return targets.session_attributes
        return tuple(key for key in targets.session_attributes if key not in given_only)

    def user_attributes(self) -> tuple[str, ...]:
        """The attributes a span completed with a user id gets."""
        return (LANGFUSE_USER_ID,) if self.targets is None else self.targets.user_attributes


class RequestMemory:
    """The requests known now, by span id; thread-safe. One per process: :data:`MEMORY`.

    Per span, only dict operations (atomic under the GIL); the lock is taken per request."""

    def __init__(self, budget: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.over_budget = 0
        self._bytes = 0  # requests and held spans; the spans' entries are counted by len()
        self._clock = clock
        #: Live and recently ended spans -> their request (the processor reads and writes it).
        self.spans: dict[int, Request] = {}
        self._ending: list[int] = []  # spans ended lately, stamped by the thousand:
        self._ended_spans: deque[tuple[float, list[int]]] = deque()  # (when, span ids)
        self._ended_count = 0
        self._open: dict[int, Request] = {}  # by key, oldest first
        self._ended: dict[int, Request] = {}  # by key, in the order they ended
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        """The bytes counted against the budget now."""
        return self._bytes + len(self.spans) * SPAN_BYTES + self._ended_count * 8

    def new(self, span_id: int, targets: IdKeys | None) -> Request | None:
        """A new request rooted at a span starting now (``None`` when the budget is spent).
        The caller files the span under it in :attr:`spans`, as under its parent's request."""
        with self._lock:
            self._forget(self._clock())
            if self.bytes + REQUEST_BYTES > self.budget:
                self.over("a new request is not remembered")
                return None
            request = self._open[span_id] = Request(span_id, targets)
            self._bytes += REQUEST_BYTES
        return request

    def end(self, span_id: int) -> None:
        """A span ended: known a while longer; its request is over when it was the root."""
        ending = self._ending
        ending.append(span_id)
        if span_id in self._open or len(ending) >= 1024:
            with self._lock:
                now = self._clock()
                if self._ending is ending:
                    self._ending = []
                    self._ended_spans.append((now, ending))
                    self._ended_count += len(ending)
                request = self._open.pop(span_id, None)
                if request is not None:
                    request.open = False
                    request.ended = now
                    self._ended[span_id] = request
                self._forget(now)

    def of(self, span_id: int | None) -> Request | None:
        """The request of a span the processor saw, if still remembered."""
        return None if span_id is None else self.spans.get(span_id)

    def learn(self, key: int, ids: TraceIds) -> None:
        """What the exporter learned of a request from its exported spans: ids it lacked (two
        sessions make it mixed). A request the processor did not see is remembered under
        ``key`` as an ended one."""
        with self._lock:
            request = self.spans.get(key)
            if request is None:
                request = Request(key, None)
                request.open = False
                request.ended = self._clock()
                self._ending.append(key)
                self._bytes += REQUEST_BYTES
                self.spans[key] = self._ended[key] = request
            previous = request.ids
            if previous is None:
                request.ids = ids
            elif previous != ids:
                if ids.session_id not in (None, previous.session_id) and previous.session_id:
                    request.mixed = True
                if previous.session_id is None or previous.user_id is None:
                    request.ids = TraceIds(
                        previous.session_id or ids.session_id, previous.user_id or ids.user_id
                    )

    def correct(self, span_id: int, ids: TraceIds | None) -> None:
        """Correct the ids a span's request is remembered with, after its server span started
        with untrusted baggage (the middleware decided): ``None`` forgets them."""
        request = self.spans.get(span_id)
        if request is not None:
            with self._lock:
                request.ids = ids
                request.mixed = False

    def correct_attributes(self, span_id: int, stamps: Stamps) -> None:
        """Replace the trace attributes a span's request is remembered with by ``stamps``."""
        request = self.spans.get(span_id)
        if request is not None:
            self.charge(-request.attribute_bytes)
            request.bytes -= request.attribute_bytes
            request.attribute_bytes = 0
            request.values = {}
            request.tags = {}
            request.note_attributes(stamps)

    def charge(self, cost: int) -> None:
        """Count ``cost`` more bytes (negative: fewer)."""
        with self._lock:
            self._bytes += cost

    def fits(self, cost: int) -> bool:
        """Whether ``cost`` more bytes of held spans fit: they may fill three quarters of the
        budget (the rest stays for the requests themselves)."""
        with self._lock:
            if self.bytes + cost > self.budget * 3 // 4:
                self._forget(None, running=False)
            return self.bytes + cost <= self.budget * 3 // 4

    def refuse(self, message: str, *args: object) -> None:
        """Count and log (rate-limited) something left out."""
        self.over_budget += 1
        _log.warning("request-memory", message + " (%d left out so far)", *args, self.over_budget)

    def over(self, what: str) -> None:
        """:meth:`refuse`, for the budget."""
        self.refuse("The per-request memory is at its budget of %d bytes: %s", self.budget, what)

    def _forget(self, now: float | None, *, running: bool = True) -> None:
        """Forget the ended spans and requests past their linger (``now``); or, over the
        budget (``None``), the oldest ended ones, then (``running``) the oldest running
        requests, until a tenth of the budget is free. Called with the lock held."""
        goal = self.budget if now is not None else self.budget * 9 // 10
        spans, ended_spans = self.spans, self._ended_spans
        while ended_spans:
            when, span_ids = ended_spans[0]
            if now is not None and now - when < LINGER_SECONDS:
                break
            ended_spans.popleft()
            self._ended_count -= len(span_ids)
            for span_id in span_ids:
                spans.pop(span_id, None)
            if now is None and self.bytes <= goal:
                return
        ended = self._ended
        while ended:
            request = ended[next(iter(ended))]
            if now is not None and now - request.ended < LINGER_SECONDS:
                break
            del ended[request.key]
            self._bytes -= request.bytes
            if now is None and self.bytes <= goal:
                return
        if now is not None and self.bytes > self.budget:
            self._forget(None, running=running)
        elif running and now is None and self.bytes > goal and self._open:
            keys = list(self._open)
            forgotten = {self._open.pop(key) for key in keys[: len(keys) // 2 + 1]}
            for span_id, request in list(self.spans.items()):  # rare: a full scan
                if request in forgotten:
                    del self.spans[span_id]
            for request in forgotten:
                self._bytes -= request.bytes
            self.over(f"the {len(forgotten)} oldest running request(s) are forgotten")

    def clear(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._open.clear()
            self._ended.clear()
            self.spans.clear()
            self._ended_spans.clear()
            self._ending = []
            self._ended_count = 0
            self._bytes = 0


MEMORY = RequestMemory(REQUEST_MEMORY_BYTES)


def request_keys(spans: Sequence[ReadableSpan]) -> list[int]:
    """A local request key per span of an exported batch.

    Spans the processor saw map to their request: its key is the local root's span id. Other
    spans (a provider without the processor) are grouped through their parents in the batch,
    never across a remote parent: the key is the span id of the topmost local ancestor found
    in the batch, or of the missing local parent it points to.
    """
    by_id: dict[int, ReadableSpan] | None = None
    keys: list[int] = []
    for span in spans:
        context = span.context
        request = MEMORY.of(context.span_id if context is not None else None)
        if request is not None:
            keys.append(request.key)
            continue
        if by_id is None:
            by_id = {s.context.span_id: s for s in spans if s.context is not None}
        keys.append(_batch_key(span, by_id))
    return keys


def _batch_key(span: ReadableSpan, by_id: Mapping[int, ReadableSpan]) -> int:
    current = span
    for _ in range(len(by_id) + 1):  # a cycle of forged ids cannot loop forever
        parent = current.parent
        if parent is None or parent.is_remote:
            return current.context.span_id if current.context is not None else 0
        upper = by_id.get(parent.span_id)
        if upper is None:
            request = MEMORY.of(parent.span_id)
            return request.key if request is not None else parent.span_id
        current = upper
    return current.context.span_id if current.context is not None else 0


class LateSessionHold:
    """One exporter's spans held until their request's session is known; thread-safe.

    Langfuse sums a session's cost over the observations whose own session id is set, so the
    ended spans of a running request without a session yet are held until it has one or its
    root ends, at most ``max_seconds`` after the first of them. Held spans count in the
    memory's budget: past it a span is sent as it is. Spans of requests whose session is known,
    spans the processor did not see and requests that ended without one are never delayed.
    """

    def __init__(self, max_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_seconds = max_seconds
        self.released_early = 0  # sent without their session: too old, or over the budget
        self._clock = clock
        self._held: dict[int, tuple[Request, float, list[tuple[ReadableSpan, int]]]] = {}
        self._lock = threading.Lock()

    @property
    def held_spans(self) -> int:
        """Spans held now."""
        return sum(len(spans) for _, _, spans in self._held.values())

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
                request = self._holds(span, knows_session)
                if request is None:
                    send.append(span)
                    continue
                cost = span_bytes(span)
                if not MEMORY.fits(cost):
                    MEMORY.over("a span is sent without waiting for its session")
                    self.released_early += 1
                    send.append(span)
                    continue
                MEMORY.charge(cost)
                held = self._held.get(request.key)
                if held is None:
                    held = self._held[request.key] = (request, now + self.max_seconds, [])
                held[2].append((span, cost))
            send.extend(self._released(now, knows_session))
        return send

    def drain(self) -> list[ReadableSpan]:
        """Everything held (``force_flush``, ``shutdown``)."""
        with self._lock:
            return self._release(list(self._held))

    def _holds(self, span: ReadableSpan, knows_session: Callable[[int], bool]) -> Request | None:
        context = span.context
        if self.max_seconds <= 0 or context is None:
            return None
        request = MEMORY.of(context.span_id)
        if request is None or not request.open or context.span_id == request.key:
            return None
        if request.ids is not None and request.ids.session_id is not None:
            return None
        own = span.attributes or {}
        if any(own.get(key) for key in request.session_attributes("")):
            return None
        return None if knows_session(request.key) else request

    def _released(self, now: float, knows_session: Callable[[int], bool]) -> list[ReadableSpan]:
        keys: list[int] = []
        for key, (request, deadline, spans) in self._held.items():
            known = (
                not request.open
                or (request.ids is not None and request.ids.session_id is not None)
                or knows_session(key)
            )
            if not known and now >= deadline:
                self.released_early += len(spans)
            if known or now >= deadline:
                keys.append(key)
        return self._release(keys)

    def _release(self, keys: list[int]) -> list[ReadableSpan]:
        released: list[ReadableSpan] = []
        for key in keys:
            _, _, spans = self._held.pop(key)
            MEMORY.charge(-sum(cost for _, cost in spans))
            released.extend(span for span, _ in spans)
        return released
