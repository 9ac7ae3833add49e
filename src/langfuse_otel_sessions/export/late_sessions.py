"""How long the exporter holds the ended spans of a running request without a session yet
(:class:`~langfuse_otel_sessions.spans.memory.LateSessionHold` holds them)."""

from __future__ import annotations

import math
import os

from .._logging import logger
from ..attributes import ENV_LATE_SESSION_SECONDS
from ..errors import ConfigurationError

DEFAULT_LATE_SESSION_SECONDS = 30.0


def late_session_seconds(value: float | None) -> float:
    """Explicit argument > ``LANGFUSE_OTEL_LATE_SESSION_SECONDS`` > 30; ``0`` turns holding off."""
    if value is None:
        raw = os.environ.get(ENV_LATE_SESSION_SECONDS, "").strip()
        if not raw:
            return DEFAULT_LATE_SESSION_SECONDS
        try:
            parsed = float(raw)
        except ValueError:
            parsed = -1.0
        if not math.isfinite(parsed) or parsed < 0:
            logger.warning(
                "%s must be a number of seconds >= 0; using %s",
                ENV_LATE_SESSION_SECONDS,
                DEFAULT_LATE_SESSION_SECONDS,
            )
            return DEFAULT_LATE_SESSION_SECONDS
        return parsed
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError("late_session_seconds must be a number of seconds >= 0")
    if not math.isfinite(value):
        raise ConfigurationError("late_session_seconds must be finite")
    return float(value)
