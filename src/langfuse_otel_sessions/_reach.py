"""One warning when what ``session()`` and the session middleware set can reach no Langfuse:
no ``SessionSpanProcessor`` exists to stamp the spans, or nothing exports them (no
``LangfuseSpanExporter`` and no exporter endpoint in the environment).

Checked where the package writes a session (a scope entered, a request decided), never per span:
two set lengths, and a few environment reads until an exporter or an endpoint is seen.
"""

from __future__ import annotations

import os
import threading
import weakref

from ._logging import logger
from .attributes import ENV_COLLECTOR_ENDPOINT

MISSING_PROCESSOR = (
    "A session is set (session() or the session middleware) but no SessionSpanProcessor is "
    "installed, so no span will carry the session. Call langfuse_otel_sessions.configure() at "
    "startup, add SessionSpanProcessor() to your TracerProvider, or run under "
    "opentelemetry-instrument with langfuse-otel-sessions installed (and langfuse_sessions not "
    "in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS)."
)
MISSING_EXPORTER = (
    "Spans carry sessions, but no LangfuseSpanExporter exists and no exporter endpoint is set, "
    "so nothing may send them to Langfuse. Call langfuse_otel_sessions.configure() at startup "
    "(with LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY set), add "
    "BatchSpanProcessor(LangfuseSpanExporter()) to your TracerProvider, or set "
    "OTEL_TRACES_EXPORTER=langfuse, LANGFUSE_OTEL_COLLECTOR_ENDPOINT or "
    "OTEL_EXPORTER_OTLP_ENDPOINT."
)
#: Variables that send spans somewhere without a LangfuseSpanExporter made in code.
_ENDPOINT_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ENV_COLLECTOR_ENDPOINT,
)

_lock = threading.Lock()
_settled: set[str] = set()  # the messages given, and "exporter" once one is known
# Every SessionSpanProcessor and LangfuseSpanExporter alive, on whichever provider (a private
# one counts: the examples keep theirs off the global provider).
_processors: weakref.WeakSet[object] = weakref.WeakSet()
_exporters: weakref.WeakSet[object] = weakref.WeakSet()


def note_processor(processor: object) -> None:
    """Called by each ``SessionSpanProcessor`` as it is made."""
    _processors.add(processor)


def note_exporter(exporter: object) -> None:
    """Called by each ``LangfuseSpanExporter`` as it is made."""
    _exporters.add(exporter)


def _once(message: str) -> None:
    with _lock:
        if message in _settled:
            return
        _settled.add(message)
    logger.warning(message)


def warn_once_if_nothing_reaches_langfuse() -> None:
    """Log :data:`MISSING_PROCESSOR`, or else :data:`MISSING_EXPORTER`, once per process when
    no processor (exporter, endpoint) exists right now. Never raises."""
    if len(_processors) == 0:
        _once(MISSING_PROCESSOR)
    elif "exporter" not in _settled and MISSING_EXPORTER not in _settled:
        if len(_exporters) > 0 or any(os.environ.get(name) for name in _ENDPOINT_VARIABLES):
            _settled.add("exporter")
        else:
            _once(MISSING_EXPORTER)
