"""Scores follow the sampling decision: no score for a session that was sampled out.

A session score for a conversation the :class:`SessionSampler` dropped would point at a session
Langfuse never received. The decision is a pure function of the session id (and the allow
rules), so it can be taken again here, without remembering anything.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import Sampler

from ..sessions.context import current_session_id, current_user_id
from ..spans.sampler import SessionSampler

#: The global tracer provider, once set (OpenTelemetry lets it be set once per process).
_global: list[object] = []


def active_session_sampler(explicit: Sampler | None = None) -> SessionSampler | None:
    """``explicit`` if it is a :class:`SessionSampler`, else the global tracer provider's
    sampler if it is one, else ``None`` (nothing to follow)."""
    sampler = explicit
    if sampler is None:
        if _global:
            provider = _global[0]
        else:
            provider = trace.get_tracer_provider()
            if not isinstance(provider, trace.ProxyTracerProvider):
                _global.append(provider)
        sampler = getattr(provider, "sampler", None)
    return sampler if isinstance(sampler, SessionSampler) else None


def session_sampled_out(session_id: str, sampler: Sampler | None = None) -> bool:
    """Whether the session sampler in force drops ``session_id``'s traces.

    Inside that session's scope, a span that is kept (whatever kept it: a parent, the fallback
    before a middleware knew the session) means the session reaches Langfuse: ``False``. There
    the user id is known too; when a user allow rule might keep the session and the user is
    unknown, the answer is ``False`` (send).
    """
    session_sampler = active_session_sampler(sampler)
    if session_sampler is None:
        return False
    user_id = None
    if current_session_id() == session_id:
        if trace.get_current_span().get_span_context().trace_flags.sampled:
            return False
        user_id = current_user_id()
    return session_sampler.keeps_session(session_id, user_id) is False
