"""Score validation and freezing, at the call: a score Langfuse would reject never leaves the
process, and later changes by the caller do not reach it (docs/scores.md has the rules)."""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..errors import InvalidScoreError

DATA_TYPES = frozenset({"NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT", "CORRECTION"})
MAX_ID_LENGTH = 800
MAX_TEXT_LENGTH = 500
#: A score's JSON body in UTF-8 bytes, so that each fits one ingestion request on its own.
MAX_SCORE_BYTES = 1_000_000
#: Nesting levels of objects and arrays in metadata (the top-level mapping is level 1).
MAX_METADATA_DEPTH = 20
#: What a queued score costs besides its strings (its dict and tuple, keys, numbers).
SCORE_OVERHEAD = 400
#: The most bytes one character of a string takes in JSON (a ``\\u0001`` escape).
_JSON_CHAR_BYTES = 6

_MAX = sys.float_info.max
_INFERRED = {bool: "BOOLEAN", int: "NUMERIC", float: "NUMERIC"}  # of a plain value, no type given
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
encode_json = _ENCODER.encode


class Score(NamedTuple):
    """A validated score: its JSON body as our own copy, the bytes it is counted as in the
    queue, and the call's time (epoch seconds)."""

    body: dict[str, Any]
    size: int
    timestamp: float


#: ``Score(...)`` without NamedTuple's ``__new__``, which is Python code (half the cost).
_new_score = tuple.__new__


_prefix = os.urandom(8).hex()
_counter = itertools.count()


def _new_prefix() -> None:
    global _prefix, _counter  # a forked child gets its own
    _prefix, _counter = os.urandom(8).hex(), itertools.count()


os.register_at_fork(after_in_child=_new_prefix)


def new_score_id() -> str:
    """16 random hex characters per process and a counter: unique like a UUID, far cheaper."""
    return _prefix + str(next(_counter))


def _utf8_size(text: str) -> int:
    """``text``'s length in UTF-8; :class:`InvalidScoreError` for a lone surrogate."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        raise InvalidScoreError("a string of the score is not valid Unicode") from None


def _json_number(value: object) -> int | float | None:
    """``value`` as a plain int/float JavaScript reads as the same finite number, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value) if -_MAX <= value <= _MAX else None
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    return None


def _typed_value(
    value: object, string_value: object, data_type: object
) -> tuple[str, float | int | str]:
    if value is not None and string_value is not None:
        raise InvalidScoreError("give either value or string_value, not both")
    if data_type is None:
        inferred = "BOOLEAN" if isinstance(value, bool) else "NUMERIC"
        data_type = "CATEGORICAL" if string_value is not None else inferred
    elif isinstance(data_type, str) and data_type.upper() in DATA_TYPES:
        data_type = data_type.upper()
    else:
        raise InvalidScoreError(f"data_type must be one of {', '.join(sorted(DATA_TYPES))}")
    if data_type == "NUMERIC":
        number = _json_number(value)
        if number is None:
            raise InvalidScoreError("a NUMERIC score needs a finite number (or a string_value)")
        return data_type, number
    if data_type == "BOOLEAN":
        number = int(value) if isinstance(value, bool) else _json_number(value)
        if number not in (0, 1):
            raise InvalidScoreError("a BOOLEAN score needs True/False or 0/1 as value")
        return data_type, int(number)
    text = string_value if string_value is not None else value
    if not isinstance(text, str):
        raise InvalidScoreError(f"a {data_type} score needs a string (string_value)")
    if data_type == "TEXT" and not 1 <= len(text) <= MAX_TEXT_LENGTH:
        raise InvalidScoreError(f"a TEXT score needs 1-{MAX_TEXT_LENGTH} characters")
    return data_type, text


