"""How the Langfuse server reads a span, stated once for the mapping and the testing receiver.

Pure functions over plain attribute mappings (``docs/exporter.md`` explains the rules):

* :func:`langfuse_text`: non-string values are JSON-stringified, empty ones skipped;
* :func:`session_id_of` / :func:`user_id_of`: the id keys in Langfuse's priority order;
* :func:`observation_name`: the name Langfuse gives an observation (and so a trace via its root);
* :func:`usage_tokens`: the input + output tokens Langfuse reads from a span's usage keys;
* :func:`read_io`: an observation's (or a legacy trace's) input and output. The Langfuse keys
  come first, and when either side is there, both sides come from them; only otherwise are
  framework keys read, one framework at a time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import partial
from typing import Literal

from ..attributes import LANGFUSE_IS_APP_ROOT, LANGFUSE_SESSION_ID, USER_ATTRIBUTE_KEYS

AS_ROOT = "langfuse.internal.as_root"
IS_APP_ROOT = LANGFUSE_IS_APP_ROOT
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


def first_text(attributes: Attributes, keys: Iterable[str]) -> str | None:
    """The first key's value that is not empty, as :func:`langfuse_text`."""
    for key in keys:
        text = langfuse_text(attributes.get(key))
        if text is not None:
            return text
    return None


def session_id_of(attributes: Attributes) -> str | None:
    """The session id Langfuse reads from a span's attributes (resource ones are not read)."""
    return first_text(attributes, LANGFUSE_SESSION_KEYS)


def user_id_of(attributes: Attributes) -> str | None:
    """The user id Langfuse reads from a span's attributes."""
    return first_text(attributes, LANGFUSE_USER_KEYS)


#: Langfuse's generic usage reader: ``gen_ai.usage.<name>`` or ``llm.token_count.<name>``, the
#: first name present per side; ``langfuse.observation.usage_details`` (a JSON object) wins.
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
    for key in keys:
        if key in present:
            found = _count(attributes[key])
            if found is not None:
                return found
    return None


def usage_tokens(attributes: Attributes, present: AbstractSet[str] | None = None) -> int:
    """Input + output tokens as Langfuse reads a span's usage (its total when it gives neither
    side); 0 without usage. Cached and reasoning tokens are inside these counts. ``present``:
    the attribute keys among :data:`USAGE_KEYS`, if known."""
    present = USAGE_KEYS.intersection(attributes if present is None else present)
    if not present:
        return 0
    if USAGE_DETAILS in present:
        details = attributes[USAGE_DETAILS]
        try:
            parsed = json.loads(details) if isinstance(details, str) else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            counts = {key: _count(value) for key, value in parsed.items()}
            if counts.get("total") is not None:
                return counts["total"] or 0
            return sum(count for count in counts.values() if count is not None)
    sides = [_side(attributes, present, _INPUT_TOKENS), _side(attributes, present, _OUTPUT_TOKENS)]
    if sides[0] is None and sides[1] is None:
        return _side(attributes, present, _TOTAL_TOKENS) or 0
    return sum(side for side in sides if side is not None)


def is_true(value: object) -> bool:
    """Langfuse's test for its internal flags: ``True`` or the string ``"true"``."""
    return value is True or value == "true"


def _truthy(value: object) -> bool:
    """JavaScript truthiness of an attribute value."""
    if value is None or value is False or value == "":
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    return True


def _js_concat(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_js_concat(item) for item in value)
    return langfuse_text(value) or ""


def observation_name(span_name: str, attributes: Attributes) -> str:
    """The name Langfuse gives an observation: ``gen_ai.tool.name``, ``genkit:name``,
    ``logfire.msg``, ``ai.toolCall.name``, ``ai.operationId`` (prefixed by
    ``ai.telemetry.functionId`` and ``:``), else the span name."""
    tool = attributes.get("gen_ai.tool.name")
    if _truthy(tool):
        return langfuse_text(tool) or span_name
    if "genkit:name" in attributes:
        return _js_concat(attributes["genkit:name"])
    message = attributes.get("logfire.msg")
    if _truthy(message):
        return langfuse_text(message) or span_name
    if "ai.toolCall.name" in attributes:
        return _js_concat(attributes["ai.toolCall.name"])
    if "ai.operationId" in attributes:
        function_id = attributes.get("ai.telemetry.functionId")
        prefix = _js_concat(function_id) + ":" if _truthy(function_id) else ""
        return prefix + _js_concat(attributes["ai.operationId"])
    return span_name


