"""SessionSampler behind FastAPI's instrumentation on uvicorn: the middleware order decides
whether the session is known when the server span starts (docs/sampling.md)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the framework stack is in requirements/test.txt")
import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from langfuse_otel_sessions import ASGISessionMiddleware, SessionSampler
from langfuse_otel_sessions.attributes import LANGFUSE_SESSION_ID
from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

from .conftest import score_client
from .servers import serve_asgi
from .test_frameworks import ORDERS, served
from .test_sampler import Sampled

__all__ = ["langfuse_receiver"]

SESSIONS = [f"chat-{i}" for i in range(16)]


def _service(sampled: Sampled, ours_outside: bool) -> object:
    app = FastAPI()

    @app.get("/chat")
    async def chat() -> str:
        with sampled.tracer.start_as_current_span("llm call"):
            return "ok"

    if ours_outside:
        FastAPIInstrumentor.instrument_app(app, tracer_provider=sampled.provider)
        return ASGISessionMiddleware(app)
    app.add_middleware(ASGISessionMiddleware)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=sampled.provider)
    return app


def _chat(sampled: Sampled, ours_outside: bool) -> dict[object, int]:
    with serve_asgi(_service(sampled, ours_outside)) as url, httpx.Client(base_url=url) as client:
        for session_id in SESSIONS:
            for _ in range(2):
                response = client.get("/chat", headers={"X-Session-Id": session_id})
                assert response.status_code == 200
    per_session: dict[object, int] = {}
    for span in sampled.spans():
        key = (span.attributes or {}).get(LANGFUSE_SESSION_ID)
        per_session[key] = per_session.get(key, 0) + 1
    return per_session


def test_with_our_middleware_outside_fastapis_each_conversation_is_kept_or_dropped_whole() -> None:
    sampled = Sampled(SessionSampler(0.5, fallback=ALWAYS_OFF))
    per_session = _chat(sampled, ours_outside=True)
    expected = {s for s in SESSIONS if SessionSampler(0.5).keeps_hash_of(s)}
    assert 0 < len(expected) < len(SESSIONS)
    assert set(per_session) == expected
    counts = set(per_session.values())
    assert len(counts) == 1  # every kept conversation has all its spans
    assert counts.pop() >= 2 * 2  # 2 requests x (server span + llm call, + ASGI send spans)


def test_with_fastapis_middleware_outside_the_fallback_decides_the_request() -> None:
    sampled = Sampled(SessionSampler(1.0, fallback=ALWAYS_OFF))
    assert _chat(sampled, ours_outside=False) == {}  # the server span started without a session


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
@pytest.mark.parametrize("order", ORDERS)
def test_a_generated_session_cookie_the_client_chose_is_ignored(framework: str, order: str) -> None:
    # docs/trust-boundary.md: a generated session is one the app issued, never the client's pick
    sampler = SessionSampler(0.0, always_keep=lambda s, u: (s or "").startswith("eval-"))
    sampled = Sampled(sampler)
    options = {"session_header": None, "generate_session": True}
    with served(framework, sampled, order, **options) as url:
        response = httpx.get(url + "/chat", headers={"Cookie": "lf_session_id=eval-forged"})
    issued = response.cookies["lf_session_id"]
    assert response.json()["session"] == issued != "eval-forged"
    assert sampled.spans() == ()  # a fresh id, and ratio 0.0 keeps none


def test_a_session_a_trusted_caller_kept_keeps_its_scores(
    monkeypatch: pytest.MonkeyPatch, langfuse_receiver: LangfuseReceiver
) -> None:
    # The trusted caller's sampled flag keeps the trace although the ratio drops the session:
    # its scores, given inside the request or after it, are sent.
    monkeypatch.setenv("LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE", "true")
    sampler = SessionSampler(0.0)
    sampled = Sampled(sampler)
    client = score_client(langfuse_receiver, sampler=sampler)
    app = FastAPI()

    @app.get("/chat")
    async def chat() -> str:
        client.score_session("t-sess", name="inside", value=1.0)
        return "ok"

    FastAPIInstrumentor.instrument_app(app, tracer_provider=sampled.provider)
    headers = {
        "traceparent": f"00-{0xABC:032x}-{0xDEF:016x}-01",
        "baggage": "langfuse_session_id=t-sess",
    }
    with serve_asgi(ASGISessionMiddleware(app, session_header=None)) as url:
        assert httpx.get(url + "/chat", headers=headers).status_code == 200
    client.score_session("t-sess", name="later", value=1.0)
    assert client.flush(10)
    client.shutdown(5)
    assert {(s.attributes or {}).get(LANGFUSE_SESSION_ID) for s in sampled.spans()} == {"t-sess"}
    assert sorted(score["name"] for score in langfuse_receiver.scores()) == ["inside", "later"]
    assert client.stats.sampled_out == 0
