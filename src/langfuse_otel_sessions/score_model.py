"""Score validation, at call time: a score Langfuse would reject never leaves the process.

Rules from Langfuse's score schema: non-empty name; exactly one
target; ``id`` of 1-800 characters without CR; NUMERIC a finite number, BOOLEAN 0 or 1 (a Python
``bool`` is sent as 1/0), CATEGORICAL a string, TEXT a string of 1-500 characters; the data type
inferred when absent (bool -> BOOLEAN, int/float -> NUMERIC, ``string_value`` -> CATEGORICAL).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import InvalidScoreError

DataType = Literal["NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT"]
DATA_TYPES: frozenset[str] = frozenset({"NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT"})
MAX_ID_LENGTH = 800
MAX_TEXT_LENGTH = 500


@dataclass(frozen=True)
class Score:
    """A validated score: the JSON body Langfuse's score API takes."""

    body: Mapping[str, Any]

    @property
    def id(self) -> str:
        return str(self.body["id"])


def stable_score_id(target_id: str, name: str, key: str) -> str:
    """A deterministic score id from the target (session or trace id), the score name and a key
    of yours (a message id, a feedback form id): the same feedback sent twice updates the
    score instead of adding a second one."""
    digest = hashlib.sha256("\x1f".join((target_id, name, key)).encode()).hexdigest()
    return f"score_{digest[:32]}"


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _inferred_type(value: object, string_value: str | None) -> str:
    if string_value is not None:
        return "CATEGORICAL"
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, (int, float)):
        return "NUMERIC"
    raise InvalidScoreError("a score needs a number, a bool or a string_value")


def _typed_value(
    value: object, string_value: str | None, data_type: str | None
) -> tuple[str, float | int | str]:
    if value is not None and string_value is not None:
        raise InvalidScoreError("give either value or string_value, not both")
    if data_type is None:
        data_type = _inferred_type(value, string_value)
    elif data_type not in DATA_TYPES:
        raise InvalidScoreError(f"data_type must be one of {', '.join(sorted(DATA_TYPES))}")
    if data_type == "NUMERIC":
        if not _finite_number(value):
            raise InvalidScoreError("a NUMERIC score needs a finite number as value")
        return data_type, value  # type: ignore[return-value]  # checked just above
    if data_type == "BOOLEAN":
        if isinstance(value, bool):
            return data_type, int(value)
        if _finite_number(value) and value in (0, 1):
            return data_type, int(value)
        raise InvalidScoreError("a BOOLEAN score needs True/False or 0/1 as value")
    text = string_value if string_value is not None else value
    if not isinstance(text, str):
        raise InvalidScoreError(f"a {data_type} score needs a string (string_value)")
    if data_type == "TEXT" and not 1 <= len(text) <= MAX_TEXT_LENGTH:
        raise InvalidScoreError(f"a TEXT score needs 1-{MAX_TEXT_LENGTH} characters")
    return data_type, text


def _optional_string(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidScoreError(f"{name} must be a string")


def build_score(
    target: Mapping[str, str],
    *,
    name: str,
    value: object = None,
    string_value: str | None = None,
    data_type: str | None = None,
    comment: str | None = None,
    id: str | None = None,
    config_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Score:
    """Validate everything and build the score body; raises :class:`InvalidScoreError`."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidScoreError("name must be a non-empty string")
    if id is not None and (
        not isinstance(id, str) or not 1 <= len(id) <= MAX_ID_LENGTH or "\r" in id
    ):
        raise InvalidScoreError(f"id must be a string of 1-{MAX_ID_LENGTH} characters without CR")
    _optional_string("string_value", string_value)
    _optional_string("comment", comment)
    _optional_string("config_id", config_id)
    if isinstance(data_type, str):
        data_type = data_type.upper()
    resolved_type, resolved_value = _typed_value(value, string_value, data_type)
    body: dict[str, Any] = {
        "id": id if id is not None else uuid.uuid4().hex,
        "name": name,
        **target,
        "value": resolved_value,
        "dataType": resolved_type,
    }
    if comment is not None:
        body["comment"] = comment
    if config_id is not None:
        body["configId"] = config_id
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise InvalidScoreError("metadata must be a mapping")
        try:
            json.dumps(metadata, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise InvalidScoreError(f"metadata must be JSON-serialisable: {error}") from None
        body["metadata"] = dict(metadata)
    return Score(body)
