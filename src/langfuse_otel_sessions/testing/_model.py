"""The spans of OTLP/protobuf requests, and what Langfuse shows for them: traces and sessions, by
the server's own rules (``docs/testing.md``; the rules live in ``export/langfuse_rules.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from ..attributes import LANGFUSE_RELEASE, LANGFUSE_VERSION
from ..export import langfuse_rules as rules
from ..export.coverage import Coverage, coverage_of
from ..export.langfuse_rules import Attributes, js_concat, js_truthy, langfuse_text
from ..ids import environment_name

T = TypeVar("T")


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as Langfuse's OTel endpoint received it; ids are lowercase hex."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    attributes: dict[str, Any]
    resource_attributes: dict[str, Any] = field(default_factory=dict)
    scope_name: str = ""
    start_time_unix_nano: int = 0
    end_time_unix_nano: int = 0
    events: tuple[tuple[str, dict[str, Any]], ...] = ()


def _value(value: AnyValue) -> Any:  # noqa: ANN401 - OTLP values are any JSON-like type
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:  # noqa: ANN401 - a repeated KeyValue field
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def spans_of(body: bytes) -> list[ReceivedSpan]:
    """The spans of an ``application/x-protobuf`` body; ``ValueError`` (a 400) for what Langfuse
    refuses: an undecodable body, a span without trace or span id (v4)."""
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as error:
        raise ValueError(f"invalid protobuf: {error}") from None
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if not span.trace_id or not span.span_id:
                    raise ValueError("every span needs a traceId and a spanId")
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        attributes=_attributes(span.attributes),
                        resource_attributes=resource,
                        scope_name=scope_spans.scope.name,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        events=tuple((e.name, _attributes(e.attributes)) for e in span.events),
                    )
                )
    return spans


# -- Langfuse's reads that only the receiver needs (the mapping's are in langfuse_rules) ------

#: What Langfuse shows for a trace or observation without a (valid) environment.
DEFAULT_ENVIRONMENT = "default"


def _first_text(attributes: Attributes, keys: Iterable[str]) -> str | None:
    return next(filter(None, map(langfuse_text, map(attributes.get, keys))), None)


def session_id_of(attributes: Attributes) -> str | None:
    """The session id Langfuse reads from a span's attributes (resource ones are not read)."""
    return _first_text(attributes, rules.LANGFUSE_SESSION_KEYS)


def observation_name(span_name: str, attributes: Attributes) -> str:
    """The name Langfuse gives an observation: ``gen_ai.tool.name``, ``genkit:name``,
    ``logfire.msg``, ``ai.toolCall.name``, ``ai.operationId`` (prefixed by
    ``ai.telemetry.functionId`` and ``:``), else the span name."""
    for key, any_value in (
        ("gen_ai.tool.name", False),
        ("genkit:name", True),
        ("logfire.msg", False),
        ("ai.toolCall.name", True),
    ):
        if any_value and key in attributes:
            return js_concat(attributes[key])
        if not any_value and js_truthy(attributes.get(key)):
            return langfuse_text(attributes[key]) or span_name
    if "ai.operationId" in attributes:
        function_id = attributes.get("ai.telemetry.functionId")
        prefix = js_concat(function_id) + ":" if js_truthy(function_id) else ""
        return prefix + js_concat(attributes["ai.operationId"])
    return span_name


def _environment(span: ReceivedSpan) -> str | None:
    """The environment a span writes (each key on the span, then on the resource), or ``None``
    when it carries none (Langfuse then shows ``default`` for that observation)."""
    for key in rules.ENVIRONMENT_KEYS:
        for source in (span.attributes, span.resource_attributes):
            if js_truthy(source.get(key)):
                return environment_name(source[key]) or DEFAULT_ENVIRONMENT
    return None


def _read(span: ReceivedSpan, key: str, resource_key: str) -> str | None:
    value = span.attributes.get(key)
    return langfuse_text(span.resource_attributes.get(resource_key) if value is None else value)


def span_session_id(span: ReceivedSpan) -> str | None:
    """The session id Langfuse reads from one span (resource attributes are not read)."""
    return session_id_of(span.attributes)


def span_environment(span: ReceivedSpan) -> str:
    """The environment Langfuse gives one observation (``default`` when it carries none)."""
    return _environment(span) or DEFAULT_ENVIRONMENT


def span_tags(span: ReceivedSpan) -> tuple[str, ...]:
    """The tags one span writes (empty when none)."""
    return tuple(rules.tags_of(span.attributes))


def is_root(span: ReceivedSpan) -> bool:
    """A v4 root: no parent span id, or ``langfuse.internal.is_app_root`` true (a remote parent
    alone does not make one)."""
    return span.parent_span_id is None or rules.is_true(span.attributes.get(rules.IS_APP_ROOT))


