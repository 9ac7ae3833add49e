"""A client cannot choose its own sampling: an untrusted caller's ``traceparent`` flag and
forged session never decide, in every documented setup (docs/sampling.md). Attacked over real
HTTP, FastAPI on uvicorn with OpenTelemetry's instrumentation, both middleware orders."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the framework stack is in requirements/test.txt")
import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler

from langfuse_otel_sessions import ASGISessionMiddleware, SessionSampler, SessionSpanProcessor
from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

from .conftest import score_client
from .servers import opentelemetry_instrument, run_command, serve_asgi
from .test_sampler import Sampled

__all__ = ["langfuse_receiver"]

RATIO = 0.5
CANDIDATES = [f"conversation-{i}" for i in range(100)]
KEEP = next(s for s in CANDIDATES if SessionSampler(RATIO).keeps_hash_of(s))
DROP = next(s for s in CANDIDATES if not SessionSampler(RATIO).keeps_hash_of(s))
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def traceparent(sampled: bool) -> str:
    return f"00-{TRACE_ID}-00f067aa0ba902b7-{'01' if sampled else '00'}"


@dataclass(frozen=True)
class Setup:
    """One documented setup: the middleware's place, the guard, the processor's trust, keys."""

    ours_outside: bool  # wrapping the app; else FastAPI's add_middleware (theirs outside)
    guard: bool = True
    processor_trusts: bool = False  # while the middleware does not
    key: str = "langfuse_session_id"

    def sampled(self, fallback: Sampler) -> Sampled:
        keys = None if self.key == "langfuse_session_id" else (self.key,)
        processor = SessionSpanProcessor(
            session_keys=keys, trust_remote_baggage=self.processor_trusts
        )
        return Sampled(SessionSampler(RATIO, fallback=fallback), processor, guard=self.guard)


SETUPS = [
    pytest.param(Setup(ours_outside, guard, trusts), id=f"{order}-{guard_id}-{trust_id}")
    for ours_outside, order in ((False, "add_middleware"), (True, "wrapped"))
    for guard, guard_id in ((False, "no_guard"), (True, "guard"))
    for trusts, trust_id in ((False, "untrusting"), (True, "processor_trusts"))
] + [
    pytest.param(Setup(False, guard=False, key="conversation_id"), id="custom_key-add_middleware"),
    pytest.param(Setup(True, guard=False, key="conversation_id"), id="custom_key-wrapped"),
]


def _app(sampled: Sampled, setup: Setup, on_request: object = None) -> object:
    app = FastAPI()

    @app.get("/chat")
    async def chat() -> str:
        with sampled.tracer.start_as_current_span("llm call"):
            if callable(on_request):
                on_request()
            return "ok"

    if setup.ours_outside:
        FastAPIInstrumentor.instrument_app(app, tracer_provider=sampled.provider)
        return ASGISessionMiddleware(app)
    app.add_middleware(ASGISessionMiddleware)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=sampled.provider)
    return app


def _kept(setup: Setup, fallback: Sampler, *requests: dict[str, str]) -> int:
    """How many spans the requests left, sent with these headers."""
    sampled = setup.sampled(fallback)
    with serve_asgi(_app(sampled, setup)) as url, httpx.Client(base_url=url) as client:
        for headers in requests:
            assert client.get("/chat", headers=headers).status_code == 200
    return len(sampled.spans())


@pytest.mark.parametrize("setup", SETUPS)
def test_a_client_cannot_sample_itself_in(setup: Setup) -> None:
    forged = {"baggage": f"{setup.key}={KEEP}"}
    # The fallback drops everything, so whatever is kept was kept by the client's input.
    assert _kept(setup, ALWAYS_OFF, {"traceparent": traceparent(True), **forged}, forged) == 0


@pytest.mark.parametrize("setup", SETUPS)
def test_a_client_cannot_sample_itself_out(setup: Setup) -> None:
    forged = {"baggage": f"{setup.key}={DROP}"}
    headers = [{"traceparent": traceparent(False), **forged}, forged]
    assert _kept(setup, ALWAYS_ON, *headers) == 2 * _kept(setup, ALWAYS_ON, {})


@pytest.mark.parametrize("guard", [False, True], ids=["no_guard", "guard"])
def test_the_middlewares_session_decides_whatever_the_callers_flag(guard: bool) -> None:
    setup = Setup(ours_outside=True, guard=guard)
    in_ = {"traceparent": traceparent(False), "X-Session-Id": KEEP}
    out = {"traceparent": traceparent(True), "X-Session-Id": DROP}
    assert _kept(setup, ALWAYS_OFF, in_) > 0
    assert _kept(setup, ALWAYS_ON, out) == 0


def _traces_kept(trace_id: str, session: str, requests: int) -> int:
    """FastAPI's order, the default fallback: requests kept of ``requests`` sent with this
    trace id (each has one server span)."""
    setup = Setup(ours_outside=False)
    sampled = setup.sampled(SessionSampler(RATIO).fallback)
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "X-Session-Id": session}
    with serve_asgi(_app(sampled, setup)) as url, httpx.Client(base_url=url) as client:
        for _ in range(requests):
            assert client.get("/chat", headers=headers).status_code == 200
    return sum(span.kind.name == "SERVER" for span in sampled.spans())


def test_a_client_cannot_choose_the_trace_id_the_fallback_decides_by() -> None:
    """FastAPI's order: the server span starts before the middleware knows the session, so the
    fallback decides; a trace id the ratio keeps (or drops) must not force it (outside review)."""
    requests = 40  # each kept with probability 1/2: all or none by chance is 2**-40
    kept_low = _traces_kept("0" * 31 + "1", DROP, requests)
    kept_high = _traces_kept("f" * 32, KEEP, requests)
    assert 0 < kept_low < requests
    assert 0 < kept_high < requests


def test_a_session_kept_by_the_fallback_keeps_its_scores(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    """FastAPI's order: the server span starts before the middleware decides the session, so
    the fallback keeps the request; the session's score, given in the request, is sent."""
    setup = Setup(ours_outside=False)
    sampled = setup.sampled(ALWAYS_ON)
    scores = score_client(langfuse_receiver, sampler=sampled.provider.sampler)
    app = _app(sampled, setup, lambda: scores.score_session(DROP, name="helpful", value=True))
    with serve_asgi(app) as url, httpx.Client(base_url=url) as client:
        assert client.get("/chat", headers={"X-Session-Id": DROP}).status_code == 200
    assert scores.flush(10)
    scores.shutdown(5)
    assert {s.attributes.get("langfuse.session.id") for s in sampled.spans()} == {DROP}
    assert [score["sessionId"] for score in langfuse_receiver.scores()] == [DROP]
    assert scores.stats.sampled_out == 0


