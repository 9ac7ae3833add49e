"""What changed since the last batch, in one line: ``python -m langfuse_otel_sessions serve``
prints it after each batch (the page at its URL shows the sessions themselves)."""

from __future__ import annotations

from collections.abc import Mapping

from ._model import SessionView, TraceView

_NAMED = 3  # changed sessions named in the line; the rest are counted


def _printable(text: str) -> str:
    """Client data for a terminal: control characters (escape sequences) become ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text[:80])


class ChangeView:
    """Remembers what it saw last; :meth:`line` says what is new since then."""

    def __init__(self) -> None:
        self._trace_sizes: dict[str, int] = {}
        self._score_counts: dict[str, int] = {}

    def line(
        self, traces: Mapping[str, TraceView], sessions: Mapping[str, SessionView], url: str
    ) -> str:
        """``+3 spans · sessions: a (new), b · 1 new trace without a session · <url>``."""
        spans = sum(len(trace.spans) for trace in traces.values())
        new_spans = spans - sum(self._trace_sizes.values())
        changed = []
        for session in sessions.values():
            grew = any(self._trace_sizes.get(t.id) != len(t.spans) for t in session.traces) or len(
                session.scores
            ) != self._score_counts.get(session.id, 0)
            if grew:
                new = all(t.id not in self._trace_sizes for t in session.traces)
                changed.append(_printable(session.id) + (" (new)" if new else ""))
        orphans = sum(
            1 for t in traces.values() if t.session_id is None and t.id not in self._trace_sizes
        )
        self._trace_sizes = {trace_id: len(trace.spans) for trace_id, trace in traces.items()}
        self._score_counts = {session_id: len(s.scores) for session_id, s in sessions.items()}
        parts = [f"{new_spans:+d} spans"]
        if changed:
            more = f" and {len(changed) - _NAMED} more" if len(changed) > _NAMED else ""
            parts.append("sessions: " + ", ".join(changed[:_NAMED]) + more)
        if orphans:
            parts.append(f"{orphans} new trace{'s' * (orphans > 1)} without a session")
        parts.append(f"{len(sessions)} sessions in all · {url}/")
        return " · ".join(parts)
