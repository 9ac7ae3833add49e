"""Langfuse's score schema, as its ingestion validates it.

Written from Langfuse's schema, independently of the package's own score validation, so that the
receiver can catch what our client gets wrong. Numbers are what JavaScript's ``JSON.parse``
reads: an integer beyond a double's range becomes ``Infinity``, which the schema refuses.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any

_DATA_TYPES = {"NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT", "CORRECTION"}
_TARGETS = ("sessionId", "traceId", "datasetRunId")
_LARGEST_DOUBLE = sys.float_info.max
#: ``z.iso.datetime({offset: true})``: a date, a time, optional fraction, ``Z`` or an offset.
_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)", re.ASCII
)
#: Langfuse stores CORRECTION scores under this name.
CORRECTION_NAME = "output"


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int):
        return -_LARGEST_DOUBLE <= value <= _LARGEST_DOUBLE
    return math.isfinite(value)


def _json_problem(value: object) -> str | None:
    """Why ``value`` is not Langfuse's JSON (finite numbers only), walked without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            if not _is_number(item):
                return "a number that is not finite"
        elif item is not None and not isinstance(item, (str, bool)):
            return f"a value of type {type(item).__name__}"
    return None


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 800 and "\r" not in value


def _value_errors(  # noqa: PLR0911 - one return per schema rule
    data_type: object, value: object, config_id: object
) -> list[str]:
    if data_type is None:
        if not (_is_number(value) or isinstance(value, str)):
            return ["value must be a number or a string"]
    elif data_type not in _DATA_TYPES:
        return ["dataType is not one of " + ", ".join(sorted(_DATA_TYPES))]
    elif data_type == "NUMERIC" and not _is_number(value):
        return ["NUMERIC value must be a finite number"]
    elif data_type == "BOOLEAN" and (not _is_number(value) or value not in (0, 1)):
        return ["BOOLEAN value must be 0 or 1"]
    elif data_type in ("CATEGORICAL", "CORRECTION") and not isinstance(value, str):
        return [f"{data_type} value must be a string"]
    elif data_type == "TEXT" and (not isinstance(value, str) or not 1 <= len(value) <= 500):
        return ["TEXT value must be a string of 1-500 characters"]
    if data_type == "CORRECTION" and config_id is not None:
        return ["a CORRECTION score cannot have a configId"]
    return []


def score_errors(body: object) -> list[str]:
    """What Langfuse would reject in a score body; empty when it is valid."""
    if not isinstance(body, dict):
        return ["body must be an object"]
    errors: list[str] = []
    if body.get("id") is not None and not _is_id(body["id"]):
        errors.append("id must be a string of 1-800 characters without CR")
    name = body.get("name")
    if not isinstance(name, str) or not name:
        errors.append("name must be a non-empty string")
    targets = [key for key in _TARGETS if body.get(key)]
    if body.get("observationId") and "traceId" not in targets:
        errors.append("observationId needs a traceId")
    if len(targets) != 1:
        errors.append("exactly one of sessionId, traceId, datasetRunId is required")
    for key in (*_TARGETS, "observationId", "comment", "configId", "environment"):
        if body.get(key) is not None and not isinstance(body[key], str):
            errors.append(f"{key} must be a string")
    errors += _value_errors(body.get("dataType"), body.get("value"), body.get("configId"))
    metadata = body.get("metadata")
    if metadata is not None:
        problem = _json_problem(metadata)
        if problem is not None:
            errors.append(f"metadata must be JSON: {problem}")
    return errors


def event_errors(event: object) -> list[str]:
    """What Langfuse would reject in one ingestion event (envelope and score body)."""
    if not isinstance(event, dict):
        return ["event must be an object"]
    errors: list[str] = []
    if not _is_id(event.get("id")):
        errors.append("event id must be a string of 1-800 characters without CR")
    timestamp = event.get("timestamp")
    if not isinstance(timestamp, str) or not _ISO_DATETIME.fullmatch(timestamp):
        errors.append("timestamp must be an ISO 8601 datetime with an offset")
    if event.get("type") != "score-create":
        return [*errors, "unsupported event type"]
    if event.get("metadata") is not None and _json_problem(event["metadata"]) is not None:
        errors.append("event metadata must be JSON")
    return errors + score_errors(event.get("body"))


def inferred_data_type(body: dict[str, Any]) -> str:
    """The data type Langfuse stores: the given one, or inferred from the value."""
    given = body.get("dataType")
    if isinstance(given, str):
        return given
    return "CATEGORICAL" if isinstance(body.get("value"), str) else "NUMERIC"


def stored_score(body: dict[str, Any]) -> dict[str, Any] | None:
    """The score Langfuse keeps from a valid body, or ``None`` when it drops it later, silently
    (a CORRECTION score on a session). CORRECTION scores are stored under the name "output"."""
    score = dict(body)
    score["dataType"] = inferred_data_type(score)
    if score["dataType"] == "CORRECTION":
        if score.get("sessionId") or score.get("datasetRunId"):
            return None
        score["name"] = CORRECTION_NAME
    return score