def _json_copy(value: object, path: str, depth: int) -> object:
    """A copy of ``value`` made of dicts, lists, str, finite numbers, bools and ``None``."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, (int, float)):
        number = _json_number(value)
        if number is not None:
            return number
        problem = "a number that is not finite or beyond a double's range"
    elif not isinstance(value, (Mapping, list, tuple)):
        problem = f"a value of type {type(value).__name__}, which is not JSON"
    elif depth >= MAX_METADATA_DEPTH:
        problem = f"nested deeper than {MAX_METADATA_DEPTH} levels (or refers to itself)"
    elif not isinstance(value, Mapping):
        return [_json_copy(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    elif all(isinstance(key, str) for key in value):
        return {
            key: _json_copy(item, f"{path}.{key}" if path else key, depth + 1)
            for key, item in list(value.items())
        }
    else:
        problem = "a key that is not a string"
    raise InvalidScoreError(f"metadata is not plain JSON at {path or 'metadata'!r}: {problem}")


def _frozen_metadata(metadata: object) -> tuple[object, int]:
    """A plain-JSON copy of ``metadata`` and its size in UTF-8 JSON."""
    if not isinstance(metadata, Mapping):
        raise InvalidScoreError("metadata must be a mapping")
    try:
        copy = _json_copy(metadata, "", 0)
        return copy, len(encode_json(copy).encode())
    except InvalidScoreError:
        raise
    except UnicodeEncodeError:
        message = "a string of the metadata is not valid Unicode"
    except Exception as error:  # noqa: BLE001 - changed while read, a mapping that raises
        message = f"metadata could not be read: {type(error).__name__}: {error}"[:300]
    raise InvalidScoreError(message)


def build_score(  # noqa: PLR0912, PLR0917 - the common call inline; defaults bound by position
    body: dict[str, Any],
    /,
    name: object,
    value: object = None,
    string_value: object = None,
    data_type: object = None,
    comment: object = None,
    id: object = None,
    config_id: object = None,
    metadata: object = None,
) -> Score:
    """Validate and freeze a score for ``body``'s target (a new ``{"sessionId": ...}`` or a
    trace's ids), completed in place; raises :class:`InvalidScoreError`."""
    if not isinstance(name, str) or not name or name.isspace():
        raise InvalidScoreError("name must be a non-empty string")
    if id is None:
        id = _prefix + str(next(_counter))  # new_score_id(), inlined: the call is the cost
    elif not isinstance(id, str) or not 1 <= len(id) <= MAX_ID_LENGTH or "\r" in id:
        raise InvalidScoreError(f"id must be a string of 1-{MAX_ID_LENGTH} characters without CR")
    inferred = _INFERRED.get(type(value)) if data_type is None and string_value is None else None
    if inferred and -_MAX <= value <= _MAX:  # type: ignore[operator]  # finite: inline
        resolved_type, resolved_value = inferred, +value  # type: ignore[operator]  # +True is 1
    else:
        resolved_type, resolved_value = _typed_value(value, string_value, data_type)
    text = name + id + "".join(body.values())
    size = len(text) if text.isascii() else _utf8_size(text)
    if isinstance(resolved_value, str):
        size += _utf8_size(resolved_value)
    body["id"], body["name"] = id, name
    body["value"], body["dataType"] = resolved_value, resolved_type
    if comment is not None or config_id is not None:  # rare: the common call skips the loop
        for key, field in (("comment", comment), ("configId", config_id)):
            if field is None:
                continue
            if not isinstance(field, str):
                raise InvalidScoreError(f"{key} must be a string")
            body[key] = field
            size += _utf8_size(field)
    if resolved_type == "CORRECTION" and ("sessionId" in body or config_id is not None):
        raise InvalidScoreError(
            "a CORRECTION score goes on a trace or an observation (Langfuse drops CORRECTION "
            "scores on sessions), without config_id"
        )
    if metadata is not None:
        body["metadata"], metadata_size = _frozen_metadata(metadata)
        size += metadata_size
    if size * _JSON_CHAR_BYTES + SCORE_OVERHEAD > MAX_SCORE_BYTES:  # may be too large: measure
        encoded = len(encode_json(body).encode())
        if encoded > MAX_SCORE_BYTES:
            raise InvalidScoreError(
                f"the score is {encoded:,} bytes as JSON; at most {MAX_SCORE_BYTES:,} are sent "
                "(comment, string value and metadata together)"
            )
    return _new_score(Score, (body, size + SCORE_OVERHEAD, time.time()))
