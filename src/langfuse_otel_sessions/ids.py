"""The rule for text (non-empty ``str``, at most ``max_length`` characters, no control character
or lone surrogate) and for ids (no whitespace at either end too), stated once; and Langfuse's rule
for environment names."""

from __future__ import annotations

import re
import secrets
from typing import NamedTuple

from .attributes import MAX_ENVIRONMENT_LENGTH
from .errors import InvalidIdError

SESSION_ID_PREFIX = "session_"
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# What undecodable request bytes become (``surrogateescape``); no exporter could encode them.
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
_LANGFUSE_PREFIXES = re.compile(r"^(?:langfuse[-_]?)+")
_ENVIRONMENT = re.compile(r"[a-z0-9_-]+")
_GENERATED_SESSION_ID = re.compile(SESSION_ID_PREFIX + r"[0-9a-f]{24}")


def new_session_id() -> str:
    """``"session_"`` followed by 24 lowercase hex characters from the OS CSPRNG."""
    return SESSION_ID_PREFIX + secrets.token_hex(12)


def is_generated_session_id(value: str) -> bool:
    """Whether ``value`` has the exact form :func:`new_session_id` gives."""
    return _GENERATED_SESSION_ID.fullmatch(value) is not None


def text_problem(value: object, max_length: int) -> str | None:
    """Why ``value`` cannot be stamped as text, or ``None`` when it can. Never raises."""
    if type(value) is str and 0 < len(value) <= max_length and value.isprintable():
        return None  # printable: no control character, no lone surrogate (the usual case)
    if not isinstance(value, str):
        return f"not a string ({type(value).__name__})"
    if not value:
        return "empty"
    if len(value) > max_length:
        return f"longer than {max_length} characters ({len(value)})"
    if _CONTROL_CHARACTER.search(value):
        return "contains control characters"
    return "not valid UTF-8" if _LONE_SURROGATE.search(value) else None


def id_problem(value: object, max_length: int) -> str | None:
    """Why ``value`` cannot be an id, or ``None`` when it can. Never raises."""
    problem = text_problem(value, max_length)
    if problem is None and value != value.strip():  # type: ignore[attr-defined]  # a str
        return "whitespace at either end"  # baggage strips it: two ids for one session
    return problem


def check_id(value: object, max_length: int, what: str = "session id") -> str:
    """``value`` if it is a valid id, else :class:`InvalidIdError` (never echoing the value)."""
    problem = id_problem(value, max_length)
    if problem is not None:
        raise InvalidIdError(f"invalid {what}: {problem}")
    return value  # type: ignore[return-value]  # id_problem proved it is a str


def environment_name(value: object) -> str | None:
    """The environment Langfuse's server stores for ``value`` (``None``: it stores ``default``)."""
    if not isinstance(value, str):
        return None
    cut = _LANGFUSE_PREFIXES.sub("", value.lower())[:MAX_ENVIRONMENT_LENGTH]
    return cut if _ENVIRONMENT.fullmatch(cut) else None


class TraceIds(NamedTuple):
    """A session and user id (either may be ``None``), as spans carry them."""

    session_id: str | None
    user_id: str | None
