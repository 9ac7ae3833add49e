"""Interop with the Langfuse Python SDK 5.x across a real HTTP hop, both ways."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from opentelemetry import propagate
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langfuse_otel_sessions import current_session_id, session

from .conftest import make_traced
from .servers import serve_wsgi
from .test_trust_boundary import StartResponse, backend, get

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
    from langfuse._client.span_processor import LangfuseSpanProcessor

    seen = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(
        LangfuseSpanProcessor(
            public_key="pk-lf-test",
            secret_key="sk-lf-test",
            base_url="http://127.0.0.1:9",
            span_exporter=InMemorySpanExporter(),
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(seen))
    tracer = provider.get_tracer("their-service")

    def their_app(environ: dict[str, Any], start_response: StartResponse) -> Any:
        with tracer.start_as_current_span("their handler"):
            pass
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"ok": True}).encode()]

    with serve_wsgi(OpenTelemetryMiddleware(their_app, tracer_provider=provider)) as url:
        with session("our-session", user_id="our-user"):
            assert current_session_id() == "our-session"
            headers: dict[str, str] = {}
            propagate.inject(headers)
        get(url, headers)
    (handler,) = [s for s in seen.get_finished_spans() if s.name == "their handler"]
    attributes = handler.attributes or {}
    assert attributes["session.id"] == "our-session"
    assert attributes["user.id"] == "our-user"
