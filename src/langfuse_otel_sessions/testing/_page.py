"""The local view in a browser: a page at ``/`` and the JSON it polls, built from the receiver's
traces, sessions and scores (:mod:`._model`). Every list and text is capped, so an answer stays
bounded however much arrived; the page shows the data as text only (``page/view.js``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from ..export.langfuse_rules import usage_tokens
from ._model import (
    SessionView,
    TraceView,
    build_sessions,
    observation_type,
    span_coverage,
    span_io,
    span_session_id,
)
from ._otlp import ReceivedSpan

#: Caps on what one answer holds: the newest sessions and session-less traces, the first spans
#: of a trace, and the first characters of a text.
MAX_SESSIONS = 500
MAX_TRACES = 200
MAX_SPANS = 1000
MAX_TEXT = 4000

_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/view.js": ("view.js", "text/javascript; charset=utf-8"),
    "/view.css": ("view.css", "text/css; charset=utf-8"),
}
#: The page loads only its own script and style, and nothing inline: injected markup cannot run.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
NO_SESSION_REASON = (
    "none of its spans carries a session id: started outside session() and the middleware, "
    "or on a provider without SessionSpanProcessor"
)


def static_file(path: str) -> tuple[bytes, str] | None:
    """The page's file at ``path`` and its content type, or None."""
    found = _FILES.get(path)
    if found is None:
        return None
    name, content_type = found
    return (resources.files(__package__).joinpath("page").joinpath(name).read_bytes(), content_type)


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"… ({len(text)} characters)"


def _score(score: Mapping[str, Any]) -> dict[str, Any]:
    shown = {key: _text(score.get(key)) for key in ("name", "value", "dataType", "comment")}
    if score.get("dataType") == "BOOLEAN":  # Langfuse shows 1/0 as True/False
        shown["value"] = "True" if score.get("value") else "False"
    return shown


def _end(trace: TraceView) -> int:
    return max((span.end_time_unix_nano for span in trace.spans), default=trace.timestamp)


def _span(span: ReceivedSpan) -> dict[str, Any]:
    observed = span_io(span)
    return {
        "id": span.span_id,
        "parent": span.parent_span_id,
        "name": _text(span.name),
        "type": observation_type(span),
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "in_session": span_session_id(span) is not None,
        "tokens": usage_tokens(span.attributes),
        "input": _text(observed[0]),
        "output": _text(observed[1]),
    }


def trace_detail(trace: TraceView, scores: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A trace as the session page shows it: name, I/O, its scores and its first spans."""
    return {
        "id": trace.id,
        "name": _text(trace.name),
        "user": _text(trace.user_id),
        "input": _text(trace.input),
        "output": _text(trace.output),
        "start": trace.timestamp,
        "end": _end(trace),
        "scores": [_score(s) for s in scores if s.get("traceId") == trace.id],
        "spans": [_span(span) for span in trace.spans[:MAX_SPANS]],
        "more_spans": max(0, len(trace.spans) - MAX_SPANS),
        "reason": None if trace.session_id else NO_SESSION_REASON,
    }


def overview(
    traces: Mapping[str, TraceView],
    sessions: Mapping[str, SessionView],
    version: int,
) -> dict[str, Any]:
    """The sessions list (newest first), the traces without a session, and span counts."""
    coverage = span_coverage(span for trace in traces.values() for span in trace.spans)
    newest = sorted(sessions.values(), key=lambda s: max(map(_end, s.traces), default=0))[::-1]
    orphans = sorted(
        (t for t in traces.values() if t.session_id is None), key=lambda t: -t.timestamp
    )
    return {
        "version": version,
        "spans": coverage.spans,
        "spans_without_session": coverage.spans_without_session,
        "sessions": [_session_row(session) for session in newest[:MAX_SESSIONS]],
        "more_sessions": max(0, len(newest) - MAX_SESSIONS),
        "sessionless": [
            {
                "id": t.id,
                "name": _text(t.name),
                "start": t.timestamp,
                "end": _end(t),
                "spans": len(t.spans),
                "reason": NO_SESSION_REASON,
            }
            for t in orphans[:MAX_TRACES]
        ],
        "more_sessionless": max(0, len(orphans) - MAX_TRACES),
    }


def _session_row(session: SessionView) -> dict[str, Any]:
    return {
        "id": _text(session.id),
        "users": [_text(u) for u in sorted({t.user_id for t in session.traces if t.user_id})],
        "traces": len(session.traces),
        "start": min((t.timestamp for t in session.traces), default=0),
        "end": max(map(_end, session.traces), default=0),
        "observations": len(session.spans),
        "observations_in_session": session.observations_in_session,
        "tokens": session.coverage.tokens,
        "scores": [_score(score) for score in session.scores],
    }


def session_detail(session: SessionView, scores: list[dict[str, Any]]) -> dict[str, Any]:
    """One session: its row, then its newest traces (turns) in time order with their trees."""
    turns = session.traces[-MAX_TRACES:]
    return {
        **_session_row(session),
        "turns": [trace_detail(trace, scores) for trace in turns],
        "earlier_turns": len(session.traces) - len(turns),
    }


def api_answer(
    path: str,
    wanted: str,
    version: int,
    traces: Mapping[str, TraceView],
    scores: list[dict[str, Any]],
) -> tuple[int, dict[str, Any]] | None:
    """The status and JSON of ``/api/overview``, ``/api/session?id=`` or ``/api/trace?id=``."""
    if path == "/api/overview":
        return 200, overview(traces, build_sessions(traces.values(), scores), version)
    found: dict[str, Any] | None
    if path == "/api/session":
        session = build_sessions(traces.values(), scores).get(wanted)
        found = None if session is None else session_detail(session, scores)
    elif path == "/api/trace":
        trace = traces.get(wanted)
        found = None if trace is None else trace_detail(trace, scores)
    else:
        return None
    return (
        (404, {"message": "not received"})
        if found is None
        else (200, {"version": version, **found})
    )