@dataclass(frozen=True)
class IoRead:
    """What Langfuse reads as input and output, and from where.

    ``input_key``/``output_key`` name the one attribute a side was taken from as it is, or are
    ``None`` when the side is empty or was composed (from events, several keys, or a parsed
    payload). ``langfuse_keys``: both sides came from Langfuse's own keys.
    """

    input: object = None
    output: object = None
    input_key: str | None = None
    output_key: str | None = None
    langfuse_keys: bool = False


_NOTHING = IoRead()


def _pair(attributes: Attributes, input_key: str, output_key: str) -> IoRead:
    return IoRead(
        attributes.get(input_key),
        attributes.get(output_key),
        input_key if attributes.get(input_key) is not None else None,
        output_key if attributes.get(output_key) is not None else None,
    )


def _either(read: IoRead) -> bool:
    return _truthy(read.input) or _truthy(read.output)


def read_io(
    attributes: Attributes,
    scope_name: str = "",
    events: Events = (),
    domain: Literal["observation", "trace"] = "observation",
) -> IoRead:
    """Langfuse's input/output extraction for one span (``domain="trace"``: a legacy (v3)
    trace read from its root span, where ``langfuse.trace.input/output`` come first)."""
    read = _langfuse_io(attributes, domain)
    if read.input is not None or read.output is not None:
        return read
    if not may_have_framework_io(attributes, scope_name, events):
        return _NOTHING
    for framework in (_scoped_io, _event_io, _attribute_io, _gen_ai_io):
        found = framework(attributes, scope_name, events)
        if found is not None:
            return found
    return _NOTHING


#: Frameworks that write one attribute per side, in the order Langfuse tries them.
_ATTRIBUTE_PAIRS = (
    ("mlflow.spanInputs", "mlflow.spanOutputs"),
    ("traceloop.entity.input", "traceloop.entity.output"),
    ("input.value", "output.value"),
    ("input", "output"),
)


#: Every attribute key (and key prefix) a framework read looks at, scope-gated ones aside.
_FRAMEWORK_KEYS = frozenset(
    {
        "gcp.vertex.agent.llm_request",
        "gcp.vertex.agent.llm_response",
        "gcp.vertex.agent.tool_call_args",
        "gcp.vertex.agent.tool_response",
        "prompt",
        "all_messages_events",
        "lk.input_text",
        "lk.user_transcript",
        "lk.chat_ctx",
        "lk.function_tool.output",
        "lk.response.text",
        "events",
        "pydantic_ai.all_messages",
        "final_result",
        "tool_arguments",
        "tool_response",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    }
    | {key for pair in _ATTRIBUTE_PAIRS for key in pair}
)
_FRAMEWORK_PREFIXES = (
    "gen_ai.prompt",
    "gen_ai.completion",
    "llm.input_messages",
    "llm.output_messages",
)
_FRAMEWORK_SCOPES = frozenset({"genkit-tracer", "ai", "@flue/opentelemetry"})


def may_have_framework_io(attributes: Iterable[str], scope_name: str, events: Events) -> bool:
    """Whether a framework read could find anything (a fast test before :func:`read_io`)."""
    if events or scope_name in _FRAMEWORK_SCOPES:
        return True
    if not _FRAMEWORK_KEYS.isdisjoint(attributes):
        return True
    return any(key.startswith(_FRAMEWORK_PREFIXES) for key in attributes)


def _langfuse_io(attributes: Attributes, domain: str) -> IoRead:
    sides = []
    for trace_key, observation_key in (
        (TRACE_INPUT, OBSERVATION_INPUT),
        (TRACE_OUTPUT, OBSERVATION_OUTPUT),
    ):
        key = trace_key if domain == "trace" and _truthy(attributes.get(trace_key)) else None
        key = key or observation_key
        value = attributes.get(key)
        sides.append((value, key if value is not None else None))
    (input_value, input_key), (output_value, output_key) = sides
    return IoRead(input_value, output_value, input_key, output_key, langfuse_keys=True)


