"""The ``langfuse_sessions`` ``opentelemetry_instrumentor`` entry point (zero-code)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.sdk.trace import TracerProvider

from .._logging import logger
from .configure import configure


class SessionInstrumentor(BaseInstrumentor):  # type: ignore[misc]  # untyped base class
    """Adds the session processor (and the propagator guard) to the SDK tracer provider."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:  # noqa: ANN401 - BaseInstrumentor's signature
        provider = kwargs.get("tracer_provider") or trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            logger.warning(
                "langfuse-otel-sessions: no SDK TracerProvider to add the session processor to "
                "(is opentelemetry-distro or another configurator installed?)"
            )
            return
        configure(provider, export=False)

    def _uninstrument(self, **kwargs: Any) -> None:  # noqa: ANN401 - BaseInstrumentor's signature
        """Nothing to undo: a span processor cannot be removed from a ``TracerProvider``."""
