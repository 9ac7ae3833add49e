"""The one memory per local request, bounded in bytes (``docs/sessions.md``, "The rest of the
request"); in a trace several local requests share, spans are filed by span id."""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Span, SpanContext

from .._logging import RateLimitedLog
from ..attributes import LANGFUSE_TRACE_TAGS
from ..baggage_keys import IdKeys
from ..ids import TraceIds
from ..sessions.trace_attributes import Stamps

REQUEST_MEMORY_BYTES = 64 * 1024 * 1024
#: The most one request remembers of trace attributes (keys and values, as stored).
MAX_REQUEST_ATTRIBUTE_BYTES = 16 * 1024
#: How long an ended request (its root span let go of) stays known to spans exported after it.
LINGER_SECONDS = 30.0
#: Estimates: a request's record, a span filed by id, an attribute entry (measured in the tests).
REQUEST_BYTES = 800
SPAN_BYTES = 160
ENTRY_BYTES = 120
_CONFLICT = object()
_DEFAULT_KEYS = IdKeys()  # a request only the exporter learned of: the default attributes
_log = RateLimitedLog()


class Request:
    """What one local request showed: the ids in force last, and its trace attributes."""

    __slots__ = (
        *("attribute_bytes", "bytes", "ended", "ids", "key", "mixed", "root", "spans", "tags"),
        *("targets", "trace", "values"),
    )

    def __init__(self, key: int, targets: IdKeys, trace: int = 0) -> None:
        self.key = key  # its root's span id
        self.trace = trace
        self.targets = targets  # the keys of the processor that saw it: where ids are stamped
        self.ids: TraceIds | None = None
        self.mixed = False
        self.ended = 0.0
        self.values: dict[str, object] = {}
        self.tags: dict[str, None] = {}
        self.spans: list[int] = []  # its spans filed by id (in a trace of several requests)
        self.bytes = REQUEST_BYTES
        self.attribute_bytes = 0
        self.root: weakref.ref[Span] | None = None  # while the app holds it, the request is open

    def note(self, ids: TraceIds) -> None:
        """Record the ids in force for a span just started in this request."""
        previous = self.ids
        if previous is not None and previous.session_id not in (None, ids.session_id):
            self.mixed = self.mixed or ids.session_id is not None
        self.ids = ids

    def known(self) -> TraceIds | None:
        """The ids its spans are completed with (no session when it saw several)."""
        ids = self.ids
        return TraceIds(None, ids.user_id) if ids is not None and self.mixed else ids

    def note_attributes(self, stamps: Iterable[tuple[str, object]]) -> None:
        """Record the trace attributes of the scope in force for a span just started."""
        cost = 0
        for key, value in stamps:
            if key == LANGFUSE_TRACE_TAGS and isinstance(value, tuple):
                for tag in value:
                    if tag not in self.tags and (room := self._room(key, tag)):
                        self.tags[tag], cost = None, cost + room
                continue
            known = self.values.get(key)
            if known is None:
                if room := self._room(key, value):
                    self.values[key], cost = value, cost + room
            elif known is not _CONFLICT and known != value:
                self.values[key] = _CONFLICT
        if cost:  # the lock taken once, not once per attribute
            MEMORY.charge(cost)

    def _room(self, key: str, value: object) -> int:
        cost = ENTRY_BYTES + sys.getsizeof(key) + sys.getsizeof(value)
        if isinstance(value, tuple):
            cost += sum(map(sys.getsizeof, value))
        if self.attribute_bytes + cost > MAX_REQUEST_ATTRIBUTE_BYTES:
            MEMORY.refuse(
                "A request showed more trace attributes than the %d bytes remembered per "
                "request; spans exported without them are not completed with the rest",
                MAX_REQUEST_ATTRIBUTE_BYTES,
            )
            return 0
        self.attribute_bytes += cost
        self.bytes += cost
        return cost

    def fills(self) -> dict[str, object]:
        """What a span lacking a key gets: unambiguous values and all tags."""
        fills = {k: v for k, v in self.values.items() if v is not _CONFLICT}
        if self.tags:
            fills[LANGFUSE_TRACE_TAGS] = tuple(self.tags)
        return fills

    def session_attributes(self, session_id: str) -> tuple[str, ...]:
        """The attributes a span completed with ``session_id`` gets."""
        targets = self.targets
        given_only = targets.given_session_attributes
        ids = self.ids
        if not given_only or (type(ids) is TraceIds and ids.session_id == session_id):  # given
            return targets.session_attributes
        return tuple(key for key in targets.session_attributes if key not in given_only)

    def user_attributes(self) -> tuple[str, ...]:
        """The attributes a span completed with a user id gets."""
        return self.targets.user_attributes


