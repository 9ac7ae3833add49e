"""Langfuse's score schema, as its ingestion validates it: written from Langfuse's schema apart
from the package's own validation, so the receiver catches what our client gets wrong. Numbers
are what JavaScript reads: an integer beyond a double's range is ``Infinity``, refused."""

from __future__ import annotations

import re
import sys
from typing import Any

_DATA_TYPES = ("BOOLEAN", "CATEGORICAL", "CORRECTION", "NUMERIC", "TEXT")  # a tuple: [] is no crash
_TARGETS = ("sessionId", "traceId", "datasetRunId")
#: ``z.iso.datetime({offset: true})``: a date, a time, optional fraction, ``Z`` or an offset.
_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)", re.ASCII
)


def _is_number(value: object) -> bool:
    """Finite for JavaScript: NaN, infinities and integers beyond a double's range are not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= sys.float_info.max


def _finite(value: object) -> bool:
    """Every number in a parsed JSON value is finite for JavaScript (walked without recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list)):
            stack.extend(item.values() if isinstance(item, dict) else item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool) and not _is_number(item):
            return False
    return True


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 800 and "\r" not in value


def _value_error(data_type: object, value: object) -> str | None:  # noqa: PLR0911 - one per rule
    if data_type is None and not (_is_number(value) or isinstance(value, str)):
        return "value must be a number or a string"
    if data_type is not None and data_type not in _DATA_TYPES:
        return "dataType is not one of " + ", ".join(_DATA_TYPES)
    if data_type == "NUMERIC" and not _is_number(value):
        return "NUMERIC value must be a finite number"
    if data_type == "BOOLEAN" and (not _is_number(value) or value not in (0, 1)):
        return "BOOLEAN value must be 0 or 1"
    if data_type in ("CATEGORICAL", "CORRECTION") and not isinstance(value, str):
        return f"{data_type} value must be a string"
    if data_type == "TEXT" and (not isinstance(value, str) or not 1 <= len(value) <= 500):
        return "TEXT value must be a string of 1-500 characters"
    return None


def score_errors(body: object) -> list[str]:
    """What Langfuse would reject in a score body; empty when it is valid."""
    if not isinstance(body, dict):
        return ["body must be an object"]
    targets = [key for key in _TARGETS if body.get(key)]
    checks = {
        "id must be a string of 1-800 characters without CR": body.get("id") is None
        or _is_id(body["id"]),
        "name must be a non-empty string": isinstance(body.get("name"), str) and body["name"],
        "observationId needs a traceId": not body.get("observationId") or "traceId" in targets,
        "exactly one of sessionId, traceId, datasetRunId is required": len(targets) == 1,
        "a CORRECTION score cannot have a configId": body.get("dataType") != "CORRECTION"
        or body.get("configId") is None,
        "metadata must be JSON with finite numbers": _finite(body.get("metadata")),
    }
    errors = [error for error, passed in checks.items() if not passed]
    for key in (*_TARGETS, "observationId", "comment", "configId", "environment"):
        if body.get(key) is not None and not isinstance(body[key], str):
            errors.append(f"{key} must be a string")
    value_error = _value_error(body.get("dataType"), body.get("value"))
    return errors + ([value_error] if value_error else [])


def event_errors(event: object) -> list[str]:
    """What Langfuse would reject in one ingestion event (envelope and score body)."""
    if not isinstance(event, dict):
        return ["event must be an object"]
    timestamp = event.get("timestamp")
    checks = {
        "event id must be a string of 1-800 characters without CR": _is_id(event.get("id")),
        "timestamp must be an ISO 8601 datetime with an offset": isinstance(timestamp, str)
        and _ISO_DATETIME.fullmatch(timestamp),
        "event metadata must be JSON": _finite(event.get("metadata")),
    }
    errors = [error for error, passed in checks.items() if not passed]
    if event.get("type") != "score-create":
        return [*errors, "unsupported event type"]
    return errors + score_errors(event.get("body"))


def stored_score(body: dict[str, Any]) -> dict[str, Any] | None:
    """The score Langfuse keeps from a valid body: ``dataType`` given or inferred from the value;
    a CORRECTION score is named "output", and dropped later, silently, on a session or run."""
    data_type = body.get("dataType")
    if not isinstance(data_type, str):
        data_type = "CATEGORICAL" if isinstance(body.get("value"), str) else "NUMERIC"
    score = {**body, "dataType": data_type}
    if data_type == "CORRECTION":
        if score.get("sessionId") or score.get("datasetRunId"):
            return None
        score["name"] = "output"
    return score
