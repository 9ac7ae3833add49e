"""What Langfuse shows for the spans it received: traces and sessions, by its own rules
(``langfuse-contract.md`` §2): key priority per span, last non-empty value per trace, the trace
name from ``langfuse.trace.name`` else the root span's name, trace I/O from the root observation
(v4) or from ``langfuse.trace.input/output`` (v3)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..mapping import (
    AS_ROOT,
    LANGFUSE_SESSION_KEYS,
    LANGFUSE_USER_KEYS,
    OBSERVATION_INPUT,
    OBSERVATION_OUTPUT,
    TRACE_INPUT,
    TRACE_NAME,
    TRACE_OUTPUT,
)
from ._otlp import ReceivedSpan

#: Attributes the v4 server reads an observation's input/output from, in order.
OBSERVATION_INPUT_KEYS = (
    OBSERVATION_INPUT,
    "input.value",
    "gen_ai.input.messages",
    "gen_ai.prompt",
)
OBSERVATION_OUTPUT_KEYS = (
    OBSERVATION_OUTPUT,
    "output.value",
    "gen_ai.output.messages",
    "gen_ai.completion",
)


def _text(value: object) -> str | None:
    """Langfuse JSON-stringifies non-string values and skips empty strings."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _first(attributes: dict[str, Any], keys: Iterable[str]) -> str | None:
    for key in keys:
        value = _text(attributes.get(key))
        if value is not None:
            return value
    return None


def span_session_id(span: ReceivedSpan) -> str | None:
    """The session id Langfuse reads from one span (resource attributes are not read)."""
    return _first(span.attributes, LANGFUSE_SESSION_KEYS)


def span_user_id(span: ReceivedSpan) -> str | None:
    """The user id Langfuse reads from one span."""
    return _first(span.attributes, LANGFUSE_USER_KEYS)


def is_root(span: ReceivedSpan) -> bool:
    """No parent span id, or ``langfuse.internal.as_root`` true. Remote parents don't count."""
    return span.parent_span_id is None or span.attributes.get(AS_ROOT) is True


@dataclass
class TraceView:
    """A Langfuse trace: its spans (observations) in start order and the trace-level fields."""

    id: str
    spans: list[ReceivedSpan]
    session_id: str | None = None
    user_id: str | None = None
    name: str | None = None
    input: str | None = None
    output: str | None = None
    input_v3: str | None = None
    output_v3: str | None = None
    timestamp: int = 0

    @property
    def root(self) -> ReceivedSpan | None:
        """The root observation, if it arrived."""
        return next((span for span in self.spans if is_root(span)), None)

    def span(self, name: str) -> ReceivedSpan:
        """The one span of this trace named ``name``."""
        matches = [span for span in self.spans if span.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} spans named {name!r} in trace {self.id}")
        return matches[0]


@dataclass
class SessionView:
    """A Langfuse session: its traces in time order and its scores."""

    id: str
    traces: list[TraceView] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)

    @property
    def spans(self) -> list[ReceivedSpan]:
        return [span for trace in self.traces for span in trace.spans]

    @property
    def observations_in_session(self) -> int:
        """Spans whose own session id is this session: what v4 sums cost and usage over."""
        return sum(1 for span in self.spans if span_session_id(span) == self.id)


def build_traces(arrivals: Sequence[ReceivedSpan]) -> dict[str, TraceView]:
    """Group spans (in arrival order; a re-sent span replaces the earlier copy) into traces."""
    latest: dict[tuple[str, str], ReceivedSpan] = {}
    for span in arrivals:
        latest.pop((span.trace_id, span.span_id), None)
        latest[(span.trace_id, span.span_id)] = span
    traces: dict[str, TraceView] = {}
    for span in latest.values():
        trace = traces.setdefault(span.trace_id, TraceView(span.trace_id, []))
        trace.spans.append(span)
        trace.session_id = span_session_id(span) or trace.session_id  # last non-empty wins
        trace.user_id = span_user_id(span) or trace.user_id
        trace.name = _text(span.attributes.get(TRACE_NAME)) or trace.name
        trace.input_v3 = _text(span.attributes.get(TRACE_INPUT)) or trace.input_v3
        trace.output_v3 = _text(span.attributes.get(TRACE_OUTPUT)) or trace.output_v3
    for trace in traces.values():
        trace.spans.sort(key=lambda span: span.start_time_unix_nano)
        trace.timestamp = trace.spans[0].start_time_unix_nano
        root = trace.root
        if root is not None:
            trace.name = trace.name or root.name
            trace.input = _first(root.attributes, OBSERVATION_INPUT_KEYS)
            trace.output = _first(root.attributes, OBSERVATION_OUTPUT_KEYS)
    return traces


def build_sessions(
    traces: Iterable[TraceView], scores: Iterable[dict[str, Any]]
) -> dict[str, SessionView]:
    """Sessions from traces with a session id, in time order, with their session scores."""
    sessions: dict[str, SessionView] = {}
    for trace in sorted(traces, key=lambda trace: trace.timestamp):
        if trace.session_id is not None:
            sessions.setdefault(trace.session_id, SessionView(trace.session_id)).traces.append(
                trace
            )
    for score in scores:
        session_id = score.get("sessionId")
        if isinstance(session_id, str):
            sessions.setdefault(session_id, SessionView(session_id)).scores.append(score)
    return sessions


#: The observation types Langfuse knows (``langfuse.observation.type``).
OBSERVATION_TYPES = frozenset(
    {
        "span",
        "generation",
        "event",
        "embedding",
        "agent",
        "tool",
        "chain",
        "retriever",
        "guardrail",
        "evaluator",
    }
)
OBSERVATION_TYPE = "langfuse.observation.type"
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
#: ``gen_ai.operation.name`` values that make a generation.
GENERATION_OPERATIONS = frozenset({"chat", "completion", "text_completion", "generate_content"})
#: Attributes naming a model: a span with one is a generation.
MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name")


def observation_type(span: ReceivedSpan) -> str:
    """The observation type Langfuse shows for a span: ``langfuse.observation.type``, else
    OpenInference's span kind, else a generation for an LLM operation or a model key, else span."""
    attributes = span.attributes
    declared = attributes.get(OBSERVATION_TYPE)
    if isinstance(declared, str) and declared.lower() in OBSERVATION_TYPES:
        return declared.lower()
    kind = attributes.get(OPENINFERENCE_SPAN_KIND)
    if isinstance(kind, str):
        kind = "generation" if kind.upper() == "LLM" else kind.lower()
        if kind in OBSERVATION_TYPES:
            return kind
    if attributes.get(GEN_AI_OPERATION_NAME) in GENERATION_OPERATIONS:
        return "generation"
    if any(attributes.get(key) for key in MODEL_KEYS):
        return "generation"
    return "span"