def _parsed(value: object) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _scoped_io(attributes: Attributes, scope_name: str, events: Events) -> IoRead | None:
    """Frameworks Langfuse recognises by their instrumentation scope."""
    if scope_name == "genkit-tracer":
        # Model spans are unwrapped to their messages: composed, so no single key.
        genkit_input, genkit_output = (
            _parsed(attributes.get(k)) for k in ("genkit:input", "genkit:output")
        )
        unwrapped_input = genkit_input.get("messages") if isinstance(genkit_input, dict) else None
        unwrapped_output = genkit_output.get("message") if isinstance(genkit_output, dict) else None
        return IoRead(
            unwrapped_input if unwrapped_input is not None else genkit_input,
            unwrapped_output if unwrapped_output is not None else genkit_output,
        )
    if scope_name == "ai":
        return _vercel_io(attributes)
    if scope_name == "@flue/opentelemetry":
        flue_input = _first_present(
            attributes,
            ("flue.turn.input", "flue.tool.arguments", "flue.task.prompt", "flue.workflow.payload"),
        )
        flue_output = _first_present(
            attributes,
            (
                "flue.turn.output",
                "flue.tool.result",
                "flue.task.result",
                "flue.operation.result",
                "flue.workflow.result",
            ),
        )
        if flue_input is not None or flue_output is not None:
            return IoRead(_parsed(flue_input), _parsed(flue_output))
    return None


def _first_present(attributes: Attributes, keys: Iterable[str]) -> object:
    for key in keys:
        if attributes.get(key) is not None:
            return attributes[key]
    return None


def _first_key(attributes: Attributes, keys: Iterable[str]) -> str | None:
    return next((key for key in keys if key in attributes), None)


def _vercel_io(attributes: Attributes) -> IoRead:
    input_key = _first_key(attributes, ("ai.prompt.messages", "ai.prompt", "ai.toolCall.args"))
    if "ai.response.text" in attributes and "ai.response.toolCalls" in attributes:
        composed = {
            "role": "assistant",
            "content": attributes["ai.response.text"],
            "tool_calls": attributes["ai.response.toolCalls"],
        }
        output: object = json.dumps(composed, separators=(",", ":"))
        output_key = None
    else:
        output_key = (
            "ai.response.text" if _truthy(attributes.get("ai.response.text")) else None
        ) or _first_key(
            attributes,
            (
                "ai.result.text",
                "ai.toolCall.result",
                "ai.response.object",
                "ai.result.object",
                "ai.response.toolCalls",
                "ai.result.toolCalls",
            ),
        )
        output = attributes.get(output_key) if output_key else None
    read = IoRead(attributes.get(input_key) if input_key else None, output, input_key, output_key)
    gen_ai = _gen_ai_io(attributes, "", ())
    if gen_ai is None:
        return read
    return IoRead(
        read.input if read.input is not None else gen_ai.input,
        read.output if read.output is not None else gen_ai.output,
        read.input_key if read.input is not None else gen_ai.input_key,
        read.output_key if read.output is not None else gen_ai.output_key,
    )


_INPUT_MESSAGE_EVENTS = frozenset(
    {"gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message"}
    | {"gen_ai.tool.message"}
)


def _event_io(attributes: Attributes, scope_name: str, events: Events) -> IoRead | None:
    """Prompts and completions recorded as span events: always composed."""
    for name, event_attributes in events:
        if name == "gen_ai.client.inference.operation.details":
            found = _gen_ai_io(event_attributes, scope_name, ())
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


def _attribute_io(attributes: Attributes, scope_name: str, events: Events) -> IoRead | None:
    """Frameworks recognised by their attribute keys, in Langfuse's order."""
    readers: tuple[Callable[[], IoRead | None], ...] = (
        lambda: _vertex_io(attributes),
        lambda: _if_either(_pair(attributes, "prompt", "all_messages_events")),  # Logfire
        lambda: _if_either(_livekit_io(attributes)),
        lambda: _logfire_events_io(attributes),
        *(partial(_pair_if_either, attributes, *pair) for pair in _ATTRIBUTE_PAIRS),
        lambda: _pydantic_ai_io(attributes) if scope_name == "pydantic-ai" else None,
        lambda: _if_either(_pair(attributes, "tool_arguments", "tool_response")),
        lambda: _prefixed_io(attributes),
    )
    for reader in readers:
        found = reader()
        if found is not None:
            return found
    return None


