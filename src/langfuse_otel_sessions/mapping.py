"""Pure mapping of finished spans to what Langfuse needs, on copies (spans are never mutated).

* Session completeness: every span of a local request whose session (user) is known carries
  ``langfuse.session.id`` (``langfuse.user.id``) — Langfuse aggregates a session's cost and usage
  over the observations whose *own* session id is set. Per local request, not per trace: a
  request joining another's trace learns nothing from it; a request that saw several sessions
  completes none.
* Root spans (no parent, or ``langfuse.internal.as_root``): trace name and trace input/output, so
  that both Langfuse server generations show them (v4 takes trace I/O from the root observation
  and ignores ``langfuse.trace.input/output``; v3 reads those).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from types import MappingProxyType

from opentelemetry.sdk.trace import ReadableSpan

from ._logging import RateLimitedLog
from .attributes import LANGFUSE_SESSION_ID, LANGFUSE_USER_ID, USER_ATTRIBUTE_KEYS
from .local_requests import request_keys
from .traces import TraceIds

AS_ROOT = "langfuse.internal.as_root"
TRACE_NAME = "langfuse.trace.name"
TRACE_INPUT = "langfuse.trace.input"
TRACE_OUTPUT = "langfuse.trace.output"
OBSERVATION_INPUT = "langfuse.observation.input"
OBSERVATION_OUTPUT = "langfuse.observation.output"

#: Span attribute keys Langfuse reads a session id from, in its priority order.
LANGFUSE_SESSION_KEYS = (
    LANGFUSE_SESSION_ID,
    "session.id",
    "gen_ai.conversation.id",
    "langfuse.observation.metadata.langfuse_session_id",
    "langfuse.trace.metadata.langfuse_session_id",
)
#: Span attribute keys Langfuse reads a user id from, in its priority order.
LANGFUSE_USER_KEYS = (
    *USER_ATTRIBUTE_KEYS,
    "langfuse.observation.metadata.langfuse_user_id",
    "langfuse.trace.metadata.langfuse_user_id",
)

#: Every key the mapping reads: a span's own keys are intersected with these once.
_READ_KEYS = frozenset(
    {*LANGFUSE_SESSION_KEYS, *LANGFUSE_USER_KEYS, AS_ROOT, TRACE_NAME}
    | {TRACE_INPUT, TRACE_OUTPUT, OBSERVATION_INPUT, OBSERVATION_OUTPUT}
)

TraceName = str | Callable[[ReadableSpan], "str | None"] | None

_log = RateLimitedLog()


@dataclass(frozen=True)
class RootMapping:
    """How root spans become traces.

    ``trace_name``: ``None`` keeps Langfuse's default (the root span's name); a string names the
    attribute to take the name from; a callable computes it from the root span.
    ``input_keys``/``output_keys``: attributes to take the root's I/O from when it has no
    ``langfuse.trace.input/output`` (e.g. OpenInference's ``input.value``/``output.value``).
    """

    trace_name: TraceName = None
    input_keys: tuple[str, ...] = ()
    output_keys: tuple[str, ...] = ()


class _MappedSpan(ReadableSpan):
    """A copy of a finished span with other attributes; dropped counts are the original's."""

    def __init__(self, original: ReadableSpan, attributes: Mapping[str, object]) -> None:
        super().__init__(
            name=original.name,
            context=original.context,
            parent=original.parent,
            resource=original.resource,
            attributes=MappingProxyType(dict(attributes)),  # type: ignore[arg-type]
            events=original.events,
            links=original.links,
            kind=original.kind,
            status=original.status,
            start_time=original.start_time,
            end_time=original.end_time,
            instrumentation_scope=original.instrumentation_scope,
        )
        self._dropped = (
            original.dropped_attributes,
            original.dropped_events,
            original.dropped_links,
        )

    @property
    def dropped_attributes(self) -> int:
        return self._dropped[0]

    @property
    def dropped_events(self) -> int:
        return self._dropped[1]

    @property
    def dropped_links(self) -> int:
        return self._dropped[2]


def is_root(span: ReadableSpan) -> bool:
    """Langfuse's rule: no parent span id, or ``langfuse.internal.as_root`` set true."""
    return span.parent is None or (span.attributes or {}).get(AS_ROOT) is True


def _first(
    attributes: Mapping[str, object], keys: Iterable[str], names: AbstractSet[str]
) -> object:
    # ``names`` (the attribute keys) guards every look-up: the SDK's attribute mapping answers
    # a missing key by raising and catching KeyError, which would cost more than the export.
    for key in keys:
        if key in names:
            value = attributes[key]
            if value is not None and value != "":
                return value
    return None


def _ids(attributes: Mapping[str, object], names: AbstractSet[str]) -> TraceIds | None:
    session_id = _first(attributes, LANGFUSE_SESSION_KEYS, names)
    user_id = _first(attributes, LANGFUSE_USER_KEYS, names)
    if session_id is None and user_id is None:
        return None
    return TraceIds(
        session_id if isinstance(session_id, str) else None,
        user_id if isinstance(user_id, str) else None,
    )


def ids_of(span: ReadableSpan) -> TraceIds | None:
    """The session and user ids Langfuse would read from this span, if any."""
    attributes = span.attributes or {}
    return _ids(attributes, set(attributes))


def _trace_name(span: ReadableSpan, rule: TraceName) -> object:
    if rule is None:
        return None
    if isinstance(rule, str):
        return (span.attributes or {}).get(rule)
    try:
        return rule(span)
    except Exception:  # noqa: BLE001 - a user callable must not break the export
        _log.exception("trace-name", "The trace_name callable raised; the trace keeps its name")
        return None


def root_additions(
    span: ReadableSpan, mapping: RootMapping, names: AbstractSet[str] | None = None
) -> dict[str, object]:
    """The attributes a root span gains: trace name, and trace I/O for both server versions."""
    attributes = span.attributes or {}
    if names is None or mapping.input_keys or mapping.output_keys:
        names = set(attributes)
    added: dict[str, object] = {}
    name = _trace_name(span, mapping.trace_name)
    if isinstance(name, str) and name and TRACE_NAME not in names:
        added[TRACE_NAME] = name
    for trace_key, observation_key, keys in (
        (TRACE_INPUT, OBSERVATION_INPUT, mapping.input_keys),
        (TRACE_OUTPUT, OBSERVATION_OUTPUT, mapping.output_keys),
    ):
        value = _first(attributes, (trace_key, *keys), names)
        if value is None:
            continue
        if trace_key not in names:
            added[trace_key] = value  # v3 reads the trace key
        if observation_key not in names:
            added[observation_key] = value  # v4 reads the root observation's I/O
    return added


def map_spans(
    spans: Sequence[ReadableSpan],
    mapping: RootMapping,
    known: Callable[[int, ReadableSpan], TraceIds | None],
) -> tuple[list[ReadableSpan], dict[int, TraceIds]]:
    """Map a batch. Returns the spans to send (copies where something changed, the originals
    otherwise) and the local request keys -> session/user ids learned from this batch.

    Completeness works per local request (see :mod:`~langfuse_otel_sessions.local_requests`),
    never across a trace another request joined. ``known(key, span)`` supplies the ids of
    requests the batch alone does not tell.
    """
    keys = request_keys(spans)
    learned: dict[int, TraceIds] = {}
    mixed: set[int] = set()
    seen: list[tuple[ReadableSpan, Mapping[str, object], frozenset[str], object, object]] = []
    for span, key in zip(spans, keys, strict=True):
        attributes: Mapping[str, object] = span.attributes or {}
        names = _READ_KEYS.intersection(attributes)
        session_id = _first(attributes, LANGFUSE_SESSION_KEYS, names)
        user_id = _first(attributes, LANGFUSE_USER_KEYS, names)
        seen.append((span, attributes, names, session_id, user_id))
        if session_id is not None or user_id is not None:
            _learn(learned, mixed, key, session_id, user_id)
    result: list[ReadableSpan] = []
    for (span, attributes, names, session_id, user_id), key in zip(seen, keys, strict=True):
        added: dict[str, object] = {}
        if session_id is None or user_id is None:
            known_ids = learned.get(key) or known(key, span)
            if known_ids is not None:
                if known_ids.session_id is not None and session_id is None and key not in mixed:
                    added[LANGFUSE_SESSION_ID] = known_ids.session_id
                if known_ids.user_id is not None and user_id is None:
                    added[LANGFUSE_USER_ID] = known_ids.user_id
        if span.parent is None or (AS_ROOT in names and attributes[AS_ROOT] is True):
            added.update(root_additions(span, mapping, names))
        result.append(_MappedSpan(span, {**attributes, **added}) if added else span)
    return result, learned


def _learn(
    learned: dict[int, TraceIds], mixed: set[int], key: int, session_id: object, user_id: object
) -> None:
    """Merge a span's ids into what its request is known by; two sessions make it ambiguous."""
    previous = learned.get(key)
    if previous is None:
        learned[key] = TraceIds(_text_or(None, session_id), _text_or(None, user_id))
        return
    if (
        isinstance(session_id, str)
        and previous.session_id is not None
        and session_id != previous.session_id
    ):
        mixed.add(key)
    if previous.session_id is None or previous.user_id is None:
        learned[key] = TraceIds(
            _text_or(previous.session_id, session_id), _text_or(previous.user_id, user_id)
        )


def _text_or(earlier: str | None, value: object) -> str | None:
    return earlier or (value if isinstance(value, str) else None)
