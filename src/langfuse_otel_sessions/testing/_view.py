"""Printing what Langfuse would show: sessions, their traces in order, each trace's span tree."""

from __future__ import annotations

from collections.abc import Iterable

from ._model import SessionView, TraceView, span_session_id
from ._otlp import ReceivedSpan


def _tree(spans: list[ReceivedSpan]) -> list[str]:
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[ReceivedSpan]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            mark = "" if span_session_id(span) else "  (no session id on this span)"
            lines.append(f"{'   ' * depth}└─ {span.name}{mark}")
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return lines


def render_trace(trace: TraceView) -> list[str]:
    """A trace's heading and its span tree."""
    heading = f'trace "{trace.name or "(no root span yet)"}" {trace.id[:8]}'
    if trace.input is not None:
        heading += f"  input={trace.input!r}"
    if trace.output is not None:
        heading += f"  output={trace.output!r}"
    if trace.ambiguous_session_ids:
        choices = " or ".join(trace.ambiguous_session_ids)
        heading += f"  (session ambiguous: Langfuse may show either {choices})"
    return [heading, *("   " + line for line in _tree(trace.spans))]


def render_session(session: SessionView) -> list[str]:
    """A session's heading, its traces in time order, and its scores."""
    users = sorted({t.user_id for t in session.traces if t.user_id})
    spans = len(session.spans)
    lines = [
        f"session {session.id}"
        + (f"  user={', '.join(users)}" if users else "")
        + f"  traces={len(session.traces)}"
        + f"  observations in session={session.observations_in_session}/{spans}"
    ]
    for trace in session.traces:
        lines += ["   " + line for line in render_trace(trace)]
    for score in session.scores:
        lines.append(
            f"   score {score.get('name')}={score.get('value')!r} ({score.get('dataType')})"
        )
    return lines


def render_sessions(sessions: Iterable[SessionView]) -> str:
    """Every session, as text."""
    return "\n".join(line for session in sessions for line in render_session(session))
