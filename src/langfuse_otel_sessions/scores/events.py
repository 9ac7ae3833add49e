"""A score as two span events on the current span, for Collector pipelines and other
backends (Langfuse stores none): ``langfuse.score`` and OpenTelemetry's GenAI
``gen_ai.evaluation.result`` (docs/scores.md says how a score maps onto it)."""

from __future__ import annotations

from opentelemetry import trace

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

_LANGFUSE_FIELDS = (
    ("sessionId", "langfuse.score.session_id"),
    ("traceId", "langfuse.score.trace_id"),
    ("observationId", "langfuse.score.observation_id"),
    ("comment", "langfuse.score.comment"),
)

Attributes = dict[str, "str | float | int"]


def _short(value: str | float | int) -> str | float | int:
    return value[:MAX_SCORE_EVENT_TEXT] if isinstance(value, str) else value


def langfuse_score_attributes(score: Score) -> Attributes:
    """The ``langfuse.score`` event's attributes."""
    body = score.body
    attributes: Attributes = {
        "langfuse.score.id": _short(score.id),
        "langfuse.score.name": _short(body["name"]),
        "langfuse.score.value": _short(body["value"]),
        "langfuse.score.data_type": body["dataType"],
    }
    for key, attribute in _LANGFUSE_FIELDS:
        if key in body:
            attributes[attribute] = _short(body[key])
    return attributes


def evaluation_attributes(score: Score) -> Attributes:
    """The ``gen_ai.evaluation.result`` event's attributes."""
    body = score.body
    data_type, value = body["dataType"], body["value"]
    attributes: Attributes = {GEN_AI_EVALUATION_NAME: _short(body["name"])}
    if data_type in ("NUMERIC", "BOOLEAN"):
        attributes[GEN_AI_EVALUATION_SCORE_VALUE] = float(value)
    if data_type == "BOOLEAN":
        attributes[GEN_AI_EVALUATION_SCORE_LABEL] = "true" if value else "false"
    elif data_type == "CATEGORICAL":
        attributes[GEN_AI_EVALUATION_SCORE_LABEL] = _short(value)
    explanation = body.get("comment")
    if explanation is None and data_type == "TEXT":
        explanation = value
    if explanation is not None:
        attributes[GEN_AI_EVALUATION_EXPLANATION] = _short(explanation)
    return attributes


def add_score_events(score: Score) -> None:
    """Both events on the current span, when it is recording. Never raises."""
    try:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        span.add_event(SCORE_EVENT, langfuse_score_attributes(score))
        span.add_event(GEN_AI_EVALUATION_EVENT, evaluation_attributes(score))
    except Exception:  # noqa: BLE001 - the score is queued whatever happens to the events
        logger.debug("Could not add the score events to the current span", exc_info=True)
