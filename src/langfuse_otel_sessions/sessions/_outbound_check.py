"""One warning when the package's baggage entries would leave the process with no outbound policy.

The policy (``boundary/outbound.py``) is applied by the propagators' ``inject``: the
``BaggageGuard`` that ``configure()`` / ``install_baggage_guard()`` install around the global
propagator, and the ``langfuse_baggage`` propagator. With a processor built by hand and
OpenTelemetry's plain ``baggage`` propagator, or after the app's own ``set_global_textmap()``,
nothing applies it: the ids and trace attributes go to every host. Checked where the package
writes its entries (a scope entered, a request decided), never per span; a global propagator
found to apply the policy is not looked at again.
"""

from __future__ import annotations

import threading

from opentelemetry.context import Context
from opentelemetry.propagators import textmap

from .._logging import logger
from .context_slots import with_own_entries

_PROBE = "langfuse_otel_sessions_probe"

NO_OUTBOUND_POLICY = (
    "The global propagator (%s) sends baggage without langfuse-otel-sessions' outbound policy, "
    "so the session and user ids and trace attributes that session() and the session "
    "middleware write will be sent to every host this process calls (LLM APIs included). "
    "Use configure(), or call install_baggage_guard() after building the processor and after "
    "your own propagate.set_global_textmap(...), or use "
    "OTEL_PROPAGATORS=tracecontext,langfuse_baggage. "
    "See docs/trust-boundary.md."
)

_lock = threading.Lock()
_warned = False
#: The global propagator last found to apply the policy (not checked again while it is global).
_checked: object = None


def _unguarded(propagator: textmap.TextMapPropagator) -> bool:
    """Whether ``propagator`` injects an entry of ours with no destination known (the policy
    withholds it): tried, with the public ``inject``, on a probe context."""
    if not isinstance(propagator, textmap.TextMapPropagator):
        return False
    probe = with_own_entries(Context(), {_PROBE: "1"})
    carrier: dict[str, str] = {}
    propagator.inject(carrier, context=probe)
    return any(_PROBE in value for value in carrier.values())


def warn_once_without_outbound_policy() -> None:
    """Log :data:`NO_OUTBOUND_POLICY` once per process if the global propagator injects
    baggage without the outbound policy. Never raises."""
    global _warned, _checked  # noqa: PLW0603 - one flag per process is the point
    if _warned:
        return
    try:
        from opentelemetry import propagate  # noqa: PLC0415 - see install_baggage_guard

        current = propagate.get_global_textmap()
        if current is _checked:
            return
        unguarded = _unguarded(current)
    except Exception:  # noqa: BLE001 - a diagnostic must never break a scope
        return
    with _lock:
        if _warned:
            return
        if not unguarded:
            _checked = current
            return
        _warned = True
    logger.warning(NO_OUTBOUND_POLICY, type(current).__name__)