ZERO_CODE = f"""
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

tracer = trace.get_tracer("server")
cases = [(True, {KEEP!r}, "0" * 31 + "1")] * 20 + [(False, {DROP!r}, "f" * 32)] * 20
for flag, session_id, trace_id in cases:
    headers = {{
        "traceparent": f"00-{{trace_id}}-00f067aa0ba902b7-{{'01' if flag else '00'}}",
        "baggage": f"langfuse_session_id={{session_id}}",
    }}
    span = tracer.start_span("GET /chat", propagate.extract(headers), kind=SpanKind.SERVER)
    print(span.is_recording())
    span.end()
"""


def test_the_zero_code_sampler_ignores_the_callers_flag_and_session(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(ZERO_CODE)
    env = {
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_TRACES_SAMPLER": "langfuse_session",
        "OTEL_TRACES_SAMPLER_ARG": str(RATIO),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src"),
    }
    out = run_command([*opentelemetry_instrument(), sys.executable, str(app)], env)
    # Decided as new traces are, by the fallback (at random: not by the trace id the caller
    # chose, which the ratio keeps in the first 20 and drops in the last 20), not by the
    # caller's flag, and not by the session it sent. All or none by chance: 2**-20.
    kept = out.split()[:40]
    assert "False" in kept[:20]
    assert "True" in kept[20:]