def coverage(spans: Iterable[ReceivedSpan]) -> Coverage:
    """Spans and tokens with and without their own session id, by scope."""
    return coverage_of((span.scope_name, span.attributes) for span in spans)


@dataclass
class TraceView:
    """A Langfuse trace: its spans (observations) in start order and what v4 shows for it."""

    id: str
    spans: list[ReceivedSpan]
    session_id: str | None = None
    user_id: str | None = None
    name: str | None = None
    input: str | None = None
    output: str | None = None
    timestamp: int = 0
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    environment: str = DEFAULT_ENVIRONMENT
    release: str | None = None
    version: str | None = None

    @property
    def roots(self) -> list[ReceivedSpan]:
        """The v4 root observations (no parent, or app roots), in start order."""
        return [span for span in self.spans if is_root(span)]

    @property
    def root(self) -> ReceivedSpan | None:
        """The (first) v4 root observation, if one arrived."""
        return next(iter(self.roots), None)

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

    @property
    def coverage(self) -> Coverage:
        """The session's spans and tokens with and without their own session id."""
        return coverage(self.spans)


def _last(spans: Sequence[ReceivedSpan], read: Callable[[ReceivedSpan], T | None]) -> T | None:
    """The last non-empty value written (v4)."""
    return next((value for value in map(read, reversed(spans)) if value), None)


def build_traces(arrivals: Sequence[ReceivedSpan]) -> dict[str, TraceView]:
    """Group spans (in arrival order; a re-sent span replaces the earlier copy) into traces.
    v4 values are the last non-empty ones written; I/O and metadata are the last root's."""
    latest: dict[tuple[str, str], ReceivedSpan] = {}
    for span in arrivals:
        latest.pop((span.trace_id, span.span_id), None)
        latest[(span.trace_id, span.span_id)] = span
    arrived: dict[str, list[ReceivedSpan]] = {}
    for span in latest.values():
        arrived.setdefault(span.trace_id, []).append(span)
    traces: dict[str, TraceView] = {}
    for tid, spans in arrived.items():
        trace = traces[tid] = TraceView(tid, sorted(spans, key=lambda s: s.start_time_unix_nano))
        trace.timestamp = trace.spans[0].start_time_unix_nano
        trace.session_id = _last(spans, span_session_id)
        trace.user_id = _last(spans, lambda s: _first_text(s.attributes, rules.LANGFUSE_USER_KEYS))
        trace.name = _last(spans, lambda s: rules.langfuse_text(s.attributes.get(rules.TRACE_NAME)))
        root = next((span for span in reversed(spans) if is_root(span)), None)
        if root is not None:
            trace.name = trace.name or observation_name(root.name, root.attributes)
            read = rules.read_io(root.attributes, root.scope_name, root.events)
            trace.input, trace.output = map(rules.langfuse_text, (read.input, read.output))
            trace.metadata = rules.trace_metadata_of(root.attributes)
        trace.environment = _last(spans, _environment) or DEFAULT_ENVIRONMENT
        trace.release = _last(spans, lambda s: _read(s, LANGFUSE_RELEASE, LANGFUSE_RELEASE))
        trace.version = _last(spans, lambda s: _read(s, LANGFUSE_VERSION, "service.version"))
        trace.tags = _last(spans, span_tags) or ()
    return traces


def build_sessions(
    traces: Iterable[TraceView], scores: Iterable[dict[str, Any]]
) -> dict[str, SessionView]:
    """Sessions from traces with a session id, in time order, with their session scores."""
    sessions: dict[str, SessionView] = {}
    for trace in sorted(traces, key=lambda trace: trace.timestamp):
        if (sid := trace.session_id) is not None:
            sessions.setdefault(sid, SessionView(sid)).traces.append(trace)
    for score in scores:
        if isinstance(sid := score.get("sessionId"), str):
            sessions.setdefault(sid, SessionView(sid)).scores.append(score)
    return sessions


#: The observation types Langfuse knows (``langfuse.observation.type``).
_OBSERVATION_TYPES = frozenset(
    {"span", "generation", "event", "embedding", "agent", "tool", "chain", "retriever"}
    | {"guardrail", "evaluator"}
)
_GENERATION_OPERATIONS = frozenset({"chat", "completion", "text_completion", "generate_content"})
_MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name")


def observation_type(attributes: Attributes) -> str:
    """``langfuse.observation.type``, else OpenInference's span kind, else a generation for an
    LLM operation or a model key, else span."""
    declared = str(attributes.get("langfuse.observation.type")).lower()
    kind = str(attributes.get("openinference.span.kind")).lower()
    for read in (declared, "generation" if kind == "llm" else kind):
        if read in _OBSERVATION_TYPES:
            return read
    operation = attributes.get("gen_ai.operation.name")
    generation = operation in _GENERATION_OPERATIONS or any(map(attributes.get, _MODEL_KEYS))
    return "generation" if generation else "span"
