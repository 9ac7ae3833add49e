"""How the Langfuse server reads a span (``docs/exporter.md``): ids, usage, input/output and
trace attributes, shared by the mapping, coverage and the testing receiver (which adds the rest).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal

from ..attributes import (
    LANGFUSE_ENVIRONMENT,
    LANGFUSE_IS_APP_ROOT,
    LANGFUSE_TRACE_METADATA_PREFIX,
    LANGFUSE_TRACE_TAGS,
    SESSION_ATTRIBUTE_KEYS,
    SPAN_ENVIRONMENT_KEYS,
    USER_ATTRIBUTE_KEYS,
)

AS_ROOT = "langfuse.internal.as_root"
IS_APP_ROOT = LANGFUSE_IS_APP_ROOT
TRACE_NAME = "langfuse.trace.name"
TRACE_INPUT = "langfuse.trace.input"
TRACE_OUTPUT = "langfuse.trace.output"
OBSERVATION_INPUT = "langfuse.observation.input"
OBSERVATION_OUTPUT = "langfuse.observation.output"

#: Span attribute keys Langfuse reads a session id from, in its priority order.
LANGFUSE_SESSION_KEYS = (
    *SESSION_ATTRIBUTE_KEYS,
    "langfuse.observation.metadata.langfuse_session_id",
    "langfuse.trace.metadata.langfuse_session_id",
)
#: Span attribute keys Langfuse reads a user id from, in its priority order.
LANGFUSE_USER_KEYS = (
    *USER_ATTRIBUTE_KEYS,
    "langfuse.observation.metadata.langfuse_user_id",
    "langfuse.trace.metadata.langfuse_user_id",
)

Attributes = Mapping[str, object]
#: Span events as ``(name, attributes)`` pairs.
Events = Sequence[tuple[str, Attributes]]


def langfuse_text(value: object) -> str | None:
    """The text Langfuse makes of an attribute value: strings as they are, anything else
    JSON-stringified the way JavaScript does; ``None`` for missing or empty values."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    return json.dumps(_js(value), separators=(",", ":"), ensure_ascii=False)


def _js(value: object) -> object:
    """A value as JavaScript's ``JSON.stringify`` sees it (integral floats print as integers,
    NaN and infinities as ``null``)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return int(value) if value.is_integer() else value
    if isinstance(value, (list, tuple)):
        return [_js(item) for item in value]
    return value


def is_true(value: object) -> bool:
    """Langfuse's test for its internal flags: ``True`` or the string ``"true"``."""
    return value is True or value == "true"


def js_truthy(value: object) -> bool:
    """JavaScript truthiness of an attribute value."""
    if value is None or value is False or value == "":
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    return True


def js_concat(value: object) -> str:
    """JavaScript's ``"" + value`` for an attribute value."""
    if isinstance(value, str):
        return value
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(js_concat(item) for item in value)
    return langfuse_text(value) or ""


def _js_string(value: object) -> str:
    """JavaScript's ``String(value)`` for an attribute or JSON value."""
    if value is None or isinstance(value, Mapping):
        return "null" if value is None else "[object Object]"
    return js_concat(value)


# -- usage ------------------------------------------------------------------------------------

#: ``gen_ai.usage.<name>`` or ``llm.token_count.<name>``, the first name present per side;
#: ``langfuse.observation.usage_details`` (a JSON object) wins.
USAGE_DETAILS = "langfuse.observation.usage_details"


def _usage_keys(*names: str) -> tuple[str, ...]:
    return tuple(p + name for name in names for p in ("gen_ai.usage.", "llm.token_count."))


_INPUT_TOKENS = _usage_keys("prompt_tokens", "input_tokens", "prompt")
_OUTPUT_TOKENS = _usage_keys("completion_tokens", "output_tokens", "completion")
_TOTAL_TOKENS = _usage_keys("total_tokens", "total")
USAGE_KEYS = frozenset({USAGE_DETAILS, *_INPUT_TOKENS, *_OUTPUT_TOKENS, *_TOTAL_TOKENS})


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number >= 0 else None


def _side(attributes: Attributes, present: AbstractSet[str], keys: Iterable[str]) -> int | None:
    counts = (_count(attributes[key]) for key in keys if key in present)
    return next((count for count in counts if count is not None), None)


def usage_tokens(attributes: Attributes, present: AbstractSet[str] | None = None) -> int:
    """Input + output tokens as Langfuse reads a span's usage (its total when it gives neither
    side); 0 without usage. ``present``: the attribute keys among :data:`USAGE_KEYS`, if known."""
    present = USAGE_KEYS.intersection(attributes if present is None else present)
    if not present:
        return 0
    if USAGE_DETAILS in present:
        details = attributes[USAGE_DETAILS]
        parsed = _parsed(details) if isinstance(details, str) else None
        if isinstance(parsed, dict):
            counts = {key: _count(value) for key, value in parsed.items()}
            if counts.get("total") is not None:
                return counts["total"] or 0
            return sum(count for count in counts.values() if count is not None)
    sides = [_side(attributes, present, _INPUT_TOKENS), _side(attributes, present, _OUTPUT_TOKENS)]
    if sides[0] is None and sides[1] is None:
        return _side(attributes, present, _TOTAL_TOKENS) or 0
    return sum(side for side in sides if side is not None)


