"""Session coverage: spans and tokens sent with and without a session id (``docs/exporter.md``)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry import metrics
from opentelemetry.sdk.trace import ReadableSpan

from .._logging import logger
from .langfuse_rules import LANGFUSE_SESSION_KEYS, USAGE_KEYS, langfuse_text, usage_tokens

WINDOW_SECONDS = 600.0
THRESHOLD = 0.1
MAX_SCOPES = 100  # scopes beyond these are counted together, so memory stays bounded
OTHER_SCOPES = "(other scopes)"
SPANS_METRIC = "langfuse_otel_sessions.exporter.span.exported"
TOKENS_METRIC = "langfuse_otel_sessions.exporter.token.exported"
DROPPED_METRIC = "langfuse_otel_sessions.exporter.span.dropped"
HAS_SESSION = "langfuse_otel_sessions.has_session"
SCOPE = "otel.scope.name"
_READ_KEYS = frozenset(LANGFUSE_SESSION_KEYS) | USAGE_KEYS

#: scope -> [spans, spans without a session, tokens, tokens without a session]
_Table = dict[str, list[int]]


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


def _add(table: _Table, scope: str, counts: Sequence[int]) -> None:
    if scope not in table and len(table) >= MAX_SCOPES - 1:
        scope = OTHER_SCOPES
    total = table.setdefault(scope, [0, 0, 0, 0])
    for index, count in enumerate(counts):
        total[index] += count


def _tally(spans: Iterable[tuple[str, Mapping[str, object]]]) -> _Table:
    table: _Table = {}
    for scope, attributes in spans:
        names = _READ_KEYS.intersection(attributes)
        tokens = usage_tokens(attributes, names) if names else 0
        missing = not any(
            key in names and langfuse_text(attributes[key]) for key in LANGFUSE_SESSION_KEYS
        )
        _add(table, scope, (1, missing, tokens, tokens if missing else 0))
    return table


def _summary(table: _Table, dropped: int = 0) -> Coverage:
    by_scope = {scope: Coverage(s, sw, t, tw) for scope, (s, sw, t, tw) in table.items()}
    spans, without, tokens, tokens_without = (sum(c[i] for c in table.values()) for i in range(4))
    return Coverage(spans, without, tokens, tokens_without, by_scope, dropped)


def coverage_of(spans: Iterable[tuple[str, Mapping[str, object]]]) -> Coverage:
    """The coverage of ``(scope name, attributes)`` pairs, session ids read as Langfuse does."""
    return _summary(_tally(spans))


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
        self._total: _Table = {}
        self._window: _Table = {}
        self._window_start = clock()
        self._dropped_spans = 0
        meter = metrics.get_meter("langfuse_otel_sessions", meter_provider=meter_provider)
        self._spans = meter.create_counter(SPANS_METRIC, "{span}", "Spans exported to Langfuse")
        self._tokens = meter.create_counter(TOKENS_METRIC, "{token}", "Tokens of exported spans")
        self._dropped = meter.create_counter(
            DROPPED_METRIC, "{span}", "Spans the export filter left out"
        )

    @property
    def coverage(self) -> Coverage:
        """Everything counted since construction."""
        with self._lock:
            return _summary(self._total, self._dropped_spans)

    def dropped(self, spans: Sequence[ReadableSpan]) -> None:
        """Count spans the export filter left out."""
        for scope, count in Counter(map(_scope, spans)).items():
            self._dropped.add(count, {SCOPE: scope})
        with self._lock:
            self._dropped_spans += len(spans)

    def count(self, spans: Sequence[ReadableSpan], sent: Sequence[Mapping[str, object]]) -> None:
        """Count a batch about to be sent (``sent``: each span's attributes as sent); warn when
        a window ends above the threshold."""
        batch = _tally(zip(map(_scope, spans), sent, strict=True))
        for scope, (count, without, tokens, tokens_without) in batch.items():
            for has_session, spans_, tokens_ in (
                (True, count - without, tokens - tokens_without),
                (False, without, tokens_without),
            ):
                attributes: dict[str, str | bool] = {SCOPE: scope, HAS_SESSION: has_session}
                if spans_:
                    self._spans.add(spans_, attributes)
                if tokens_:
                    self._tokens.add(tokens_, attributes)
        with self._lock:
            for scope, counts in batch.items():
                _add(self._total, scope, counts)
                _add(self._window, scope, counts)
            if self._clock() - self._window_start < WINDOW_SECONDS:
                return
            window, self._window = self._window, {}
            self._window_start = self._clock()
            total = _summary(self._total)
        _warn(total, _summary(window), "in the last 10 minutes")

    def close(self) -> None:
        """Say once, at shutdown, what share of everything sent had no session."""
        total = self.coverage
        _warn(total, total, "since the exporter started")


def _warn(total: Coverage, coverage: Coverage, when: str) -> None:
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
    logger.warning(
        "%.0f%% of spans and %.0f%% of tokens exported %s had no session; most from %s",
        100 * coverage.span_share_without_session,
        100 * coverage.token_share_without_session,
        when,
        top,
    )
