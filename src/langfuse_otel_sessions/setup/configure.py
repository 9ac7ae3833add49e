"""One call to set everything up on a ``TracerProvider``; the zero-code hook uses it too."""

from __future__ import annotations

import os
import threading
import weakref

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from ..attributes import SAMPLER_ENTRY_POINT
from ..boundary.propagator import install_baggage_guard
from ..errors import ConfigurationError
from ..export.exporter import LangfuseSpanExporter
from ..export.http import note_exit_first
from ..spans.processor import SessionSpanProcessor
from ..spans.sampler import SessionSampler, session_sampler_from_env

_configured: weakref.WeakKeyDictionary[TracerProvider, SessionSpanProcessor] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def configure(
    tracer_provider: TracerProvider | None = None,
    *,
    export: bool = True,
    processor: SessionSpanProcessor | None = None,
    exporter: SpanExporter | None = None,
    sampler: Sampler | None = None,
) -> TracerProvider:
    """Add the session processor (and with ``export`` the Langfuse exporter) to a provider,
    default the global one, once per provider, and install the propagator guard; returns it."""
    if sampler is not None and not isinstance(sampler, Sampler):
        raise ConfigurationError("sampler must be an opentelemetry.sdk Sampler")
    provider = tracer_provider or trace.get_tracer_provider()
    if tracer_provider is None and not isinstance(provider, TracerProvider):
        provider = TracerProvider(sampler=sampler or _sampler_from_environment())
        trace.set_tracer_provider(provider)
    elif not isinstance(provider, TracerProvider):
        raise ConfigurationError("tracer_provider must be an opentelemetry.sdk TracerProvider")
    if sampler is not None:
        provider.sampler = sampler
    with _lock:
        added = _configured.get(provider)
        if added is None:
            added = _configured[provider] = processor or SessionSpanProcessor()
            provider.add_span_processor(added)
            if export:
                provider.add_span_processor(BatchSpanProcessor(exporter or LangfuseSpanExporter()))
        if isinstance(provider.sampler, SessionSampler):
            provider.sampler.read_like(added)
    install_baggage_guard(
        trust_remote_baggage=added.trust_remote_baggage,
        propagate_session_to=added.propagate_session_to,
    )
    _carry_context_into_threads()
    note_exit_first()  # the provider (and its exit hook) may be newer than the clients
    return provider


def _carry_context_into_threads() -> None:
    """Threads carry the session with OpenTelemetry's threading instrumentation, if installed."""
    try:
        from opentelemetry.instrumentation.threading import ThreadingInstrumentor  # noqa: PLC0415 - optional
    except ImportError:
        return
    instrumentor = ThreadingInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def _sampler_from_environment() -> Sampler | None:
    """Our sampler when ``OTEL_TRACES_SAMPLER`` names it; else ``None``: the SDK reads it."""
    if os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() != SAMPLER_ENTRY_POINT:
        return None
    return session_sampler_from_env(os.environ.get("OTEL_TRACES_SAMPLER_ARG"))
