"""Langfuse sessions for any OpenTelemetry pipeline."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .asgi import ASGISessionMiddleware
from .configure import configure
from .context import SessionScope, current_session_id, current_user_id, session
from .errors import ConfigurationError, InvalidIdError, InvalidScoreError
from .exporter import ExportStats, LangfuseSpanExporter
from .processor import SessionSpanProcessor
from .propagator import BaggageGuard, SessionBaggagePropagator, install_baggage_guard
from .sampler import SessionSampler
from .score_sender import SenderStats
from .scores import (
    ScoreClient,
    default_score_client,
    flush_scores,
    score_id,
    score_session,
    score_trace,
)
from .session import Session
from .wsgi import WSGISessionMiddleware

try:
    __version__ = version("langfuse-otel-sessions")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "ASGISessionMiddleware",
    "BaggageGuard",
    "ConfigurationError",
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
