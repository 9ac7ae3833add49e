"""No score for a session the :class:`SessionSampler` dropped: the decision is a pure function
of the session id (and the allow rules), so it is taken again here, remembering nothing."""

from __future__ import annotations

from opentelemetry import trace

from ..sessions.context import current_session_id, current_user_id
from ..spans.sampler import SessionSampler

#: The global tracer provider's session sampler (or ``None``), once a provider is set: it can
#: be set once per process, and a provider's sampler never changes.
_global: list[SessionSampler | None] = []


def global_session_sampler() -> SessionSampler | None:
    """The global tracer provider's sampler if it is a :class:`SessionSampler`."""
    if _global:
        return _global[0]
    provider = trace.get_tracer_provider()
    sampler = getattr(provider, "sampler", None)
    found = sampler if isinstance(sampler, SessionSampler) else None
    if not isinstance(provider, trace.ProxyTracerProvider):
        _global.append(found)
    return found


def sampled_out(sampler: SessionSampler, session_id: str) -> bool:
    """Whether ``sampler`` drops ``session_id``'s traces. Inside that session's scope a kept
    span means the session reaches Langfuse, and the user id is known; when a user rule might
    keep the session and the user is unknown, the answer is ``False`` (send)."""
    user_id = None
    if current_session_id() == session_id:
        if trace.get_current_span().get_span_context().trace_flags.sampled:
            return False
        user_id = current_user_id()
    return sampler.keeps_session(session_id, user_id) is False
