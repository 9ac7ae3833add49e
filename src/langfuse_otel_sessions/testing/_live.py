"""What changed since the last look: the sessions and session-less traces that gained spans or
scores. ``python -m langfuse_otel_sessions serve`` prints this after each batch."""

from __future__ import annotations

from collections.abc import Mapping

from ._model import SessionView, TraceView
from ._view import render_session, render_sessionless


class ChangeView:
    """Remembers what it showed last; :meth:`changes` renders only what is new since then."""

    def __init__(self) -> None:
        self._trace_sizes: dict[str, int] = {}
        self._score_counts: dict[str, int] = {}

    def changes(
        self, traces: Mapping[str, TraceView], sessions: Mapping[str, SessionView]
    ) -> list[str]:
        """The changed sessions in full (a session is short), then the changed traces that
        are in no session."""
        changed = {
            trace_id
            for trace_id, trace in traces.items()
            if self._trace_sizes.get(trace_id) != len(trace.spans)
        }
        lines: list[str] = []
        for session in sessions.values():
            if any(trace.id in changed for trace in session.traces) or len(
                session.scores
            ) != self._score_counts.get(session.id, 0):
                lines += render_session(session)
        lines += render_sessionless(
            trace for trace in traces.values() if trace.session_id is None and trace.id in changed
        )
        self._trace_sizes = {trace_id: len(trace.spans) for trace_id, trace in traces.items()}
        self._score_counts = {session_id: len(s.scores) for session_id, s in sessions.items()}
        return lines


def summary(
    traces: Mapping[str, TraceView], sessions: Mapping[str, SessionView], new_spans: int
) -> str:
    """One line per batch: what arrived, and where things stand."""
    sessionless = sum(1 for trace in traces.values() if trace.session_id is None)
    spans = sum(len(trace.spans) for trace in traces.values())
    return (
        f"--- {new_spans:+d} spans: {spans} spans in {len(traces)} traces, "
        f"{len(sessions)} sessions, {sessionless} traces without a session ---"
    )
