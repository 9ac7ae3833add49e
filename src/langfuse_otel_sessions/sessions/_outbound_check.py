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

from opentelemetry.propagators import textmap

from .._logging import logger

NO_OUTBOUND_POLICY = (
    "The global propagator (%s) sends baggage without langfuse-otel-sessions' outbound policy, "
    "so the session and user ids and trace attributes that session() and the session "
    "middleware write will be sent to every host this process calls (LLM APIs included). "
    "Use configure(), or call install_baggage_guard() after building the processor and after "
    "your own propagate.set_global_textmap(...), or use "
    "OTEL_PROPAGATORS=tracecontext,langfuse_baggage. "
    "See docs/outbound-propagation.md."
)

_lock = threading.Lock()
_warned = False
#: The global propagator last found to apply the policy (not checked again while it is global).
_checked: object = None


#: The propagator classes that apply the outbound policy in ``inject`` (the trust boundary
#: registers ``BaggageGuard`` and ``SessionBaggagePropagator`` as it is imported).
_policy_propagators: list[type] = []


def note_policy_propagator(cls: type) -> None:
    """Called by the trust boundary for each propagator class that applies the policy."""
    if cls not in _policy_propagators:
        _policy_propagators.append(cls)


def _unguarded(propagator: object) -> bool:
    """Whether ``propagator`` injects a ``baggage`` header without the outbound policy."""
    if isinstance(propagator, tuple(_policy_propagators)):
        return False
    members = getattr(propagator, "_propagators", None)  # a CompositePropagator
    if isinstance(members, (list, tuple)):
        return any(_unguarded(member) for member in members)
    if not isinstance(propagator, textmap.TextMapPropagator):
        return False
    return any(field.lower() == "baggage" for field in propagator.fields)


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