class RequestMemory:
    """The requests known now, one per process (:data:`MEMORY`)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.over_budget = 0
        #: The bytes counted against the budget now.
        self.bytes = 0
        #: Trace id -> its one local request, or the list of several (``None``: forgotten).
        self.traces: dict[int, Request | list[Request | None]] = {}
        #: Traces that came to have several requests: a processor's spans there are filed anew.
        self.splits = 0
        self.open: dict[int, Request] = {}  # by key, oldest first
        self._ended: dict[int, Request] = {}  # by key, in the order they ended
        self._spans: dict[int, Request] = {}  # spans filed by id: traces of several requests
        #: The keys of open requests whose root span went away (appended in any thread: no lock).
        self._gone: deque[int] = deque()
        self._lock = threading.Lock()

    def new(self, span: Span, context: SpanContext, targets: IdKeys) -> Request | None:
        """A new request rooted at a span starting now (``None`` when the budget is spent)."""
        with self._lock:
            return self._new(span, context, targets)

    def child(self, span: Span, parent: int, targets: IdKeys) -> Request | None:
        """The request of a span under the local span ``parent``, else a new one rooted here."""
        context = span.get_span_context()
        with self._lock:
            entry = self.traces.get(context.trace_id)
            request = None
            if isinstance(entry, list):
                request = self._spans.get(parent) or self.by_key(parent)
            if request is None:
                return self._new(span, context, targets)
            if self._fits(SPAN_BYTES, "a span is not filed under its request"):
                self._spans[context.span_id] = request
                request.spans.append(context.span_id)
                request.bytes += SPAN_BYTES
                self.bytes += SPAN_BYTES
            return request

    def _new(self, span: Span, context: SpanContext, targets: IdKeys) -> Request | None:
        self._forget(time.monotonic())
        if not self._fits(REQUEST_BYTES, "a new request is not remembered"):
            return None
        key, trace = context.span_id, context.trace_id
        request = self.open[key] = Request(key, targets, trace)
        request.root = weakref.ref(span, lambda _: self._gone.append(key))  # let go of: ended
        self.bytes += REQUEST_BYTES
        entry = self.traces.get(trace)
        if entry is None:
            self.traces[trace] = request
        elif isinstance(entry, list):
            entry.append(request)
        else:  # a second request in this trace: from now on spans are filed by id
            self.traces[trace] = [entry, request]
            self.splits += 1
        return request

    def _fits(self, cost: int, what: str) -> bool:
        if self.bytes + cost > self.budget:
            self._forget(None)
            if self.bytes + cost > self.budget:
                self.over(what)
                return False
        return True

    def of(self, context: SpanContext | None) -> Request | None:
        """The request of a span the processor saw, if still remembered."""
        if context is None:
            return None
        entry = self.traces.get(context.trace_id)
        if isinstance(entry, list):
            return self._spans.get(context.span_id) or self.by_key(context.span_id)
        return entry

    def by_key(self, key: int) -> Request | None:
        """The request known by its key (:func:`request_keys`)."""
        return self.open.get(key) or self._ended.get(key)

    def learn(self, key: int, ids: TraceIds) -> None:
        """Ids the exporter learned of a request (two sessions make it mixed)."""
        with self._lock:
            request = self.by_key(key)
            if request is None:
                request = self._ended[key] = Request(key, _DEFAULT_KEYS)
                request.ended = time.monotonic()
                self.bytes += REQUEST_BYTES
            known = request.ids or ids
            if known.session_id and ids.session_id not in (None, known.session_id):
                request.mixed = True
            completed = TraceIds(known.session_id or ids.session_id, known.user_id or ids.user_id)
            request.ids = known if completed == known else completed  # keeps its kind

    def correct(self, context: SpanContext, ids: TraceIds | None) -> None:
        """Replace the ids a span's request is remembered with (the middleware decided)."""
        request = self.of(context)
        if request is not None:
            with self._lock:
                request.ids = ids
                request.mixed = False

    def correct_attributes(self, context: SpanContext, stamps: Stamps) -> None:
        """Replace the trace attributes a span's request is remembered with by ``stamps``."""
        request = self.of(context)
        if request is not None:
            self.charge(-request.attribute_bytes)
            request.bytes -= request.attribute_bytes
            request.attribute_bytes, request.values, request.tags = 0, {}, {}
            request.note_attributes(stamps)

    def charge(self, cost: int) -> None:
        """Count ``cost`` more bytes (negative: fewer)."""
        with self._lock:
            self.bytes += cost

    def refuse(self, message: str, *args: object) -> None:
        """Count and log (rate-limited) something left out."""
        self.over_budget += 1
        _log.warning("request-memory", message + " (%d left out so far)", *args, self.over_budget)

    def over(self, what: str) -> None:
        """:meth:`refuse`, for the budget."""
        self.refuse("The per-request memory is at its budget of %d bytes: %s", self.budget, what)

    def _forget(self, now: float | None) -> None:
        """Forget ended requests past their linger, or (``now=None``) free a tenth. Lock held."""
        while self._gone:  # ended: they stay known a while longer
            request = self.open.pop(self._gone.popleft(), None)
            if request is not None:
                request.ended = time.monotonic() if now is None else now
                self._ended[request.key] = request
        goal = self.budget * 9 // 10
        ended = self._ended
        while ended:
            request = next(iter(ended.values()))
            if now is not None and now - request.ended < LINGER_SECONDS:
                break
            if now is None and self.bytes <= goal:
                return
            self._drop(ended.pop(request.key))
        forgotten = 0
        while now is None and self.open and self.bytes > goal:
            self._drop(self.open.pop(next(iter(self.open))))
            forgotten += 1
        if forgotten:
            self.over(f"the {forgotten} oldest running request(s) are forgotten")

    def _drop(self, request: Request) -> None:
        self.bytes -= request.bytes
        for span_id in request.spans:
            self._spans.pop(span_id, None)
        entry = self.traces.get(request.trace)
        if entry is request:
            del self.traces[request.trace]
        elif isinstance(entry, list) and request in entry:
            entry[entry.index(request)] = None  # still several: no other request gets its spans
            if not any(entry):
                del self.traces[request.trace]

    def clear(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self.splits += 1
            for pool in (self.open, self._ended, self._spans, self.traces, self._gone):
                pool.clear()
            self.bytes = 0


MEMORY = RequestMemory(REQUEST_MEMORY_BYTES)


def request_keys(spans: Sequence[ReadableSpan]) -> list[int]:
    """A local request key per span of an exported batch (its topmost local ancestor's id)."""
    by_id: dict[int, ReadableSpan] | None = None
    keys: list[int] = []
    for span in spans:
        request = MEMORY.of(span.context)
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
            break
        upper = by_id.get(parent.span_id)
        if upper is None:
            return parent.span_id
        current = upper
    return current.context.span_id if current.context is not None else 0