# -- input and output -------------------------------------------------------------------------


@dataclass(frozen=True)
class IoRead:
    """What Langfuse reads as input and output, and from where: ``input_key``/``output_key``
    name the one attribute a side was taken from as it is (``None`` when empty or composed)."""

    input: object = None
    output: object = None
    input_key: str | None = None
    output_key: str | None = None


_NOTHING = IoRead()

#: Frameworks that write one attribute per side, in the order Langfuse tries them
#: (MLflow, Traceloop, OpenInference, plain; then OpenTelemetry GenAI messages and tool calls).
_ATTRIBUTE_PAIRS = (
    ("mlflow.spanInputs", "mlflow.spanOutputs"),
    ("traceloop.entity.input", "traceloop.entity.output"),
    ("input.value", "output.value"),
    ("input", "output"),
    ("tool_arguments", "tool_response"),
)
_GEN_AI_PAIRS = (
    ("gen_ai.input.messages", "gen_ai.output.messages"),
    ("gen_ai.tool.call.arguments", "gen_ai.tool.call.result"),
)
#: Traceloop's ``gen_ai.prompt.*`` and OpenInference's ``llm.*_messages.*``: composed.
_PREFIX_PAIRS = (
    ("gen_ai.prompt", "gen_ai.completion"),
    ("llm.input_messages", "llm.output_messages"),
)
_FRAMEWORK_KEYS = frozenset(key for pair in _ATTRIBUTE_PAIRS + _GEN_AI_PAIRS for key in pair)
_FRAMEWORK_PREFIXES = tuple(prefix for pair in _PREFIX_PAIRS for prefix in pair)
_INPUT_MESSAGE_EVENTS = frozenset(
    f"gen_ai.{role}.message" for role in ("system", "user", "assistant", "tool")
)


def read_io(
    attributes: Attributes,
    scope_name: str = "",
    events: Events = (),
    domain: Literal["observation", "trace"] = "observation",
) -> IoRead:
    """Langfuse's input/output extraction for one span (``domain="trace"``: a legacy (v3)
    trace read from its root span, where ``langfuse.trace.input/output`` come first).

    The Langfuse keys come first, and when either side is there, both come from them; only
    otherwise are framework keys read: Genkit, GenAI events, the attribute pairs above, composed
    message prefixes, then GenAI messages. Other frameworks' keys are not read here."""
    sides = []
    for trace_key, observation_key in (
        (TRACE_INPUT, OBSERVATION_INPUT),
        (TRACE_OUTPUT, OBSERVATION_OUTPUT),
    ):
        key = trace_key if domain == "trace" and js_truthy(attributes.get(trace_key)) else None
        key = key or observation_key
        value = attributes.get(key)
        sides.append((value, key if value is not None else None))
    (input_value, input_key), (output_value, output_key) = sides
    if input_value is not None or output_value is not None:
        return IoRead(input_value, output_value, input_key, output_key)
    if not (
        events
        or scope_name == "genkit-tracer"
        or not _FRAMEWORK_KEYS.isdisjoint(attributes)
        or any(key.startswith(_FRAMEWORK_PREFIXES) for key in attributes)
    ):
        return _NOTHING  # the fast way out
    if scope_name == "genkit-tracer":
        return _genkit_io(attributes)
    read = _event_io(events)
    for input_key, output_key in _ATTRIBUTE_PAIRS:
        read = read or _pair(attributes, input_key, output_key)
    for input_prefix, output_prefix in _PREFIX_PAIRS:
        inputs = {k: v for k, v in attributes.items() if k.startswith(input_prefix)}
        outputs = {k: v for k, v in attributes.items() if k.startswith(output_prefix)}
        read = read or (IoRead(inputs, outputs) if inputs or outputs else None)
    return read or _gen_ai_io(attributes) or _NOTHING


def _pair(attributes: Attributes, input_key: str, output_key: str) -> IoRead | None:
    """The pair's values if either is truthy, each under its key."""
    inp, out = attributes.get(input_key), attributes.get(output_key)
    if not (js_truthy(inp) or js_truthy(out)):
        return None
    keys = (input_key if inp is not None else None, output_key if out is not None else None)
    return IoRead(inp, out, *keys)


def _parsed(value: object) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _genkit_io(attributes: Attributes) -> IoRead:
    """Genkit model spans are unwrapped to their messages: composed, so no single key."""
    genkit_input, genkit_output = (
        _parsed(attributes.get(k)) for k in ("genkit:input", "genkit:output")
    )
    unwrapped_input = genkit_input.get("messages") if isinstance(genkit_input, dict) else None
    unwrapped_output = genkit_output.get("message") if isinstance(genkit_output, dict) else None
    return IoRead(
        unwrapped_input if unwrapped_input is not None else genkit_input,
        unwrapped_output if unwrapped_output is not None else genkit_output,
    )


