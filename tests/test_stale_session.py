"""A request that handles one session and then another never hands the earlier one to a span
exported later (found by an outside fidelity review)."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from langfuse_otel_sessions import LangfuseSpanExporter, SessionSpanProcessor, session
from langfuse_otel_sessions.testing import LangfuseReceiver


def test_a_root_exported_after_two_sessions_gets_neither() -> None:
    with LangfuseReceiver() as receiver:
        exporter = LangfuseSpanExporter(
            public_key=receiver.public_key, secret_key=receiver.secret_key, base_url=receiver.url
        )
        provider = TracerProvider()
        provider.add_span_processor(SessionSpanProcessor())
        batches = BatchSpanProcessor(exporter)
        provider.add_span_processor(batches)
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("websocket /chat"):
            with session("A"), tracer.start_as_current_span("turn A"):
                pass
            assert batches.force_flush()
            with session("B"), tracer.start_as_current_span("turn B"):
                pass
            assert batches.force_flush()
        provider.shutdown()
        sessions = {
            span.name: span.attributes.get("langfuse.session.id") for span in receiver.spans()
        }
    assert sessions["turn A"] == "A"
    assert sessions["turn B"] == "B"
    assert sessions["websocket /chat"] in (None, "")
