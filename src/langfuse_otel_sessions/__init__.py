"""Langfuse sessions for any OpenTelemetry pipeline. This module and :mod:`.testing` are the
API; every other module path in the package is internal and may change."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .boundary.propagator import BaggageGuard, SessionBaggagePropagator, install_baggage_guard
from .errors import ConfigurationError, InvalidIdError, InvalidScoreError
from .export.coverage import Coverage
from .export.exporter import ExportStats, LangfuseSpanExporter
from .scores.client import (
    ScoreClient,
    default_score_client,
    flush_scores,
    score_id,
    score_session,
    score_trace,
)
from .scores.sender import SenderStats
from .sessions.context import SessionScope, current_session_id, current_user_id, session
from .sessions.session import Session
from .setup.configure import configure
from .spans.processor import SessionSpanProcessor
from .spans.sampler import SessionSampler
from .web.asgi import ASGISessionMiddleware
from .web.wsgi import WSGISessionMiddleware

try:
    __version__ = version("langfuse-otel-sessions")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "ASGISessionMiddleware",
    "BaggageGuard",
    "ConfigurationError",
    "Coverage",
    "ExportStats",
    "InvalidIdError",
    "InvalidScoreError",
    "LangfuseSpanExporter",
    "ScoreClient",
    "SenderStats",
    "Session",
    "SessionBaggagePropagator",
    "SessionSampler",
    "SessionScope",
    "SessionSpanProcessor",
    "WSGISessionMiddleware",
    "__version__",
    "configure",
    "current_session_id",
    "current_user_id",
    "default_score_client",
    "flush_scores",
    "install_baggage_guard",
    "score_id",
    "score_session",
    "score_trace",
    "session",
]