def _event_io(events: Events) -> IoRead | None:
    """Prompts and completions recorded as span events: always composed."""
    for name, event_attributes in events:
        if name == "gen_ai.client.inference.operation.details":
            found = _gen_ai_io(event_attributes)
            if found is not None:
                return IoRead(found.input, found.output)
    inputs = [
        {"role": name.removeprefix("gen_ai.").removesuffix(".message"), **dict(attrs)}
        for name, attrs in events
        if name in _INPUT_MESSAGE_EVENTS
    ]
    outputs = [dict(attrs) for name, attrs in events if name == "gen_ai.choice"]
    if inputs or outputs:
        return IoRead(
            inputs or None, (outputs[0] if len(outputs) == 1 else outputs) if outputs else None
        )
    prompt = next((dict(a) for n, a in events if n == "gen_ai.content.prompt"), None)
    completion = next((dict(a) for n, a in events if n == "gen_ai.content.completion"), None)
    if prompt is not None or completion is not None:
        return IoRead(prompt or {}, completion or {})
    return None


def _gen_ai_io(attributes: Attributes) -> IoRead | None:
    """OpenTelemetry GenAI messages, then tool call arguments and results."""
    read = _pair(attributes, *_GEN_AI_PAIRS[0])
    if (
        read is not None
        and js_truthy(read.input)
        and js_truthy(attributes.get("gen_ai.system_instructions"))
    ):
        return IoRead(read.input, read.output, None, read.output_key)  # instructions prepended
    return read or _pair(attributes, *_GEN_AI_PAIRS[1])


# -- trace attributes ---------------------------------------------------------------------

ENVIRONMENT_KEYS = (LANGFUSE_ENVIRONMENT, *SPAN_ENVIRONMENT_KEYS)
TRACE_METADATA = LANGFUSE_TRACE_METADATA_PREFIX.rstrip(".")
_METADATA_PREFIXES = (TRACE_METADATA, "langfuse.metadata", "ai.telemetry.metadata")
_METADATA_EXCLUDED = frozenset(
    f"ai.telemetry.metadata.{name}" for name in ("userId", "sessionId", "tags", "langfusePrompt")
)
#: Keys read for tags, in Langfuse's priority order (the first truthy one).
TAG_KEYS = (
    LANGFUSE_TRACE_TAGS,
    "langfuse.tags",
    "langfuse.observation.metadata.langfuse_tags",
    "langfuse.trace.metadata.langfuse_tags",
    "ai.telemetry.metadata.tags",
    "tag.tags",
)


def tags_of(attributes: Attributes) -> list[str]:
    """The tags Langfuse reads from a span: a list, a JSON array or comma-separated text."""
    value = next((attributes[k] for k in TAG_KEYS if js_truthy(attributes.get(k))), None)
    if isinstance(value, str) and value.strip().startswith("["):
        value = _parsed(value)
    if isinstance(value, (list, tuple)):
        return [_js_string(tag) for tag in value]
    if not isinstance(value, str):
        return []
    return [tag.strip() for tag in value.split(",")] if "," in value else [value]


def trace_metadata_of(attributes: Attributes) -> dict[str, object]:
    """The trace metadata Langfuse reads from a span's own keys: a JSON object under
    ``langfuse.trace.metadata``, then flat keys ``langfuse.trace.metadata.<k>`` (which win)."""
    primary = attributes.get(TRACE_METADATA)
    primary = _parsed(primary if js_truthy(primary) else attributes.get("langfuse.metadata"))
    metadata: dict[str, object] = {}
    if isinstance(primary, Mapping):
        metadata = {str(k): v for k, v in primary.items()}
    elif isinstance(primary, list):
        metadata = {str(i): v for i, v in enumerate(primary)}
    for key, value in attributes.items():
        for prefix in _METADATA_PREFIXES:
            if key.startswith(prefix + ".") and key not in _METADATA_EXCLUDED:
                name = key[len(prefix) + 1 :]
                if name:
                    metadata[name] = value
    return metadata


def given_trace_fields(attributes: Attributes, wanted: Mapping[str, object]) -> set[str]:
    """Which of the ``wanted`` attributes (keys this package stamps) the span already gives
    Langfuse a non-empty value for, under any key Langfuse reads for that field (the span's
    own keys). Tags that are only some of the ``wanted`` tags do not count: v4 shows the last
    tag list written, so every span that carries tags must carry them all."""
    given: set[str] = set()
    metadata: dict[str, object] | None = None
    for key, value in wanted.items():
        if key == LANGFUSE_TRACE_TAGS:
            own = set(tags_of(attributes))
            if own and not (isinstance(value, tuple) and own < set(value)):
                given.add(key)
        elif key in attributes and attributes[key] != "":
            given.add(key)  # an empty string (a forged value blanked) is no value
        elif key.startswith(LANGFUSE_TRACE_METADATA_PREFIX):
            if metadata is None:
                metadata = trace_metadata_of(attributes)
            if metadata.get(key[len(LANGFUSE_TRACE_METADATA_PREFIX) :], "") != "":
                given.add(key)
        elif key == LANGFUSE_ENVIRONMENT and any(
            map(js_truthy, map(attributes.get, ENVIRONMENT_KEYS))
        ):
            given.add(key)
    return given
