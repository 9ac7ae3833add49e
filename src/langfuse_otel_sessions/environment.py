"""Options from environment variables: a bad value warns, naming the variable, and falls back."""

from __future__ import annotations

import os

from ._logging import logger

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_bool(name: str, default: bool) -> bool:
    """``true/1/yes/on`` or ``false/0/no/off`` (any case); anything else warns."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    logger.warning("Ignoring %s=%r: expected true or false; using %s", name, raw, default)
    return default


def env_keys(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list of keys; blanks are dropped. Unset gives the default."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return tuple(part.strip() for part in raw.split(",") if part.strip())
