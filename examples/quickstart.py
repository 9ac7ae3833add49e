"""Quickstart: every span of a conversation lands in its Langfuse session.

With LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY set, spans go to Langfuse. Without them, they go
to a local Langfuse-compatible receiver, and the script prints what Langfuse would show
(``--view``: and keeps it open as a page in the browser until Ctrl-C).
"""

from __future__ import annotations

import sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from langfuse_otel_sessions import (
    LangfuseSpanExporter,
    Session,
    SessionSpanProcessor,
    flush_scores,
    install_baggage_guard,
    score_session,
    session,
)

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _local_langfuse import langfuse_or_local

provider = TracerProvider()
app = provider.get_tracer("chat-app")
llm_client = provider.get_tracer("opentelemetry.instrumentation.openai")  # a third party's spans


def answer(question: str) -> str:
    with app.start_as_current_span("answer") as span:
        span.set_attribute("langfuse.trace.input", question)
        with llm_client.start_as_current_span("chat gpt-4o") as call:
            call.set_attribute("gen_ai.request.model", "gpt-4o")
            call.set_attribute("gen_ai.usage.input_tokens", 12)
            call.set_attribute("gen_ai.usage.output_tokens", 30)
        reply = f"echo: {question}"
        span.set_attribute("langfuse.trace.output", reply)
        return reply


with langfuse_or_local():
    provider.add_span_processor(SessionSpanProcessor())  # stamps the session on every span
    install_baggage_guard()  # ids leave the process only where you allow (configure() does this)
    provider.add_span_processor(BatchSpanProcessor(LangfuseSpanExporter()))
    for user, questions in {"alice": ["hi", "what is OTel?"], "bob": ["hello"]}.items():
        conversation = Session.start(metadata={"channel": "web"})
        with session(conversation, user_id=user):
            for question in questions:
                answer(question)
        score_session(conversation, name="helpful", value=user == "alice")  # e.g. a thumbs up
    provider.shutdown()  # flushes the batch processor
    flush_scores(timeout=5)  # scores are sent in the background; exit would flush them too
