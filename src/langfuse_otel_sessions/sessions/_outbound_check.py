"""One warning when our baggage entries would leave the process with no outbound policy: the
global propagator injects them unfiltered (a processor built by hand with OpenTelemetry's plain
``baggage`` propagator, or the app's own ``set_global_textmap()`` after ``configure()``).
Checked where a session is written, never per span; a propagator found guarded is not re-probed.
"""

from __future__ import annotations

from opentelemetry.context import Context

from .._logging import logger
from .context_slots import with_own_entries

_PROBE = "langfuse_otel_sessions_probe"
NO_OUTBOUND_POLICY = (
    "The global propagator (%s) sends baggage without langfuse-otel-sessions' outbound policy, "
    "so the session and user ids and trace attributes that session() and the session "
    "middleware write will be sent to every host this process calls (LLM APIs included). "
    "Use configure(), or call install_baggage_guard() after building the processor and after "
    "your own propagate.set_global_textmap(...), or use "
    "OTEL_PROPAGATORS=tracecontext,langfuse_baggage. See docs/trust-boundary.md."
)
_warned = False
_checked: object = None  # the global propagator last found to apply the policy


def warn_once_without_outbound_policy() -> None:
    """Log :data:`NO_OUTBOUND_POLICY` once per process if the global propagator injects an entry
    of ours that has no destination opted in (tried on a probe context). Never raises."""
    global _warned, _checked  # noqa: PLW0603 - one flag per process is the point
    if _warned:
        return
    try:
        # Imported late: opentelemetry.propagate loads OTEL_PROPAGATORS (langfuse_baggage too).
        from opentelemetry import propagate  # noqa: PLC0415

        current = propagate.get_global_textmap()
        if current is _checked:
            return
        carrier: dict[str, str] = {}
        current.inject(carrier, context=with_own_entries(Context(), {_PROBE: "1"}))
    except Exception:  # noqa: BLE001 - a diagnostic must never break a scope
        return
    if not any(_PROBE in value for value in carrier.values()):
        _checked = current
    elif not _warned:
        _warned = True  # two threads racing here may both warn: harmless
        logger.warning(NO_OUTBOUND_POLICY, type(current).__name__)
