"""One warning when ``session()`` is used while no ``SessionSpanProcessor`` exists to stamp spans.

Without a processor the session sits in the context and no span ever carries it: the most common
way to lose sessions silently. The check is a dictionary length, cheap enough for every scope.
"""

from __future__ import annotations

import threading
import weakref

from .._logging import logger

MISSING_PROCESSOR = (
    "session() is used but no SessionSpanProcessor is installed, so no span will carry the "
    "session. Call langfuse_otel_sessions.configure() at startup, add SessionSpanProcessor() to "
    "your TracerProvider, or run under opentelemetry-instrument with langfuse-otel-sessions "
    "installed (and langfuse_sessions not in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS)."
)

_warned = False
_lock = threading.Lock()
# Every SessionSpanProcessor alive, on whichever provider (a private one counts: the examples
# keep theirs off the global provider).
_processors: weakref.WeakSet[object] = weakref.WeakSet()


def note_processor(processor: object) -> None:
    """Called by each ``SessionSpanProcessor`` as it is made."""
    _processors.add(processor)


def warn_once_without_processor() -> None:
    """Log :data:`MISSING_PROCESSOR` once per process if no processor is alive right now."""
    global _warned  # noqa: PLW0603 - one flag per process is the point
    if _warned or len(_processors) > 0:
        return
    with _lock:
        if _warned:
            return
        _warned = True
    logger.warning(MISSING_PROCESSOR)