def _pair_if_either(attributes: Attributes, input_key: str, output_key: str) -> IoRead | None:
    return _if_either(_pair(attributes, input_key, output_key))


def _if_either(read: IoRead) -> IoRead | None:
    return read if _either(read) else None


def _pydantic_ai_io(attributes: Attributes) -> IoRead | None:
    read = _pair(attributes, "pydantic_ai.all_messages", "final_result")
    if _truthy(read.input) and _truthy(attributes.get("gen_ai.system_instructions")):
        read = IoRead(read.input, read.output, None, read.output_key)  # instructions prepended
    return _if_either(read)


def _prefixed_io(attributes: Attributes) -> IoRead | None:
    """Traceloop's ``gen_ai.prompt.*`` and OpenInference's ``llm.*_messages.*``: composed."""
    for input_prefix, output_prefix in (
        ("gen_ai.prompt", "gen_ai.completion"),
        ("llm.input_messages", "llm.output_messages"),
    ):
        inputs = {k: v for k, v in attributes.items() if k.startswith(input_prefix)}
        outputs = {k: v for k, v in attributes.items() if k.startswith(output_prefix)}
        if inputs or outputs:
            return IoRead(inputs, outputs)
    return None


def _vertex_io(attributes: Attributes) -> IoRead | None:
    read = _pair(attributes, "gcp.vertex.agent.llm_request", "gcp.vertex.agent.llm_response")
    input_value, input_key = read.input, read.input_key
    output_value, output_key = read.output, read.output_key
    if input_value == "{}" or not _truthy(input_value):
        input_key = "gcp.vertex.agent.tool_call_args"
        input_value = attributes.get(input_key)
    if output_value == "{}" or not _truthy(output_value):
        output_key = "gcp.vertex.agent.tool_response"
        output_value = attributes.get(output_key)
    read = IoRead(
        input_value,
        output_value,
        input_key if input_value is not None else None,
        output_key if output_value is not None else None,
    )
    return read if _either(read) else None


def _livekit_io(attributes: Attributes) -> IoRead:
    input_key = next(
        (
            key
            for key in ("lk.input_text", "lk.user_transcript", "lk.chat_ctx")
            if attributes.get(key) is not None
        ),
        None,
    )
    output_key = (
        "lk.function_tool.output"
        if _truthy(attributes.get("lk.function_tool.output"))
        else "lk.response.text"
    )
    output = attributes.get(output_key)
    return IoRead(
        attributes.get(input_key) if input_key else None,
        output,
        input_key,
        output_key if output is not None else None,
    )


def _logfire_events_io(attributes: Attributes) -> IoRead | None:
    raw = attributes.get("events")
    if not isinstance(raw, (str, list, tuple)):
        return None
    parsed = _parsed(raw) if isinstance(raw, str) else list(raw)
    if isinstance(raw, str) and parsed is raw:
        parsed = []  # not JSON: Langfuse reads no events
    if not isinstance(parsed, list):
        return None
    choice = next((item for item in parsed if _is_choice(item)), None)
    inputs = [item for item in parsed if not _is_choice(item)]
    if choice is None and not inputs:
        return None
    return IoRead(inputs or None, choice)


def _is_choice(item: object) -> bool:
    return isinstance(item, dict) and item.get("event.name") == "gen_ai.choice"


def _gen_ai_io(attributes: Attributes, scope_name: str, events: Events) -> IoRead | None:
    """OpenTelemetry GenAI messages, then tool call arguments and results."""
    read = _pair(attributes, "gen_ai.input.messages", "gen_ai.output.messages")
    if _truthy(read.input) and _truthy(attributes.get("gen_ai.system_instructions")):
        # Langfuse prepends the system instructions to the messages: composed.
        read = IoRead(read.input, read.output, None, read.output_key)
    if _either(read):
        return read
    read = _pair(attributes, "gen_ai.tool.call.arguments", "gen_ai.tool.call.result")
    return read if _either(read) else None
