"""Printing what Langfuse would show: sessions, their traces in order, each trace's span tree
(observation types and durations), and the traces that are in no session."""

from __future__ import annotations

from collections.abc import Iterable

from ._model import SessionView, TraceView, observation_type, span_session_id
from ._otlp import ReceivedSpan


def duration(nanoseconds: int) -> str:
    """A duration for people: ``850 µs``, ``12.3 ms``, ``1.52 s``."""
    if nanoseconds < 1_000_000:
        return f"{nanoseconds / 1_000:.0f} µs"
    if nanoseconds < 1_000_000_000:
        return f"{nanoseconds / 1_000_000:.1f} ms"
    return f"{nanoseconds / 1_000_000_000:.2f} s"


def _tree(spans: list[ReceivedSpan]) -> list[str]:
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[ReceivedSpan]] = {}
    for span in spans:
        children.setdefault(span.parent_span_id if span.parent_span_id in ids else None, []).append(
            span
        )
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            took = duration(max(0, span.end_time_unix_nano - span.start_time_unix_nano))
            mark = "" if span_session_id(span) else "  (no session id on this span)"
            lines.append(f"{'   ' * depth}└─ {span.name}  [{observation_type(span)}, {took}]{mark}")
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return lines


def render_trace(trace: TraceView) -> list[str]:
    """A trace's heading (name, id, duration, input/output, trace attributes) and its span tree."""
    start = min((span.start_time_unix_nano for span in trace.spans), default=0)
    end = max((span.end_time_unix_nano for span in trace.spans), default=0)
    heading = f'trace "{trace.name or "(no root span yet)"}" {trace.id[:8]}'
    heading += f"  {duration(max(0, end - start))}"
    shown = {
        "input": None if trace.input is None else repr(trace.input),
        "output": None if trace.output is None else repr(trace.output),
        "environment": None if trace.environment == "default" else trace.environment,
        "release": trace.release,
        "version": trace.version,
        "tags": f"[{', '.join(trace.tags)}]" if trace.tags else None,
        "metadata": repr(trace.metadata) if trace.metadata else None,
    }
    heading += "".join(f"  {key}={value}" for key, value in shown.items() if value is not None)
    return [heading, *("   " + line for line in _tree(trace.spans))]


def render_session(session: SessionView) -> list[str]:
    """A session's heading, its traces in time order, and its scores."""
    users = sorted({t.user_id for t in session.traces if t.user_id})
    lines = [
        f"session {session.id}"
        + (f"  user={', '.join(users)}" if users else "")
        + f"  traces={len(session.traces)}"
        + f"  observations in session={session.observations_in_session}/{len(session.spans)}"
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
