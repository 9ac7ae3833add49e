"""A Langfuse-compatible receiver for tests, ours and our users' (``docs/testing.md``).
May import: top, export (Langfuse's reading rules and routes)."""

from __future__ import annotations

from collections.abc import Iterator

from ._model import (
    ReceivedSpan,
    SessionView,
    TraceView,
    span_environment,
    span_session_id,
    span_tags,
)
from ._page import render_sessions
from ._server import Fault, LangfuseReceiver, RecordedRequest

__all__ = [
    "Fault",
    "LangfuseReceiver",
    "ReceivedSpan",
    "RecordedRequest",
    "SessionView",
    "TraceView",
    "langfuse_receiver",
    "render_sessions",
    "span_environment",
    "span_session_id",
    "span_tags",
]

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional for this module
    pass
else:

    @pytest.fixture
    def langfuse_receiver() -> Iterator[LangfuseReceiver]:
        """A started :class:`LangfuseReceiver`, stopped after the test."""
        with LangfuseReceiver() as receiver:
            yield receiver
