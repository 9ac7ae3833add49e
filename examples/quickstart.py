"""Quickstart: every span of a conversation lands in its Langfuse session.

Run it with no Langfuse account: spans are kept in memory and printed grouped by session, as
Langfuse would group them.
"""

from __future__ import annotations

from collections import defaultdict

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langfuse_otel_sessions import Session, SessionSpanProcessor, session

provider = TracerProvider()
provider.add_span_processor(SessionSpanProcessor())  # the one line this package asks for
exporter = InMemorySpanExporter()
provider.add_span_processor(SimpleSpanProcessor(exporter))

app = provider.get_tracer("chat-app")
llm_client = provider.get_tracer("opentelemetry.instrumentation.openai")  # a third party's spans


def answer(question: str) -> str:
    with app.start_as_current_span("answer"):
        with llm_client.start_as_current_span("chat gpt-4o") as call:
            call.set_attribute("gen_ai.request.model", "gpt-4o")
        return f"echo: {question}"


for user, questions in {"alice": ["hi", "what is OTel?"], "bob": ["hello"]}.items():
    conversation = Session.start(metadata={"channel": "web"})
    with session(conversation, user_id=user):
        for question in questions:
            answer(question)

grouped: dict[str, list[str]] = defaultdict(list)
for span in exporter.get_finished_spans():
    attributes = span.attributes or {}
    key = f"{attributes.get('langfuse.session.id')} (user {attributes.get('langfuse.user.id')})"
    grouped[key].append(span.name)
for key, names in grouped.items():
    print(f"session {key}: {len(names)} spans: {', '.join(names)}")
