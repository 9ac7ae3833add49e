"""A score as two span events, ``langfuse.score`` and OpenTelemetry's GenAI
``gen_ai.evaluation.result``, for other backends (docs/scores.md has the mapping)."""

from __future__ import annotations

import re

from opentelemetry import context, trace

from .._logging import logger
from ..attributes import (
    GEN_AI_EVALUATION_EVENT,
    GEN_AI_EVALUATION_EXPLANATION,
    GEN_AI_EVALUATION_NAME,
    GEN_AI_EVALUATION_SCORE_LABEL,
    GEN_AI_EVALUATION_SCORE_VALUE,
    MAX_SCORE_EVENT_TEXT,
    SCORE_EVENT,
)
from .model import Score

_FIELDS = ("id", "name", "value", "dataType", "sessionId", "traceId", "observationId", "comment")
#: Body field -> the ``langfuse.score.*`` attribute it gives, when present (``data_type``, ...).
_LANGFUSE_KEYS = {f: "langfuse.score." + re.sub("([A-Z])", r"_\1", f).lower() for f in _FIELDS}


def _short(value: str | float | int) -> str | float | int:
    return value[:MAX_SCORE_EVENT_TEXT] if isinstance(value, str) else value


def add_score_events(score: Score) -> None:
    """Both events on the current span, when it is recording. Never raises."""
    try:
        if not context.get_current() or not (span := trace.get_current_span()).is_recording():
            return  # an empty context has no span: known at half the cost of looking it up
        body, data_type, value = score.body, score.body["dataType"], score.body["value"]
        ours = {key: _short(body[field]) for field, key in _LANGFUSE_KEYS.items() if field in body}
        span.add_event(SCORE_EVENT, ours)
        evaluation: dict[str, str | float | int] = {GEN_AI_EVALUATION_NAME: _short(body["name"])}
        if data_type in ("NUMERIC", "BOOLEAN"):
            evaluation[GEN_AI_EVALUATION_SCORE_VALUE] = float(value)
        if data_type == "BOOLEAN":
            evaluation[GEN_AI_EVALUATION_SCORE_LABEL] = "true" if value else "false"
        elif data_type == "CATEGORICAL":
            evaluation[GEN_AI_EVALUATION_SCORE_LABEL] = _short(value)
        explanation = body.get("comment", value if data_type == "TEXT" else None)
        if explanation is not None:
            evaluation[GEN_AI_EVALUATION_EXPLANATION] = _short(explanation)
        span.add_event(GEN_AI_EVALUATION_EVENT, evaluation)
    except Exception:  # noqa: BLE001 - the score is queued whatever happens to the events
        logger.debug("Could not add the score events to the current span", exc_info=True)
