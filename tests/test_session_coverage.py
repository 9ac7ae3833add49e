"""Session coverage and the LLM-span export filter, with a real LLM instrumentation
(opentelemetry-instrumentation-openai-v2) calling a loopback OpenAI-compatible server from
FastAPI requests: a plain call, a streaming call with usage, a background task, a thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the framework stack is in requirements/test.txt")
pytest.importorskip("openai", reason="openai and its instrumentation are test pins")
import httpx
import openai
from fastapi import BackgroundTasks, FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from langfuse_otel_sessions import (
    ASGISessionMiddleware,
    ConfigurationError,
    LangfuseSpanExporter,
    SessionSpanProcessor,
    configure,
)
from langfuse_otel_sessions.testing import LangfuseReceiver, span_session_id

from .openai_server import COMPLETION_TOKENS, PROMPT_TOKENS, openai_app
from .servers import serve_asgi, serve_wsgi

TOKENS = PROMPT_TOKENS + COMPLETION_TOKENS
LLM_SCOPE = "opentelemetry.util.genai.handler"  # where openai-v2 2.4b0 makes its spans
SERVER_SCOPE = "opentelemetry.instrumentation.fastapi"


def chat_app(client: Any) -> FastAPI:
    app = FastAPI()

    def call() -> None:
        client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}]
        )

    @app.get("/plain")
    def plain() -> dict[str, str]:
        call()
        return {}

    @app.get("/stream")
    def stream() -> dict[str, str]:
        chunks = client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for _ in chunks:
            pass
        return {}

    @app.get("/background")
    def background(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(call)
        return {}

    @app.get("/thread")
    def in_thread() -> dict[str, str]:
        worker = threading.Thread(target=call)  # a plain thread: the context is not copied
        worker.start()
        worker.join()
        return {}

    return app


class _BackgroundDone(SpanProcessor):
    """Starlette runs a background task after the response: this says when its span ended."""

    def __init__(self) -> None:
        self.ended = threading.Event()

    def on_end(self, span: ReadableSpan) -> None:
        if span.name.startswith("BackgroundTask"):
            self.ended.set()


class ChatService:
    """A FastAPI app with the session middleware, traced by FastAPI's and OpenAI's
    instrumentations, exporting to a Langfuse receiver."""

    def __init__(
        self, receiver: LangfuseReceiver, configured: bool = False, **options: Any
    ) -> None:
        self.receiver = receiver
        self.exporter = LangfuseSpanExporter(
            public_key=receiver.public_key,
            secret_key=receiver.secret_key,
            base_url=receiver.url,
            **options,
        )
        self.provider = TracerProvider()
        if configured:
            configure(self.provider, exporter=self.exporter)
        else:
            self.provider.add_span_processor(SessionSpanProcessor())
            self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.background = _BackgroundDone()
        self.provider.add_span_processor(self.background)

    def run(self, *paths: str, session: str | None = "chat-1") -> None:
        instrumentor = OpenAIInstrumentor()  # type: ignore[no-untyped-call]
        instrumentor.instrument(tracer_provider=self.provider)
        try:
            with serve_wsgi(openai_app) as llm:
                app = chat_app(openai.OpenAI(base_url=f"{llm}/v1", api_key="test-key"))
                app.add_middleware(ASGISessionMiddleware)
                # FastAPI's instrumentation traces background tasks with the tracer of the
                # first app instrumented; an uninstrumented app resets that to ours.
                FastAPIInstrumentor.uninstrument_app(FastAPI())
                FastAPIInstrumentor.instrument_app(app, tracer_provider=self.provider)
                with serve_asgi(app) as url:
                    for path in paths:
                        headers = {"X-Session-Id": session} if session else {}
                        reply = httpx.get(f"{url}{path}", headers=headers)
                        assert reply.status_code == 200
                        if path == "/background":
                            assert self.background.ended.wait(10)
                            self.background.ended.clear()
                FastAPIInstrumentor.uninstrument_app(app)
        finally:
            instrumentor.uninstrument()
        self.provider.force_flush()


@pytest.fixture
def receiver() -> Iterator[LangfuseReceiver]:
    with LangfuseReceiver() as running:
        yield running


ALL_CALLS = ("/plain", "/stream", "/background", "/thread")


def test_coverage_counts_every_span_and_token_and_the_one_call_that_lost_its_session(
    receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    service = ChatService(receiver)
    service.run(*ALL_CALLS)
    coverage = service.exporter.coverage
    # Per request: the server span, two ASGI "http send" spans and one chat span (and the
    # background task's span). The thread's chat span began a trace of its own, without the
    # session.
    assert (coverage.spans, coverage.spans_without_session) == (17, 1)
    assert (coverage.tokens, coverage.tokens_without_session) == (4 * TOKENS, TOKENS)
    assert coverage.token_share_without_session == 0.25
    llm = coverage.by_scope[LLM_SCOPE]
    assert (llm.spans, llm.spans_without_session, llm.tokens_without_session) == (4, 1, TOKENS)
    assert coverage.by_scope[SERVER_SCOPE].spans_without_session == 0
    assert coverage.dropped_spans == 0
    # The receiver sees what the exporter counted, overall and per session.
    assert receiver.coverage() == coverage
    session = receiver.sessions()["chat-1"]
    assert session.coverage.tokens == 3 * TOKENS
    assert session.coverage.tokens_without_session == 0
    with caplog.at_level(logging.WARNING, logger="langfuse_otel_sessions"):
        service.provider.shutdown()
    (warning,) = [r.getMessage() for r in caplog.records if "had no session" in r.getMessage()]
    assert warning.startswith(
        "6% of spans and 25% of tokens exported since the exporter started had no session; "
        f"most from {LLM_SCOPE}"
    )


def test_an_app_without_sessions_is_not_nagged(
    receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    service = ChatService(receiver)
    service.run("/plain", "/thread", session=None)
    assert service.exporter.coverage.tokens_without_session == 2 * TOKENS
    with caplog.at_level(logging.WARNING, logger="langfuse_otel_sessions"):
        service.provider.shutdown()
    assert not [r for r in caplog.records if "had no session" in r.getMessage()]


def test_the_llm_filter_keeps_the_generations_and_the_app_root_each_in_its_session(
    receiver: LangfuseReceiver,
) -> None:
    service = ChatService(receiver, export_spans="llm")
    service.run("/plain", "/stream", "/background")
    kept = receiver.spans()
    assert sorted(span.name for span in kept) == sorted(
        ["GET /plain", "GET /stream", "GET /background"] + ["chat gpt-test"] * 3
    )
    assert all(span_session_id(span) == "chat-1" for span in kept)
    coverage = service.exporter.coverage
    assert (coverage.spans, coverage.dropped_spans) == (6, 7)  # "http send", "BackgroundTask"
    assert (coverage.tokens, coverage.tokens_without_session) == (3 * TOKENS, 0)
    traces = receiver.traces().values()
    assert sorted(trace.name or "" for trace in traces) == [
        "GET /background",
        "GET /plain",
        "GET /stream",
    ]
    session = receiver.sessions()["chat-1"]
    assert session.observations_in_session == 6
    service.provider.shutdown()


def test_a_predicate_chooses_and_local_roots_stay(receiver: LangfuseReceiver) -> None:
    service = ChatService(receiver, export_spans=lambda span: False)
    service.run("/plain", "/thread")
    assert sorted(span.name for span in receiver.spans()) == [
        "GET /plain",
        "GET /thread",
        "chat gpt-test",
    ]
    assert service.exporter.coverage.dropped_spans == 5
    service.provider.shutdown()


def test_the_filter_from_the_environment(
    receiver: LangfuseReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANGFUSE_OTEL_EXPORT_SPANS", "llm")
    service = ChatService(receiver)
    service.run("/plain")
    assert sorted(span.name for span in receiver.spans()) == ["GET /plain", "chat gpt-test"]
    service.provider.shutdown()


def test_a_bad_filter_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="export_spans"):
        LangfuseSpanExporter(public_key="pk", secret_key="sk", export_spans="some")  # type: ignore[arg-type]


def test_configure_carries_the_session_into_threads(receiver: LangfuseReceiver) -> None:
    service = ChatService(receiver, configured=True)
    service.run("/thread")
    coverage = service.exporter.coverage
    assert (coverage.tokens, coverage.tokens_without_session) == (TOKENS, 0)
    assert [span_session_id(span) for span in receiver.spans()] == ["chat-1"] * 4
    service.provider.shutdown()
