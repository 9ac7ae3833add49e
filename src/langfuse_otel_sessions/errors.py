"""The public exception types, all ``ValueError`` subclasses."""

from __future__ import annotations


class InvalidIdError(ValueError):
    """A session or user id is empty, too long, not a string, or contains control characters."""


class InvalidScoreError(ValueError):
    """A score argument Langfuse would reject: raised at call time, nothing is queued."""


class ConfigurationError(ValueError):
    """An explicit configuration argument is invalid."""
