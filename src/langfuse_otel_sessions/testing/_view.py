"""Printing what Langfuse would show: sessions, their traces in order, each trace's span tree
with each observation's type and duration, and the traces that are in no session."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ._model import SessionView, TraceView, observation_type, span_session_id
from ._otlp import ReceivedSpan

NO_SESSION_MARK = "  (no session id on this span)"


def duration(nanoseconds: int) -> str:
    """A duration for people: ``850 µs``, ``12.3 ms``, ``1.52 s``."""
    if nanoseconds < 1_000_000:
        return f"{nanoseconds / 1_000:.0f} µs"
    if nanoseconds < 1_000_000_000:
        return f"{nanoseconds / 1_000_000:.1f} ms"
    return f"{nanoseconds / 1_000_000_000:.2f} s"


def _span_duration(span: ReceivedSpan) -> int:
    return max(0, span.end_time_unix_nano - span.start_time_unix_nano)


def trace_duration(trace: TraceView) -> int:
    """From the first span's start to the last span's end, in nanoseconds."""
    if not trace.spans:
        return 0
    start = min(span.start_time_unix_nano for span in trace.spans)
    return max(0, max(span.end_time_unix_nano for span in trace.spans) - start)


def _tree(spans: list[ReceivedSpan]) -> list[str]:
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[ReceivedSpan]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            mark = "" if span_session_id(span) else NO_SESSION_MARK
            details = f"{observation_type(span)}, {duration(_span_duration(span))}"
            lines.append(f"{'   ' * depth}└─ {span.name}  [{details}]{mark}")
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return lines


def render_trace(trace: TraceView) -> list[str]:
    """A trace's heading (name, id, duration, input/output) and its span tree."""
    heading = f'trace "{trace.name or "(no root span yet)"}" {trace.id[:8]}'
    heading += f"  {duration(trace_duration(trace))}"
    if trace.input is not None:
        heading += f"  input={trace.input!r}"
    if trace.output is not None:
        heading += f"  output={trace.output!r}"
    heading += "".join(_attribute_notes(trace))
    if trace.ambiguous_session_ids:
        choices = " or ".join(trace.ambiguous_session_ids)
        heading += f"  (session ambiguous: Langfuse may show either {choices})"
    return [heading, *("   " + line for line in _tree(trace.spans))]


def _attribute_notes(trace: TraceView) -> list[str]:
    """The trace attributes Langfuse shows, and where its legacy (v3) path shows otherwise."""
    notes: list[str] = []
    if trace.environment != "default" or trace.environment_v3 != "default":
        notes.append(f"  environment={trace.environment}")
    if trace.release is not None:
        notes.append(f"  release={trace.release}")
    if trace.version is not None:
        notes.append(f"  version={trace.version}")
    if trace.tags:
        notes.append(f"  tags=[{', '.join(trace.tags)}]")
    if trace.metadata:
        notes.append(f"  metadata={trace.metadata!r}")
    differs = []
    if trace.environment_v3 != trace.environment:
        differs.append(f"environment={trace.environment_v3}")
    if trace.tags_v3 != trace.tags:
        differs.append(f"tags=[{', '.join(trace.tags_v3)}]")
    if differs:
        notes.append(f"  (v3 shows {', '.join(differs)})")
    return notes


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


def render_sessionless(traces: Iterable[TraceView]) -> list[str]:
    """The traces that are in no session, under a heading that says why that matters."""
    orphans = sorted(traces, key=lambda trace: trace.timestamp)
    if not orphans:
        return []
    lines = [
        f"traces without a session: {len(orphans)} (Langfuse shows them outside every session;"
        " see the README's troubleshooting)"
    ]
    for trace in orphans:
        lines += ["   " + line for line in render_trace(trace)]
    return lines


def render_sessions(
    sessions: Iterable[SessionView], traces: Mapping[str, TraceView] | None = None
) -> str:
    """Every session, as text; with ``traces``, also those of them that are in no session."""
    lines = [line for session in sessions for line in render_session(session)]
    if traces is not None:
        lines += render_sessionless(t for t in traces.values() if t.session_id is None)
    return "\n".join(lines)
