"""One call to set everything up on a ``TracerProvider``; the zero-code hook uses it too."""

from __future__ import annotations

import threading
import weakref

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from ._logging import logger
from .errors import ConfigurationError
from .exporter import LangfuseSpanExporter
from .processor import SessionSpanProcessor

_configured: weakref.WeakSet[TracerProvider] = weakref.WeakSet()
_lock = threading.Lock()


def configure(
    tracer_provider: TracerProvider | None = None,
    *,
    export: bool = True,
    processor: SessionSpanProcessor | None = None,
    exporter: SpanExporter | None = None,
) -> TracerProvider:
    """Add :class:`SessionSpanProcessor` and (with ``export``) a ``BatchSpanProcessor`` around
    :class:`LangfuseSpanExporter` to ``tracer_provider`` — or to the global provider, made and
    set if none is — and install the propagator guard (unless trusting remote baggage).

    Idempotent: a provider configured once is left alone, so nothing is exported twice.
    ``processor`` / ``exporter`` replace the defaults (built from the environment).
    Returns the provider.
    """
    provider = tracer_provider
    if provider is None:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            provider = current
        else:
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
    elif not isinstance(provider, TracerProvider):
        raise ConfigurationError("tracer_provider must be an opentelemetry.sdk TracerProvider")
    with _lock:
        if provider in _configured:
            logger.debug("langfuse-otel-sessions is already configured on this provider")
            return provider
        provider.add_span_processor(processor or SessionSpanProcessor())
        if export:
            provider.add_span_processor(BatchSpanProcessor(exporter or LangfuseSpanExporter()))
        _configured.add(provider)
    return provider
