"""The views: the JSON the page (``page/``) polls, every list and text capped; the terminal's one
line per batch; and the text the examples print (sessions, traces)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Set
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._model import (
    DEFAULT_ENVIRONMENT,
    SessionView,
    TraceView,
    build_sessions,
    coverage,
    observation_type,
    span_session_id,
)

#: Caps on one answer: the newest sessions and session-less traces, the first spans of a trace,
#: the first characters of a text.
MAX_SESSIONS = 500
MAX_TRACES = 200
MAX_SPANS = 1000
MAX_TEXT = 4000

#: The page's files, by path, and their content types.
FILES = {"/": "index.html", "/view.js": "view.js", "/view.css": "view.css"}
_CONTENT_TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css"}
#: The page loads only its own script and style, and nothing inline: injected markup cannot run.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"… ({len(text)} characters)"


def _score(score: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _text(score.get(key)) for key in ("name", "value", "dataType", "comment")}


def _end(trace: TraceView) -> int:
    return max((span.end_time_unix_nano for span in trace.spans), default=trace.timestamp)


def _trace_row(trace: TraceView) -> dict[str, Any]:
    return {
        "id": trace.id,
        "name": _text(trace.name),
        "start": trace.timestamp,
        "end": _end(trace),
        "in_session": trace.session_id is not None,
    }


def trace_detail(trace: TraceView, scores: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A trace as the page shows it: name, I/O, its scores and its first spans (the fields
    ``view.js`` reads, no more)."""
    spans = [
        {
            "id": span.span_id,
            "parent": span.parent_span_id,
            "name": _text(span.name),
            "type": observation_type(span.attributes),
            "start": span.start_time_unix_nano,
            "end": span.end_time_unix_nano,
            "in_session": span_session_id(span) is not None,
        }
        for span in trace.spans[:MAX_SPANS]
    ]
    return _trace_row(trace) | {
        "input": _text(trace.input),
        "output": _text(trace.output),
        "scores": [_score(s) for s in scores if s.get("traceId") == trace.id],
        "spans": spans,
        "more_spans": max(0, len(trace.spans) - MAX_SPANS),
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


def page_answer(
    target: str, version: int, received: Callable[[], tuple[dict[str, TraceView], list[Any]]]
) -> tuple[int, str, bytes] | None:
    """Status, content type and body for a GET of the page, ``/api/version`` (polled every
    second: nothing built), ``/api/overview``, ``/api/session?id=`` or ``/api/trace?id=``."""
    path, query = urlsplit(target)[2:4]
    if path in FILES:
        content_type = _CONTENT_TYPES[FILES[path].rpartition(".")[2]] + "; charset=utf-8"
        return 200, content_type, (resources.files(__package__) / "page" / FILES[path]).read_bytes()
    if path == "/api/version":
        return 200, "application/json", json.dumps({"version": version}).encode()
    if path not in ("/api/overview", "/api/session", "/api/trace"):
        return None
    answer = _api(path, parse_qs(query).get("id", [""])[0], *received())
    if answer is None:
        return 404, "application/json", b'{"message": "not received"}'
    return 200, "application/json", json.dumps({"version": version, **answer}).encode()


def _api(
    path: str, wanted: str, traces: Mapping[str, TraceView], scores: list[dict[str, Any]]
) -> dict[str, Any] | None:
    sessions = build_sessions(traces.values(), scores)
    if path == "/api/session" and wanted in sessions:
        turns = sessions[wanted].traces[-MAX_TRACES:]
        return _session_row(sessions[wanted]) | {
            "turns": [trace_detail(trace, scores) for trace in turns],
            "earlier_turns": len(sessions[wanted].traces) - len(turns),
        }
    if path == "/api/trace" and wanted in traces:
        return trace_detail(traces[wanted], scores)
    if path != "/api/overview":
        return None
    counted = coverage(span for trace in traces.values() for span in trace.spans)
    newest = sorted(sessions.values(), key=lambda s: max(map(_end, s.traces), default=0))[::-1]
    orphans = sorted((t for t in traces.values() if not t.session_id), key=lambda t: -t.timestamp)
    return {
        "spans": counted.spans,
        "spans_without_session": counted.spans_without_session,
        "sessions": [_session_row(session) for session in newest[:MAX_SESSIONS]],
        "more_sessions": max(0, len(newest) - MAX_SESSIONS),
        "sessionless": [_trace_row(t) | {"spans": len(t.spans)} for t in orphans[:MAX_TRACES]],
        "more_sessionless": max(0, len(orphans) - MAX_TRACES),
    }


def batch_line(
    traces: Mapping[str, TraceView], scores: list[dict[str, Any]], seen: Set[str], url: str
) -> str:
    """What the spans whose ids are not in ``seen`` brought, in one line: ``+3 spans ·
    sessions: a (new), b · 1 new trace without a session · 2 sessions in all · <url>/``."""
    fresh = {t.id: [span.span_id not in seen for span in t.spans] for t in traces.values()}
    sessions = build_sessions(traces.values(), scores)
    changed = [  # client data for a terminal: no control characters (escape sequences)
        "".join(c if c.isprintable() else "?" for c in s.id[:80])
        + (" (new)" if all(all(fresh[t.id]) for t in s.traces) else "")
        for s in sessions.values()
        if any(any(fresh[t.id]) for t in s.traces)
    ]
    orphans = sum(all(fresh[t.id]) for t in traces.values() if not t.session_id)
    parts = [f"{sum(map(sum, fresh.values())):+d} spans"]
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        parts.append("sessions: " + ", ".join(changed[:3]) + more)
    if orphans:
        parts.append(f"{orphans} new trace{'s' * (orphans > 1)} without a session")
    return " · ".join([*parts, f"{len(sessions)} sessions in all · {url}/"])


_SHOWN = ("input", "output", "environment", "release", "version", "tags", "metadata")


def _render_trace(trace: TraceView) -> str:
    """A trace's line: name, id, duration, and the trace's fields that are set."""
    took = (_end(trace) - trace.timestamp) / 1e6
    line = f'   trace "{trace.name or "(no root span yet)"}" {trace.id[:8]}  {took:.1f} ms'
    for key in _SHOWN:
        value = getattr(trace, key)
        if value and (key, value) != ("environment", DEFAULT_ENVIRONMENT):
            line += f"  {key}={value!r}"
    return line


def render_sessions(sessions: Iterable[SessionView]) -> str:
    """Every session, as text: a heading, its traces in time order, and its scores."""
    lines = []
    for session in sessions:
        users = sorted({t.user_id for t in session.traces if t.user_id})
        lines.append(
            f"session {session.id}"
            + (f"  user={', '.join(users)}" if users else "")
            + f"  traces={len(session.traces)}  observations in session="
            + f"{session.observations_in_session}/{len(session.spans)}"
        )
        lines += map(_render_trace, session.traces)
        lines += (
            f"   score {s.get('name')}={s.get('value')!r} ({s.get('dataType')})"
            for s in session.scores
        )
    return "\n".join(lines)
