"""Pure mapping of finished spans to the attributes Langfuse needs (spans are never mutated);
the rules are in ``docs/exporter.md`` and ``docs/sessions.md``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from functools import lru_cache

from opentelemetry.sdk.trace import ReadableSpan

from .._logging import RateLimitedLog
from ..attributes import (
    BAGGAGE_TRACE_ATTRIBUTES,
    DEFAULT_MAX_ID_LENGTH,
    LANGFUSE_SESSION_ID,
    LANGFUSE_TRACE_METADATA_PREFIX,
    LANGFUSE_USER_ID,
)
from ..ids import TraceIds, id_problem
from ..spans.memory import MEMORY, Request, request_keys
from .langfuse_rules import (
    AS_ROOT,
    IS_APP_ROOT,
    LANGFUSE_SESSION_KEYS,
    LANGFUSE_USER_KEYS,
    OBSERVATION_INPUT,
    OBSERVATION_OUTPUT,
    TRACE_INPUT,
    TRACE_NAME,
    TRACE_OUTPUT,
    IoRead,
    given_trace_fields,
    is_true,
    langfuse_text,
    read_io,
)

__all__ = ["map_spans"]

_NO_IO = IoRead()
#: The trace attributes stamped from baggage (and ``langfuse.trace.metadata.*``): an empty one
#: (a forged value blanked by the middleware) is not sent.
_STAMP_KEYS = frozenset(BAGGAGE_TRACE_ATTRIBUTES.values())
_METADATA_MARK = "\n" + LANGFUSE_TRACE_METADATA_PREFIX
#: Every key the mapping reads: a span's own keys are intersected with these once.
_READ_KEYS = frozenset(
    {*LANGFUSE_SESSION_KEYS, *LANGFUSE_USER_KEYS, AS_ROOT, IS_APP_ROOT, TRACE_NAME}
    | {TRACE_INPUT, TRACE_OUTPUT, OBSERVATION_INPUT, OBSERVATION_OUTPUT}
    | _STAMP_KEYS
)

_log = RateLimitedLog()
_once = RateLimitedLog(interval=float("inf"))


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


@lru_cache(maxsize=4096)
def _id_problem(text: str) -> str | None:
    return id_problem(text, DEFAULT_MAX_ID_LENGTH)


def spreadable_id(value: object, what: str) -> str | None:
    """The id Langfuse reads from ``value`` if it is valid to spread; otherwise ``None``, logged."""
    if value is None:
        return None
    text = value if isinstance(value, str) else langfuse_text(value) or ""
    problem = _id_problem(text[: DEFAULT_MAX_ID_LENGTH + 1])  # bounded in bytes: still too long
    if problem is None:
        return text
    _log.warning(
        f"invalid-{what}",
        "Not spreading a %s id read from a span to the rest of its trace: %s",
        what,
        problem,
    )
    return None


def _root_io(
    attributes: Mapping[str, object],
    scope_name: str,
    events: Sequence[tuple[str, Mapping[str, object]]],
    names: AbstractSet[str],
) -> dict[str, object]:
    """The ``langfuse.observation.input/output`` a root gains so that v4 shows the trace I/O
    (both sides or neither: one Langfuse key hides a framework's other side)."""
    supplied_input = _first(attributes, (TRACE_INPUT,), names)
    supplied_output = _first(attributes, (TRACE_OUTPUT,), names)
    if supplied_input is None and supplied_output is None:
        return {}
    has_input = OBSERVATION_INPUT in names and attributes[OBSERVATION_INPUT] is not None
    has_output = OBSERVATION_OUTPUT in names and attributes[OBSERVATION_OUTPUT] is not None
    added: dict[str, object] = {}
    if has_input or has_output:
        # Langfuse already reads both sides from its keys: fill only an empty side.
        if not has_input and supplied_input is not None:
            added[OBSERVATION_INPUT] = supplied_input
        if not has_output and supplied_output is not None:
            added[OBSERVATION_OUTPUT] = supplied_output
        return added
    framework = _NO_IO
    if supplied_input is None or supplied_output is None:
        others = {k: v for k, v in attributes.items() if k not in (TRACE_INPUT, TRACE_OUTPUT)}
        framework = read_io(others, scope_name, events)
    sides = (
        (OBSERVATION_INPUT, supplied_input, framework.input, framework.input_key),
        (OBSERVATION_OUTPUT, supplied_output, framework.output, framework.output_key),
    )
    for key, supplied, read, read_key in sides:
        if supplied is not None:
            added[key] = supplied
        elif read is not None:
            if read_key is None:
                return {}  # composed by Langfuse: no single value to copy; add neither side
            added[key] = attributes[read_key]
    return added


def map_spans(
    spans: Sequence[ReadableSpan],
    known: Callable[[int, ReadableSpan], TraceIds | None],
) -> tuple[list[Mapping[str, object]], dict[int, TraceIds]]:
    """The attributes to send for each span (new dicts where something changed) and the request
    keys -> ids learned here; ``known(key, span)`` gives those of requests the batch lacks."""
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
            ids = spreadable_id(session_id, "session"), spreadable_id(user_id, "user")
            _learn(learned, mixed, key, *ids)
    result: list[Mapping[str, object]] = []
    for (span, attributes, names, session_id, user_id), key in zip(seen, keys, strict=True):
        added: dict[str, object] = {}
        request = MEMORY.of(span.context)
        if session_id is None or user_id is None:
            known_ids = learned.get(key) or known(key, span)
            if known_ids is not None:
                session = None if session_id is not None or key in mixed else known_ids.session_id
                user = None if user_id is not None else known_ids.user_id
                _complete_ids(added, request, session, user)
        parent = span.parent
        if parent is not None and parent.is_remote and IS_APP_ROOT not in names:
            added[IS_APP_ROOT] = True  # unless the processor or the app already decided
        trace_io = TRACE_INPUT in names or TRACE_OUTPUT in names
        if trace_io and (
            span.parent is None
            or (AS_ROOT in names and is_true(attributes[AS_ROOT]))
            or is_true(added.get(IS_APP_ROOT))
            or (IS_APP_ROOT in names and is_true(attributes[IS_APP_ROOT]))
        ):
            scope = span.instrumentation_scope
            events = [(event.name, event.attributes or {}) for event in span.events]
            added.update(_root_io(attributes, scope.name if scope else "", events, names))
        elif trace_io:
            _once.warning(
                "trace-io-below-root",
                "A span that is not its trace's root carries langfuse.trace.input/output: "
                "Langfuse v4 (like the Langfuse SDK 5) takes a trace's input and output from its "
                "root observation only, so it ignores them; set them on the root span",
            )
        fills = request.fills() if request is not None and (request.values or request.tags) else {}
        if fills:  # an explicit value wins, under any key Langfuse reads for that field
            given = given_trace_fields(attributes, fills)
            added.update((name, value) for name, value in fills.items() if name not in given)
        result.append(_sent(attributes, names, added))
    return result, learned


def _sent(
    attributes: Mapping[str, object], names: AbstractSet[str], added: Mapping[str, object]
) -> Mapping[str, object]:
    """``attributes``, or a dict with ``added`` and without empty trace attributes (forged
    values blanked: a span's attribute cannot be removed, so Langfuse would show an empty key)."""
    blank = [key for key in names & _STAMP_KEYS if attributes[key] == ""]
    if _METADATA_MARK in "\n" + "\n".join(attributes):  # one pass in C: most spans have none
        prefix = LANGFUSE_TRACE_METADATA_PREFIX
        blank += [k for k in attributes if k.startswith(prefix) and attributes[k] == ""]
    if not added and not blank:
        return attributes
    mapped = {**attributes, **added}
    for key in blank:
        if mapped[key] == "":  # not filled from the request's memory
            del mapped[key]
    return mapped


def _complete_ids(
    added: dict[str, object], request: Request | None, session_id: str | None, user_id: str | None
) -> None:
    """Add the ids a span lacks under the attributes its request's processor stamps them on."""
    if session_id is not None:
        keys = (LANGFUSE_SESSION_ID,) if request is None else request.session_attributes(session_id)
        added.update(dict.fromkeys(keys, session_id))
    if user_id is not None:
        keys = (LANGFUSE_USER_ID,) if request is None else request.user_attributes()
        added.update(dict.fromkeys(keys, user_id))


def _learn(
    learned: dict[int, TraceIds],
    mixed: set[int],
    key: int,
    session_id: str | None,
    user_id: str | None,
) -> None:
    """Merge a span's valid ids into its request's; two sessions make it ambiguous."""
    previous = learned.get(key, TraceIds(None, None))
    if session_id and previous.session_id and session_id != previous.session_id:
        mixed.add(key)
    ids = TraceIds(previous.session_id or session_id, previous.user_id or user_id)
    if ids != (None, None):
        learned[key] = ids
