"""Per local request memory: which session (and user) the spans under one local root are in.

A *local request* is a local root span (no parent, or a parent from another process) and every
span started under it in this process. The span processor records the ids in force for each
local request, reads them back for spans that start outside any session scope (the fallback),
and the exporter reads them to complete spans that ended before the session was known.

Keyed by local request, not by trace id: a request that joins an existing trace with a forged
or leaked ``traceparent`` gets a memory of its own, never another request's.

OpenTelemetry offers no slot for a processor's per-span data, so the request is kept on the
span's :class:`~opentelemetry.trace.SpanContext`: the one object shared by the live span, its
children's ``parent`` and every ``ReadableSpan`` copy handed to processors and exporters. The
memory therefore lives exactly as long as the spans that refer to it: nothing to evict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext

from ..attributes import LANGFUSE_SESSION_ID, LANGFUSE_USER_ID
from ..keys import IdKeys
from ..sessions.generated import GeneratedIds
from ..sessions.trace_attributes import Stamps
from ..traces import TraceIds
from .request_attributes import LOCK, RequestAttributes

#: The private slot on a ``SpanContext`` holding its :class:`LocalRequest`.
REQUEST_SLOT = "_langfuse_otel_sessions_request"

#: ``SpanContext`` is a tuple subclass without ``__slots__``: its instances carry a ``__dict__``.
TAGGABLE = hasattr(SpanContext(0, 0, False), "__dict__")


class LocalRequest:
    """The ids in force last in one local request, and whether its local root is still open.

    ``ids``: what the fallback hands a span started outside a scope — the scope entered last
    (a later scope replaces an earlier one). ``mixed``: the request saw more than one session
    (a batch job, a websocket serving several conversations): the exporter then completes no
    span with a session, since any choice could be wrong. ``attributes``: the trace attributes
    (tags, metadata, environment, ...) its scopes showed, if any (:mod:`.request_attributes`).
    """

    __slots__ = ("attributes", "ids", "key", "mixed", "open", "targets")

    def __init__(self, key: int, targets: IdKeys | None = None) -> None:
        self.key = key
        #: The keys of the processor that saw the request: the attributes it stamps ids on.
        self.targets = targets
        self.ids: TraceIds | None = None
        self.attributes: RequestAttributes | None = None
        self.mixed = False
        self.open = True

    def note(self, ids: TraceIds) -> None:
        """Record the ids in force for a span just started in this request."""
        previous = self.ids
        if (
            previous is not None
            and previous.session_id is not None
            and ids.session_id is not None
            and previous.session_id != ids.session_id
        ):
            self.mixed = True
        self.ids = ids

    def session_attributes(self, session_id: str) -> tuple[str, ...]:
        """The attributes a span of this request completed with ``session_id`` gets: those the
        processor stamps (``also_emit``, extra attributes), the given-only ones
        (``gen_ai.conversation.id``) only when the request's session was given, not generated."""
        targets = self.targets
        if targets is None:
            return (LANGFUSE_SESSION_ID,)
        given_only = targets.given_session_attributes
        if not given_only:
            return targets.session_attributes
        ids = self.ids
        if ids is not None and type(ids) is not GeneratedIds and ids.session_id == session_id:
            return targets.session_attributes
        return tuple(key for key in targets.session_attributes if key not in given_only)

    def user_attributes(self) -> tuple[str, ...]:
        """The attributes a span of this request completed with a user id gets."""
        return (LANGFUSE_USER_ID,) if self.targets is None else self.targets.user_attributes

    def note_attributes(self, stamps: tuple[tuple[str, object], ...]) -> None:
        """Record the trace attributes in force for a span just started in this request."""
        attributes = self.attributes
        if attributes is None:
            with LOCK:
                attributes = self.attributes
                if attributes is None:
                    attributes = self.attributes = RequestAttributes()
        attributes.note(stamps)

    def __repr__(self) -> str:
        return f"LocalRequest(key={self.key:016x}, ids={self.ids}, open={self.open})"


def request_of(span_context: SpanContext | None) -> LocalRequest | None:
    """The local request a span (given its context) belongs to, if the processor saw it."""
    if span_context is None:
        return None
    request = getattr(span_context, REQUEST_SLOT, None)
    return request if isinstance(request, LocalRequest) else None


def attach_request(span_context: SpanContext, request: LocalRequest) -> None:
    """Record ``request`` on a span's context (a no-op if the SDK ever forbids it)."""
    if TAGGABLE:
        span_context.__dict__[REQUEST_SLOT] = request


def correct_request(span_context: SpanContext, ids: TraceIds | None) -> None:
    """Correct what a request is remembered with (after an untrusted id was stamped on its
    server span): ``ids`` replaces it, ``None`` forgets it."""
    request = request_of(span_context)
    if request is not None:
        request.ids = ids
        request.mixed = False


def correct_request_attributes(span_context: SpanContext, stamps: Stamps) -> None:
    """Replace the trace attributes a request is remembered with by ``stamps`` (what the
    middleware decided for it), after its server span started with untrusted ones."""
    request = request_of(span_context)
    if request is None or (request.attributes is None and not stamps):
        return
    attributes = RequestAttributes()
    if stamps:
        attributes.note(stamps)
    request.attributes = attributes


def request_keys(spans: Sequence[ReadableSpan]) -> list[int]:
    """A local request key per span of an exported batch.

    Spans the processor saw carry their request: its key is the local root's span id. Other
    spans (a provider without the processor) are grouped through their parents in the batch,
    never across a remote parent: the key is the span id of the topmost local ancestor found
    in the batch, or of the missing local parent it points to.
    """
    by_id: dict[int, ReadableSpan] | None = None
    keys: list[int] = []
    for span in spans:
        context = span.context
        request = request_of(context)
        if request is not None:
            keys.append(request.key)
            continue
        if by_id is None:
            by_id = {s.context.span_id: s for s in spans if s.context is not None}
        keys.append(_batch_key(span, by_id))
    return keys


def _batch_key(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> int:
    current = span
    for _ in range(len(by_id) + 1):  # a cycle of forged ids cannot loop forever
        parent = current.parent
        if parent is None or parent.is_remote:
            return current.context.span_id if current.context is not None else 0
        upper = by_id.get(parent.span_id)
        if upper is None:
            request = request_of(parent)
            return request.key if request is not None else parent.span_id
        current = upper
    return current.context.span_id if current.context is not None else 0


def known_ids(recent: Mapping[int, TraceIds], key: int, span: ReadableSpan) -> TraceIds | None:
    """What the exporter knows of a span's request: learned from spans it exported earlier,
    else what the processor records (without a session if the request saw several)."""
    request = request_of(span.context)
    if request is not None and request.ids is not None and request.mixed:
        return TraceIds(None, request.ids.user_id)  # several sessions: complete with none
    ids = recent.get(key)
    if ids is not None:
        return ids
    if request is None or request.ids is None:
        return None
    return request.ids
