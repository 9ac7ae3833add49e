"""The public exception types.

::

    ValueError
    ├── InvalidIdError           a session or user id that Langfuse would not group by
    ├── InvalidScoreError        a score Langfuse would reject (raised before anything is queued)
    └── ConfigurationError       a bad explicit option (constructors raise it; env values only warn)

Both subclass ``ValueError`` so callers may catch either the precise type or the builtin.
"""

from __future__ import annotations


class InvalidIdError(ValueError):
    """A session or user id is empty, too long, not a string, or contains control characters."""


class InvalidScoreError(ValueError):
    """A score argument Langfuse would reject: raised at call time, nothing is queued."""


class ConfigurationError(ValueError):
    """An explicit configuration argument is invalid."""
