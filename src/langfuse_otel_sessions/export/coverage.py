"""Session coverage: spans and tokens sent with and without a session id (``docs/exporter.md``).

Langfuse v4 sums a session's cost and usage only over observations that carry the session id
themselves. The exporter counts what it sends by instrumentation scope (at most
:data:`MAX_SCOPES`), warns when a window's share without a session reaches :data:`THRESHOLD`,
and adds OpenTelemetry counters on the global ``MeterProvider``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from opentelemetry import metrics
from opentelemetry.sdk.trace import ReadableSpan

from .._logging import logger
from .langfuse_rules import LANGFUSE_SESSION_KEYS, USAGE_KEYS, langfuse_text, usage_tokens

WINDOW_SECONDS = 600.0
THRESHOLD = 0.1
MAX_SCOPES = 100
SPANS_METRIC = "langfuse_otel_sessions.exporter.span.exported"
TOKENS_METRIC = "langfuse_otel_sessions.exporter.token.exported"
DROPPED_METRIC = "langfuse_otel_sessions.exporter.span.dropped"
HAS_SESSION = "langfuse_otel_sessions.has_session"
SCOPE = "otel.scope.name"
_READ_KEYS = frozenset(LANGFUSE_SESSION_KEYS) | USAGE_KEYS


@dataclass(frozen=True)
class Coverage:
    """Spans and tokens (input + output usage, as Langfuse reads it) with and without a session
    id, overall and by instrumentation scope; ``dropped_spans``: spans the export filter left
    out (the exporter's figures only)."""

    spans: int = 0
    spans_without_session: int = 0
    tokens: int = 0
    tokens_without_session: int = 0
    by_scope: Mapping[str, Coverage] = field(default_factory=dict)
    dropped_spans: int = 0

    @property
    def span_share_without_session(self) -> float:
        """The share of spans without a session (0 when there were none)."""
        return self.spans_without_session / self.spans if self.spans else 0.0

    @property
    def token_share_without_session(self) -> float:
        """The share of tokens without a session (0 when there were none)."""
        return self.tokens_without_session / self.tokens if self.tokens else 0.0

    def __add__(self, other: Coverage) -> Coverage:
        scopes = dict(self.by_scope)
        for scope, counts in other.by_scope.items():
            scopes[scope] = scopes[scope] + counts if scope in scopes else counts
        if len(scopes) > MAX_SCOPES:  # bounded: the smallest scopes are summed into one
            ranked = sorted(scopes.items(), key=lambda item: -item[1].spans)
            rest = sum((counts for _, counts in ranked[MAX_SCOPES - 1 :]), Coverage())
            scopes = {**dict(ranked[: MAX_SCOPES - 1]), "(other scopes)": rest}
        return Coverage(
            self.spans + other.spans,
            self.spans_without_session + other.spans_without_session,
            self.tokens + other.tokens,
            self.tokens_without_session + other.tokens_without_session,
            scopes,
            self.dropped_spans + other.dropped_spans,
        )


def _missing_session(attributes: Mapping[str, object], names: frozenset[str]) -> bool:
    for key in LANGFUSE_SESSION_KEYS:
        if key in names and langfuse_text(attributes[key]):
            return False
    return True


def coverage_of(spans: Iterable[tuple[str, Mapping[str, object]]]) -> Coverage:
    """The coverage of ``(scope name, attributes)`` pairs, session ids read as Langfuse does."""
    scopes: dict[str, list[int]] = {}
    for scope, attributes in spans:
        names = _READ_KEYS.intersection(attributes)
        tokens = usage_tokens(attributes, names) if names else 0
        missing = not names or _missing_session(attributes, names)
        counts = scopes.setdefault(scope, [0, 0, 0, 0])
        counts[0] += 1
        counts[1] += missing
        counts[2] += tokens
        counts[3] += tokens if missing else 0
    by_scope = {scope: Coverage(s, sw, t, tw) for scope, (s, sw, t, tw) in scopes.items()}
    return replace(sum(by_scope.values(), Coverage()), by_scope=by_scope)


def _scope(span: ReadableSpan) -> str:
    return span.instrumentation_scope.name if span.instrumentation_scope else ""


class CoverageMonitor:
    """The exporter's counts, warnings and metrics (thread-safe)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.coverage = Coverage()  # replaced whole under the lock: reads need none
        self._window = Coverage()
        self._window_start = clock()
        self._own_traces = [0, 0]  # LLM roots without a session: in the window, in all
        meter = metrics.get_meter("langfuse_otel_sessions", meter_provider=meter_provider)
        self._spans = meter.create_counter(SPANS_METRIC, "{span}", "Spans exported to Langfuse")
        self._tokens = meter.create_counter(TOKENS_METRIC, "{token}", "Tokens of exported spans")
        self._dropped = meter.create_counter(
            DROPPED_METRIC, "{span}", "Spans the export filter left out"
        )

    def dropped(self, spans: Sequence[ReadableSpan]) -> None:
        """Count spans the export filter left out."""
        for scope, count in Counter(map(_scope, spans)).items():
            self._dropped.add(count, {SCOPE: scope})
        with self._lock:
            self.coverage = self.coverage + Coverage(dropped_spans=len(spans))

    def count(self, spans: Sequence[ReadableSpan]) -> None:
        """Count a batch about to be sent; warn when a window ends above the threshold."""
        batch = coverage_of((_scope(span), span.attributes or {}) for span in spans)
        # an LLM call with no parent and no session began a trace of its own
        own = sum(1 for s in spans if s.parent is None and _lone_llm_call(s.attributes or {}))
        for scope, counts in batch.by_scope.items():
            without = (counts.spans_without_session, counts.tokens_without_session)
            for has_session, spans_, tokens in (
                (True, counts.spans - without[0], counts.tokens - without[1]),
                (False, *without),
            ):
                attributes: dict[str, str | bool] = {SCOPE: scope, HAS_SESSION: has_session}
                if spans_:
                    self._spans.add(spans_, attributes)
                if tokens:
                    self._tokens.add(tokens, attributes)
        with self._lock:
            self.coverage = self.coverage + batch
            self._window = self._window + batch
            self._own_traces = [self._own_traces[0] + own, self._own_traces[1] + own]
            if self._clock() - self._window_start < WINDOW_SECONDS:
                return
            window, own = self._window, self._own_traces[0]
            self._window, self._own_traces[0] = Coverage(), 0
            self._window_start = self._clock()
            total = self.coverage
        _warn(total, window, "in the last 10 minutes", own)

    def close(self) -> None:
        """Say once, at shutdown, what share of everything sent had no session."""
        with self._lock:
            total, own = self.coverage, self._own_traces[1]
        _warn(total, total, "since the exporter started", own)


def _lone_llm_call(attributes: Mapping[str, object]) -> bool:
    names = _READ_KEYS.intersection(attributes)
    return bool(usage_tokens(attributes, names)) and _missing_session(attributes, names)


def _warn(total: Coverage, coverage: Coverage, when: str, own_traces: int) -> None:
    """Warn when ``coverage`` lacks sessions, once a span with a session was sent at all."""
    if total.spans == total.spans_without_session:
        return  # an app that never uses sessions is not nagged
    by_tokens = total.tokens > 0
    share = (
        coverage.token_share_without_session if by_tokens else coverage.span_share_without_session
    )
    if share < THRESHOLD:
        return
    ranked = sorted(
        coverage.by_scope.items(),
        key=lambda item: (-item[1].tokens_without_session, -item[1].spans_without_session),
    )
    top = ", ".join(s or "(no scope)" for s, c in ranked[:3] if c.spans_without_session)
    cause = ""
    if own_traces:
        cause = (
            f"; {own_traces} LLM span(s) without a session began a trace of their own: a call "
            "from a thread that did not copy the context? opentelemetry-instrumentation-"
            "threading (or contextvars.copy_context()) carries the session into threads"
        )
    logger.warning(
        "%.0f%% of spans and %.0f%% of tokens exported %s had no session; most from %s%s",
        100 * coverage.span_share_without_session,
        100 * coverage.token_share_without_session,
        when,
        top,
        cause,
    )
