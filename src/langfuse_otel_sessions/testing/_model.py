"""What Langfuse shows for the spans it received: traces and sessions, by its own rules
(``docs/exporter.md``), with the rules themselves in :mod:`..langfuse_rules`.

* ids: key priority per span, non-strings JSON-stringified, the last non-empty value written
  wins; two different values written in one request are reported as ambiguous (v4 may show
  either);
* v4: roots are spans with no parent or ``langfuse.internal.is_app_root``; the trace name is the
  last ``langfuse.trace.name`` on any span, else the root observation's name; trace I/O is the
  root observation's I/O (``langfuse.trace.input/output`` are not read);
* v3 (legacy), span by span in start order: roots are spans with no parent or
  ``langfuse.internal.as_root``; a root writes the trace's name and I/O (``langfuse.trace.*``
  first, then the observation keys and framework keys), any other span writes the
  ``langfuse.trace.name/input/output`` it carries (never the observation keys);
* trace attributes (:mod:`..langfuse_rules`): v4 shows the last non-empty environment,
  release and version written, the last non-empty tag list, and the root observation's
  metadata; v3 keeps the environment of the first span written, unions the tags, and merges
  the metadata, release and version written by roots and by spans with trace updates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..export.coverage import Coverage, coverage_of
from ..export.langfuse_rules import (
    AS_ROOT,
    DEFAULT_ENVIRONMENT,
    IS_APP_ROOT,
    TRACE_INPUT,
    TRACE_NAME,
    TRACE_OUTPUT,
    environment_of,
    has_trace_updates,
    is_true,
    langfuse_text,
    observation_name,
    read_io,
    release_of,
    session_id_of,
    tags_of,
    trace_metadata_of,
    user_id_of,
    version_of,
)
from ._otlp import ReceivedSpan


def span_session_id(span: ReceivedSpan) -> str | None:
    """The session id Langfuse reads from one span (resource attributes are not read)."""
    return session_id_of(span.attributes)


def span_coverage(spans: Iterable[ReceivedSpan]) -> Coverage:
    """Spans and tokens with and without their own session id, by scope: what the exporter's
    :attr:`~langfuse_otel_sessions.LangfuseSpanExporter.coverage` counts."""
    return coverage_of((span.scope_name, span.attributes) for span in spans)


def span_user_id(span: ReceivedSpan) -> str | None:
    """The user id Langfuse reads from one span."""
    return user_id_of(span.attributes)


def is_root(span: ReceivedSpan) -> bool:
    """A v4 root: no parent span id, or ``langfuse.internal.is_app_root`` true. A remote parent
    alone does not make one."""
    return span.parent_span_id is None or is_true(span.attributes.get(IS_APP_ROOT))


def is_legacy_root(span: ReceivedSpan) -> bool:
    """A v3 (legacy path) root: no parent span id, or ``langfuse.internal.as_root`` true."""
    return span.parent_span_id is None or is_true(span.attributes.get(AS_ROOT))


def span_environment(span: ReceivedSpan) -> str:
    """The environment Langfuse gives one observation (``default`` when it carries none)."""
    return environment_of(span.attributes, span.resource_attributes) or DEFAULT_ENVIRONMENT


def span_tags(span: ReceivedSpan) -> tuple[str, ...]:
    """The tags one span writes (empty when none)."""
    return tuple(tags_of(span.attributes))


def span_release(span: ReceivedSpan) -> str | None:
    """The release one span writes (span, then resource ``langfuse.release``)."""
    return release_of(span.attributes, span.resource_attributes)


def span_version(span: ReceivedSpan) -> str | None:
    """The version one span writes (span ``langfuse.version``, then resource
    ``service.version``)."""
    return version_of(span.attributes, span.resource_attributes)


def span_io(span: ReceivedSpan, domain: str = "observation") -> tuple[str | None, str | None]:
    """The (input, output) Langfuse reads from one span, as text."""
    read = read_io(
        span.attributes,
        span.scope_name,
        span.events,
        "trace" if domain == "trace" else "observation",
    )
    return langfuse_text(read.input), langfuse_text(read.output)


@dataclass
class TraceView:
    """A Langfuse trace: its spans (observations) in start order and the trace-level fields.

    ``name``/``input``/``output`` are what Langfuse v4 shows; ``name_v3``/``input_v3``/
    ``output_v3`` what the legacy (v3) path shows. ``ambiguous_session_ids`` (and
    ``ambiguous_user_ids``) list the different values written in the last request that wrote
    one: Langfuse v4 may show any of them, so a test should not rely on ``session_id`` then.

    Trace attributes: ``tags``, ``metadata`` (the user's keys only), ``environment``,
    ``release``, ``version`` as v4 shows them, and the same with ``_v3`` as the legacy path
    shows them (``environment`` is ``default`` when no span carries one).
    """

    id: str
    spans: list[ReceivedSpan]
    session_id: str | None = None
    user_id: str | None = None
    name: str | None = None
    input: str | None = None
    output: str | None = None
    name_v3: str | None = None
    input_v3: str | None = None
    output_v3: str | None = None
    timestamp: int = 0
    ambiguous_session_ids: tuple[str, ...] = ()
    ambiguous_user_ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    environment: str = DEFAULT_ENVIRONMENT
    release: str | None = None
    version: str | None = None
    tags_v3: tuple[str, ...] = ()
    metadata_v3: dict[str, Any] = field(default_factory=dict)
    environment_v3: str = DEFAULT_ENVIRONMENT
    release_v3: str | None = None
    version_v3: str | None = None

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
        """The session's spans and tokens with and without their own session id (v4 counts a
        span's cost and usage in the session only with one)."""
        return span_coverage(self.spans)


def _last_written(
    spans: Sequence[ReceivedSpan],
    value_of: Any,  # noqa: ANN401 - a reader of one span
) -> tuple[str | None, tuple[str, ...]]:
    """The last non-empty value written, and the different values of the last request that
    wrote one when there are several (v4 may show any of them)."""
    last: str | None = None
    batch: int | None = None
    values: list[str] = []
    for span in spans:
        value = value_of(span)
        if value is None:
            continue
        if span.batch != batch:
            batch, values = span.batch, []
        if value not in values:
            values.append(value)
        last = value
    return last, tuple(sorted(values)) if len(values) > 1 else ()


def _legacy_trace(trace: TraceView) -> None:
    """Name, I/O and trace attributes as the v3 path writes them, span by span in start order
    (its worker sorts a trace's events by time): later non-empty values win, except the
    environment (the first span's) and tags (unioned)."""
    if trace.spans:
        trace.environment_v3 = span_environment(trace.spans[0])
    tags: dict[str, None] = {}
    for span in trace.spans:
        attributes = span.attributes
        if is_legacy_root(span) or has_trace_updates(attributes):
            tags.update(dict.fromkeys(span_tags(span)))
            trace.metadata_v3.update(trace_metadata_of(attributes))
            trace.release_v3 = span_release(span) or trace.release_v3
            trace.version_v3 = span_version(span) or trace.version_v3
        name = langfuse_text(attributes.get(TRACE_NAME))
        if is_legacy_root(span):
            name = name or observation_name(span.name, attributes)
            io = span_io(span, "trace")
        else:
            io = (
                langfuse_text(attributes.get(TRACE_INPUT)),
                langfuse_text(attributes.get(TRACE_OUTPUT)),
            )
        trace.name_v3 = name or trace.name_v3
        trace.input_v3 = io[0] if io[0] is not None else trace.input_v3
        trace.output_v3 = io[1] if io[1] is not None else trace.output_v3
    trace.tags_v3 = tuple(tags)


def build_traces(arrivals: Sequence[ReceivedSpan]) -> dict[str, TraceView]:
    """Group spans (in arrival order; a re-sent span replaces the earlier copy) into traces."""
    latest: dict[tuple[str, str], ReceivedSpan] = {}
    for span in arrivals:
        latest.pop((span.trace_id, span.span_id), None)
        latest[(span.trace_id, span.span_id)] = span
    arrived: dict[str, list[ReceivedSpan]] = {}
    for span in latest.values():
        arrived.setdefault(span.trace_id, []).append(span)
    traces: dict[str, TraceView] = {}
    for trace_id, spans in arrived.items():
        trace = traces[trace_id] = TraceView(trace_id, sorted(spans, key=_start))
        trace.timestamp = trace.spans[0].start_time_unix_nano
        trace.session_id, trace.ambiguous_session_ids = _last_written(spans, span_session_id)
        trace.user_id, trace.ambiguous_user_ids = _last_written(spans, span_user_id)
        roots = [span for span in spans if is_root(span)]
        root_name = next((observation_name(r.name, r.attributes) for r in reversed(roots)), None)
        trace_name = _last_written(spans, lambda s: langfuse_text(s.attributes.get(TRACE_NAME)))
        trace.name = trace_name[0] or root_name or None
        if roots:
            trace.input, trace.output = span_io(roots[-1])
            trace.metadata = trace_metadata_of(roots[-1].attributes)
        trace.environment = (
            _last_written(spans, lambda s: environment_of(s.attributes, s.resource_attributes))[0]
            or DEFAULT_ENVIRONMENT
        )
        trace.release = _last_written(spans, span_release)[0]
        trace.version = _last_written(spans, span_version)[0]
        trace.tags = next((t for t in map(span_tags, reversed(spans)) if t), ())
        _legacy_trace(trace)
    return traces


def _start(span: ReceivedSpan) -> int:
    return span.start_time_unix_nano


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
