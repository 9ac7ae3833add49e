"""Session coverage: how many spans and tokens reach Langfuse with a session id, and without.

Langfuse v4 sums a session's cost and usage only over observations that carry the session id
themselves, so a span without one is cost missing from its session. The exporter counts what
it sends (after the mapping completed what it could), by instrumentation scope:

* :attr:`LangfuseSpanExporter.coverage` returns a :class:`Coverage` (for a health check or a test);
* a WARNING, at most once per :data:`WINDOW_SECONDS` and once at shutdown, when the share without
  a session reaches :data:`THRESHOLD` (of tokens once any were seen, else of spans), naming
  the scopes most of it came from and, where it can, the likely cause. Nothing is said before
  the first span with a session: an app that never uses sessions is not nagged;
* OpenTelemetry counters on the global ``MeterProvider`` (no-ops without one), named after
  the SDK's own ``otel.sdk.exporter.span.exported``: :data:`SPANS_METRIC`,
  :data:`TOKENS_METRIC` (attributes ``otel.scope.name`` and :data:`HAS_SESSION`) and
  :data:`DROPPED_METRIC` (``otel.scope.name``).

Memory: one counter set per instrumentation scope, at most :data:`MAX_SCOPES`; nothing per
session or trace.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from opentelemetry import metrics
from opentelemetry.sdk.trace import ReadableSpan

from .._logging import logger
from .langfuse_rules import LANGFUSE_SESSION_KEYS, USAGE_KEYS, langfuse_text, usage_tokens

WINDOW_SECONDS = 600.0
THRESHOLD = 0.1
MAX_SCOPES = 100
OTHER_SCOPES = "(other scopes)"
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
        return Coverage(
            self.spans + other.spans,
            self.spans_without_session + other.spans_without_session,
            self.tokens + other.tokens,
            self.tokens_without_session + other.tokens_without_session,
            scopes,
            self.dropped_spans + other.dropped_spans,
        )


def _has_session(attributes: Mapping[str, object], names: frozenset[str]) -> bool:
    for key in LANGFUSE_SESSION_KEYS:  # noqa: SIM110 - a plain loop: any() costs more per span
        if key in names and langfuse_text(attributes[key]):
            return True
    return False


def coverage_of(spans: Iterable[tuple[str, Mapping[str, object]]]) -> Coverage:
    """The coverage of ``(scope name, attributes)`` pairs, session ids read as Langfuse does."""
    scopes: dict[str, list[int]] = {}
    for scope, attributes in spans:
        names = _READ_KEYS.intersection(attributes)
        tokens = usage_tokens(attributes, names) if names else 0
        missing = not names or not _has_session(attributes, names)
        counts = scopes.setdefault(scope, [0, 0, 0, 0])
        counts[0] += 1
        counts[1] += missing
        counts[2] += tokens
        counts[3] += tokens if missing else 0
    by_scope = {scope: Coverage(s, sw, t, tw) for scope, (s, sw, t, tw) in scopes.items()}
    return replace(sum(by_scope.values(), Coverage()), by_scope=by_scope)


def _lone_llm_call(span: ReadableSpan) -> bool:
    """A span with usage but no session: with no parent, it began a trace of its own."""
    attributes = span.attributes or {}
    names = _READ_KEYS.intersection(attributes)
    return bool(usage_tokens(attributes, names)) and not _has_session(attributes, names)


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
        self._total = Coverage()
        self._window = Coverage()
        self._window_start = clock()
        self._own_traces = 0  # LLM spans without a session that began a trace of their own
        meter = metrics.get_meter("langfuse_otel_sessions", meter_provider=meter_provider)
        self._spans = meter.create_counter(SPANS_METRIC, "{span}", "Spans exported to Langfuse")
        self._tokens = meter.create_counter(TOKENS_METRIC, "{token}", "Tokens of exported spans")
        self._dropped = meter.create_counter(
            DROPPED_METRIC, "{span}", "Spans the export filter left out"
        )

    @property
    def coverage(self) -> Coverage:
        with self._lock:
            return self._total

    def dropped(self, spans: Sequence[ReadableSpan]) -> None:
        """Count spans the export filter left out."""
        scopes: dict[str, int] = {}
        for span in spans:
            scopes[_scope(span)] = scopes.get(_scope(span), 0) + 1
        for scope, count in scopes.items():
            self._dropped.add(count, {SCOPE: scope})
        with self._lock:
            self._total = replace(self._total, dropped_spans=self._total.dropped_spans + len(spans))

    def count(self, spans: Sequence[ReadableSpan]) -> None:
        """Count a batch about to be sent; warn when a window ends above the threshold."""
        batch = coverage_of((_scope(span), span.attributes or {}) for span in spans)
        own_traces = sum(1 for span in spans if span.parent is None and _lone_llm_call(span))
        for scope, counts in batch.by_scope.items():
            with_session = counts.spans - counts.spans_without_session
            self._add(scope, True, with_session, counts.tokens - counts.tokens_without_session)
            self._add(scope, False, counts.spans_without_session, counts.tokens_without_session)
        with self._lock:
            self._total = _capped(self._total + batch)
            self._window = _capped(self._window + batch)
            self._own_traces += own_traces
            if self._clock() - self._window_start < WINDOW_SECONDS:
                return
            window, own, self._window, self._own_traces = (
                self._window,
                self._own_traces,
                Coverage(),
                0,
            )
            self._window_start = self._clock()
            sessions_seen = self._total.spans > self._total.spans_without_session
            tokens_seen = self._total.tokens > 0
        if sessions_seen:
            _warn(window, "in the last 10 minutes", own, tokens_seen)

    def _add(self, scope: str, has_session: bool, spans: int, tokens: int) -> None:
        attributes: dict[str, str | bool] = {SCOPE: scope, HAS_SESSION: has_session}
        if spans:
            self._spans.add(spans, attributes)
        if tokens:
            self._tokens.add(tokens, attributes)

    def close(self) -> None:
        """Say once, at shutdown, what share of everything sent had no session."""
        with self._lock:
            total, own = self._total, self._own_traces
        if total.spans > total.spans_without_session:
            _warn(total, "since the exporter started", own, total.tokens > 0)


def _capped(coverage: Coverage) -> Coverage:
    if len(coverage.by_scope) <= MAX_SCOPES:
        return coverage
    ranked = sorted(coverage.by_scope.items(), key=lambda item: -item[1].spans)
    scopes = dict(ranked[: MAX_SCOPES - 1])
    scopes[OTHER_SCOPES] = sum((counts for _, counts in ranked[MAX_SCOPES - 1 :]), Coverage())
    return replace(coverage, by_scope=scopes)


def _warn(coverage: Coverage, when: str, own_traces: int, by_tokens: bool) -> None:
    share = (
        coverage.token_share_without_session if by_tokens else coverage.span_share_without_session
    )
    if share < THRESHOLD or not (coverage.tokens if by_tokens else coverage.spans):
        return
    ranked = sorted(
        coverage.by_scope.items(),
        key=lambda item: (-item[1].tokens_without_session, -item[1].spans_without_session),
    )
    top = ", ".join(
        scope or "(no scope)" for scope, counts in ranked[:3] if counts.spans_without_session
    )
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
