"""Interop with the Langfuse Python SDK 5.x across a real HTTP hop, both ways."""

from __future__ import annotations

import sys

import pytest
from opentelemetry import propagate

from langfuse_otel_sessions import current_session_id, session

from .conftest import make_traced
from .servers import langfuse_sdk_service, serve_wsgi, their_handler_attributes
from .test_trust_boundary import backend, get

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(sys.version_info < (3, 11), reason="langfuse 5 needs Python 3.11+"),
]
langfuse = pytest.importorskip("langfuse")


def test_a_langfuse_sdk_caller_puts_our_service_in_its_session() -> None:
    ours = make_traced(trust_remote_baggage=True)  # we trust our caller
    with serve_wsgi(backend(ours)) as url:
        with langfuse.propagate_attributes(
            session_id="lf-session", user_id="lf-user", as_baggage=True
        ):
            headers: dict[str, str] = {}
            propagate.inject(headers)
        answer = get(url, headers)
    assert answer["session"] == "lf-session"
    assert ours.session_of("handler") == "lf-session"
    assert ours.user_of("handler") == "lf-user"


def test_a_langfuse_sdk_service_reads_the_session_we_send() -> None:
    with langfuse_sdk_service() as (url, seen):
        with session("our-session", user_id="our-user"):
            assert current_session_id() == "our-session"
            headers: dict[str, str] = {}
            propagate.inject(headers)
        get(url, headers)
    attributes = their_handler_attributes(seen)
    assert attributes["session.id"] == "our-session"
    assert attributes["user.id"] == "our-user"
