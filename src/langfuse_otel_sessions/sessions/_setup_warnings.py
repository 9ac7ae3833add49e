"""Two warnings, once per process, checked where a session is written: no processor exists, or
the global propagator would send our entries unfiltered."""

from __future__ import annotations

import weakref
from collections.abc import Callable

from opentelemetry.context import Context

from .._logging import logger
from .context_slots import with_own_entries

MISSING_PROCESSOR = (
    "A session is set (session() or the session middleware) but no SessionSpanProcessor is "
    "installed, so no span will carry the session. Call langfuse_otel_sessions.configure(), "
    "add SessionSpanProcessor() to your TracerProvider, or run under opentelemetry-instrument "
    "(without langfuse_sessions in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS)."
)
NO_OUTBOUND_POLICY = (
    "The global propagator (%s) sends baggage without langfuse-otel-sessions' outbound policy, "
    "so session and user ids and trace attributes will be sent to every host this process calls. "
    "Use configure(), or call install_baggage_guard() after your own set_global_textmap(...), "
    "or OTEL_PROPAGATORS=tracecontext,langfuse_baggage. See docs/trust-boundary.md."
)
_PROBE = "langfuse_otel_sessions_probe"
_processors: weakref.WeakSet[object] = weakref.WeakSet()  # every SessionSpanProcessor alive
_warned: set[str] = set()  # two threads racing may both warn: harmless
_checked: object = None  # the global propagator last found to apply the policy
_textmap: Callable[[], object] | None = None  # propagate.get_global_textmap, once imported


def note_processor(processor: object) -> None:
    """Called by each ``SessionSpanProcessor`` as it is made."""
    _processors.add(processor)


def warn_once_on_setup_gaps() -> None:
    """Log :data:`MISSING_PROCESSOR` and :data:`NO_OUTBOUND_POLICY` once each, where they apply."""
    global _checked, _textmap  # noqa: PLW0603 - one check per process is the point
    if "processor" not in _warned and len(_processors) == 0:
        _warned.add("processor")
        logger.warning(MISSING_PROCESSOR)
    if "outbound" in _warned or (_textmap is not None and _textmap() is _checked):
        return
    try:
        # Imported late: opentelemetry.propagate loads OTEL_PROPAGATORS (langfuse_baggage too).
        from opentelemetry import propagate  # noqa: PLC0415

        current = (_textmap := propagate.get_global_textmap)()
        carrier: dict[str, str] = {}
        current.inject(carrier, context=with_own_entries(Context(), {_PROBE: "1"}))
    except Exception:  # noqa: BLE001 - a diagnostic must never break a scope
        return
    if not any(_PROBE in value for value in carrier.values()):
        _checked = current
    else:
        _warned.add("outbound")
        logger.warning(NO_OUTBOUND_POLICY, type(current).__name__)
