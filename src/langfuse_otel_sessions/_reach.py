"""One warning when a session is set (``session()``, the session middleware) while no
``SessionSpanProcessor`` exists to stamp it on spans. Checked where a session is written, never
per span: one set length."""

from __future__ import annotations

import weakref

from ._logging import logger

MISSING_PROCESSOR = (
    "A session is set (session() or the session middleware) but no SessionSpanProcessor is "
    "installed, so no span will carry the session. Call langfuse_otel_sessions.configure() at "
    "startup, add SessionSpanProcessor() to your TracerProvider, or run under "
    "opentelemetry-instrument with langfuse-otel-sessions installed (and langfuse_sessions not "
    "in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS)."
)

# Every SessionSpanProcessor alive, on whichever provider (the examples keep theirs private).
_processors: weakref.WeakSet[object] = weakref.WeakSet()
_warned = False


def note_processor(processor: object) -> None:
    """Called by each ``SessionSpanProcessor`` as it is made."""
    _processors.add(processor)


def warn_once_if_nothing_reaches_langfuse() -> None:
    """Log :data:`MISSING_PROCESSOR` once per process when no processor exists now."""
    global _warned  # noqa: PLW0603 - once per process is the point
    if not _warned and len(_processors) == 0:
        _warned = True  # two threads racing here may both warn: harmless
        logger.warning(MISSING_PROCESSOR)
