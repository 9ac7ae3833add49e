"""Score validation and freezing, at call time: a score Langfuse would reject never leaves the
process, and nothing the caller does afterwards can change or break the one that does.

Rules from Langfuse's score schema: non-empty name; exactly one
target; ``id`` of 1-800 characters without CR; NUMERIC a finite number, BOOLEAN 0 or 1 (a Python
``bool`` is sent as 1/0), CATEGORICAL a string, TEXT a string of 1-500 characters, CORRECTION a
string without ``configId`` and never on a session (Langfuse would drop it silently); the data
type inferred when absent (bool -> BOOLEAN, int/float -> NUMERIC, ``string_value`` ->
CATEGORICAL). Numbers must survive JavaScript's ``JSON.parse`` (finite, within a double's range),
metadata must be plain JSON of bounded depth, and a whole score at most ``MAX_SCORE_BYTES``.

The score is serialised here, on the caller's thread: :attr:`Score.encoded` is the JSON body the
sender posts, byte for byte.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

from ..errors import InvalidScoreError

DataType = Literal["NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT", "CORRECTION"]
DATA_TYPES: frozenset[str] = frozenset({"NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT", "CORRECTION"})
MAX_ID_LENGTH = 800
MAX_TEXT_LENGTH = 500
#: A score's JSON body, in UTF-8 bytes (comment, string value and metadata together). Langfuse
#: takes about 3.5 MB per ingestion request; a score must fit in one request on its own.
MAX_SCORE_BYTES = 1_000_000
#: Nesting levels of objects and arrays in metadata (the top-level mapping is level 1).
MAX_METADATA_DEPTH = 20

_LARGEST_DOUBLE = sys.float_info.max
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _not_json(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON")


def _make_fast_encode() -> Callable[[object], str]:
    """The C encoder without its per-call setup and cycle check (the body is our own acyclic
    copy): half the cost of ``JSONEncoder.encode``, which remains the fallback."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _ENCODER.encode
    sample = {"a": [1, 2.5, "é", None, True]}
    try:
        encoder = make(
            None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, False
        )

        def encode(body: object) -> str:
            return "".join(encoder(body, 0))

        same = encode(sample) == _ENCODER.encode(sample)
    except Exception:  # noqa: BLE001 - an interpreter whose internals differ
        same = False
    return encode if same else _ENCODER.encode


_encode = _make_fast_encode()


class FrozenScore(NamedTuple):
    """All the sender keeps of a score: its id, its name (cut to 100 characters, for log
    lines), the JSON body it posts, as bytes, and the call's time (epoch seconds). Immutable and
    not tracked by the garbage collector: a queued score costs about its bytes, nothing more."""

    id: str
    name: str
    encoded: bytes
    timestamp: float


class Score(NamedTuple):
    """A validated score: ``frozen`` is what is sent, ``body`` the same fields as Python values
    (for the span events, made at the call)."""

    body: Mapping[str, Any]
    frozen: FrozenScore

    @property
    def id(self) -> str:
        return self.frozen.id


class _ScoreIds:
    """Score ids without a system call per score: 16 random hex characters per process (new
    after ``fork``) and a 16-hex-character counter; unique like a UUID, ten times cheaper."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def new(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


new_score_id = _ScoreIds().new


def stable_score_id(target_id: str, name: str, key: str) -> str:
    """A deterministic score id from the target (session or trace id), the score name and a key
    of yours (a message id, a feedback form id): the same feedback sent twice updates the
    score instead of adding a second one."""
    digest = hashlib.sha256("\x1f".join((target_id, name, key)).encode()).hexdigest()
    return f"score_{digest[:32]}"


def _json_number(value: object) -> int | float | None:
    """``value`` as a plain int/float JavaScript reads back as the same finite number, else
    ``None`` (bools, NaN, infinities, integers beyond a double's range, other types)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value) if -_LARGEST_DOUBLE <= value <= _LARGEST_DOUBLE else None
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    return None


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
        number = _json_number(value)
        if number is None:
            raise InvalidScoreError(
                "a NUMERIC score needs a finite number within a double's range as value"
            )
        return data_type, number
    if data_type == "BOOLEAN":
        if isinstance(value, bool):
            return data_type, int(value)
        number = _json_number(value)
        if number is not None and number in (0, 1):
            return data_type, int(number)
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


class _NotJson(Exception):
    """Metadata that is not plain JSON: the reason, and the path to it (built on the way out)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


def _json_copy(value: object, depth: int) -> object:
    """A copy of ``value`` made of dicts, lists, str, finite numbers, bools and ``None``."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, (int, float)):
        number = _json_number(value)
        if number is None:
            raise _NotJson("a number that is not finite or beyond a double's range")
        return number
    if isinstance(value, (Mapping, list, tuple)):
        if depth >= MAX_METADATA_DEPTH:
            raise _NotJson(f"nested deeper than {MAX_METADATA_DEPTH} levels (or refers to itself)")
        if isinstance(value, Mapping):
            copy: dict[str, object] = {}
            for key, item in list(value.items()):
                if not isinstance(key, str):
                    raise _NotJson(f"a key that is not a string ({type(key).__name__})")
                copy[key] = _json_item(key, item, depth + 1)
            return copy
        return [_json_item(f"[{index}]", item, depth + 1) for index, item in enumerate(value)]
    raise _NotJson(f"a value of type {type(value).__name__}, which is not JSON")


def _json_item(step: str, item: object, depth: int) -> object:
    try:
        return _json_copy(item, depth)
    except _NotJson as error:
        error.path.append(step)
        raise


def _frozen_metadata(metadata: object) -> dict[str, object]:
    if not isinstance(metadata, Mapping):
        raise InvalidScoreError("metadata must be a mapping")
    try:
        return _json_copy(metadata, 0)  # type: ignore[return-value]  # a Mapping gives a dict
    except _NotJson as error:
        where = ".".join(reversed(error.path)).replace(".[", "[") or "metadata"
        message = f"metadata is not plain JSON at {where!r}: {error.reason}"
        raise InvalidScoreError(message) from None
    except Exception as error:  # noqa: BLE001 - changed while read, a mapping that raises, a deep stack
        message = f"metadata could not be read: {type(error).__name__}: {error}"
        raise InvalidScoreError(message[:300]) from None


def _encoded(body: Mapping[str, Any]) -> bytes:
    try:
        encoded = _encode(body).encode()
    except UnicodeEncodeError:
        raise InvalidScoreError("a string of the score is not valid Unicode") from None
    except (TypeError, ValueError, RecursionError) as error:  # unreachable after validation
        raise InvalidScoreError(f"the score is not JSON: {error}") from None
    if len(encoded) > MAX_SCORE_BYTES:
        raise InvalidScoreError(
            f"the score is {len(encoded):,} bytes as JSON; at most {MAX_SCORE_BYTES:,} are sent "
            "(comment, string value and metadata together)"
        )
    return encoded


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
    """Validate everything, copy and serialise the score; raises :class:`InvalidScoreError`."""
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
    if resolved_type == "CORRECTION":
        if "sessionId" in target:
            raise InvalidScoreError(
                "Langfuse drops CORRECTION scores on sessions: score a trace or an observation"
            )
        if config_id is not None:
            raise InvalidScoreError("a CORRECTION score takes no config_id")
    body: dict[str, Any] = {
        "id": id if id is not None else new_score_id(),
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
        body["metadata"] = _frozen_metadata(metadata)
    frozen = FrozenScore(body["id"], name[:100], _encoded(body), time.time())
    return Score(body, frozen)
