"""The span workloads the exporter benchmarks share, made with the real SDK.

* ``realistic``: a chat service's traces. Each has a server span, a retrieval step and two LLM
  calls with ``gen_ai.*`` attributes, 200-2,000-character prompts and completions and a choice
  event; the session and user are set by ``session()`` after the server span started (so the
  mapping completes the root, as in a real app with the middleware inside the instrumentation).
* ``small``: spans with three short attributes, the shape of plain web or database spans.

Prompts and completions are slices of real English prose (Python's own help topics, shipped with
the interpreter), so compression meets the redundancy of text, not of a ten-word loop.
"""

from __future__ import annotations

import random

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from langfuse_otel_sessions import SessionSpanProcessor, session


def _corpus() -> str:
    from pydoc_data.topics import topics  # noqa: PLC0415 - only the benchmarks need it

    return " ".join(topics[name] for name in sorted(topics))


def _text(rng: random.Random, corpus: str, low: int, high: int) -> str:
    length = rng.randint(low, high)
    start = rng.randrange(len(corpus) - length)
    return corpus[start : start + length]


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "chat-api", "deployment.environment": "prod"})
    )
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def realistic(spans: int = 512, seed: int = 7) -> list[ReadableSpan]:
    """``spans`` finished spans of chat traces (4 spans a trace)."""
    rng = random.Random(seed)
    words = _corpus()
    provider, memory = _provider()
    server = provider.get_tracer("opentelemetry.instrumentation.fastapi", "0.66b1")
    llm = provider.get_tracer("openinference.instrumentation.openai", "0.1.30")
    for turn in range((spans + 3) // 4):
        conversation = turn // 5
        with server.start_as_current_span(
            "POST /chat",
            kind=SpanKind.SERVER,
            attributes={
                "http.route": "/chat",
                "http.request.method": "POST",
                "url.scheme": "https",
            },
        ) as root:
            with session(
                f"conv-{conversation:06d}", user_id=f"user-{conversation % 97}@example.com"
            ):
                with server.start_as_current_span(
                    "retrieve", attributes={"db.system": "pgvector", "retrieval.documents": 4}
                ):
                    pass
                for call in range(2):
                    prompt = _text(rng, words, 200, 2000)
                    answer = _text(rng, words, 200, 2000)
                    with llm.start_as_current_span(
                        "chat gpt-4o",
                        kind=SpanKind.CLIENT,
                        attributes={
                            "gen_ai.system": "openai",
                            "gen_ai.operation.name": "chat",
                            "gen_ai.request.model": "gpt-4o",
                            "gen_ai.response.model": "gpt-4o-2024-08-06",
                            "gen_ai.request.temperature": 0.2,
                            "gen_ai.usage.input_tokens": len(prompt) // 4,
                            "gen_ai.usage.output_tokens": len(answer) // 4,
                            "input.value": prompt,
                            "output.value": answer,
                            "llm.call": call,
                        },
                    ) as generation:
                        generation.add_event("gen_ai.choice", {"index": 0, "finish_reason": "stop"})
            root.set_attribute("http.response.status_code", 200)
    finished = list(memory.get_finished_spans())[:spans]
    provider.shutdown()
    return finished


def small(spans: int = 512) -> list[ReadableSpan]:
    """``spans`` finished spans with three short attributes each, 8 spans a trace."""
    provider, memory = _provider()
    tracer = provider.get_tracer("app")
    for trace in range((spans + 7) // 8):
        with tracer.start_as_current_span("GET /items", attributes={"trace": trace}):
            for step in range(7):
                tracer.start_span(
                    f"query {step}",
                    attributes={"db.system": "postgresql", "rows": step, "ok": True},
                ).end()
    finished = list(memory.get_finished_spans())[:spans]
    provider.shutdown()
    return finished


WORKLOADS = {"realistic": realistic, "small": small}
