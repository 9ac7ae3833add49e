"""Langfuse's score schema, as its public API validates it.

Written from the contract, independently of the package's own score validation, so that the
receiver can catch what our client gets wrong.
"""

from __future__ import annotations

import math
from typing import Any

_DATA_TYPES = {"NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT", "CORRECTION"}
_TARGETS = ("sessionId", "traceId", "datasetRunId")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def score_errors(body: object) -> list[str]:  # noqa: PLR0912 - one check per schema rule
    """What Langfuse would reject in a score body; empty when it is valid."""
    if not isinstance(body, dict):
        return ["body must be an object"]
    errors: list[str] = []
    score_id = body.get("id")
    if score_id is not None and (
        not isinstance(score_id, str) or not 1 <= len(score_id) <= 800 or "\r" in score_id
    ):
        errors.append("id must be a string of 1-800 characters without CR")
    name = body.get("name")
    if not isinstance(name, str) or not name:
        errors.append("name must be a non-empty string")
    targets = [key for key in _TARGETS if body.get(key) is not None]
    if body.get("observationId") is not None and "traceId" not in targets:
        errors.append("observationId needs a traceId")
    if len(targets) != 1:
        errors.append("exactly one of sessionId, traceId, datasetRunId is required")
    for key in (*_TARGETS, "observationId", "comment", "configId", "environment"):
        if body.get(key) is not None and not isinstance(body[key], str):
            errors.append(f"{key} must be a string")
    data_type = body.get("dataType")
    value = body.get("value")
    if data_type is None:
        if not (_is_number(value) or isinstance(value, str)):
            errors.append("value must be a number or a string")
    elif data_type not in _DATA_TYPES:
        errors.append("dataType is not one of " + ", ".join(sorted(_DATA_TYPES)))
    elif data_type in ("NUMERIC", "CORRECTION") and not _is_number(value):
        errors.append(f"{data_type} value must be a finite number")
    elif data_type == "BOOLEAN" and (not _is_number(value) or value not in (0, 1)):
        errors.append("BOOLEAN value must be 0 or 1")
    elif data_type == "CATEGORICAL" and not isinstance(value, str):
        errors.append("CATEGORICAL value must be a string")
    elif data_type == "TEXT" and (not isinstance(value, str) or not 1 <= len(value) <= 500):
        errors.append("TEXT value must be a string of 1-500 characters")
    return errors


def inferred_data_type(body: dict[str, Any]) -> str:
    """The data type Langfuse stores: the given one, or inferred from the value."""
    given = body.get("dataType")
    if isinstance(given, str):
        return given
    return "CATEGORICAL" if isinstance(body.get("value"), str) else "NUMERIC"
