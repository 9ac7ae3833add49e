"""A Langfuse-compatible receiver for tests — ours and our users'.

::

    from langfuse_otel_sessions.testing import LangfuseReceiver

    with LangfuseReceiver() as receiver:
        exporter = LangfuseSpanExporter(
            public_key=receiver.public_key, secret_key=receiver.secret_key, base_url=receiver.url
        )
        ...
        receiver.wait_for_spans(3)
        assert list(receiver.sessions()) == ["my-session"]

In pytest, import the fixture into a ``conftest.py``:
``from langfuse_otel_sessions.testing import langfuse_receiver``.

May import: top, export (Langfuse's reading rules and routes).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..export.coverage import Coverage
from ._model import (
    SessionView,
    TraceView,
    span_coverage,
    span_environment,
    span_release,
    span_session_id,
    span_tags,
    span_user_id,
    span_version,
)
from ._otlp import ReceivedSpan
from ._server import Fault, LangfuseReceiver, RecordedRequest
from ._view import render_session, render_sessions, render_trace

__all__ = [
    "Coverage",
    "Fault",
    "LangfuseReceiver",
    "ReceivedSpan",
    "RecordedRequest",
    "SessionView",
    "TraceView",
    "langfuse_receiver",
    "render_session",
    "render_sessions",
    "render_trace",
    "span_coverage",
    "span_environment",
    "span_release",
    "span_session_id",
    "span_tags",
    "span_user_id",
    "span_version",
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
