"""Zero code, sessions from a request header: ``LANGFUSE_OTEL_SESSION_HEADER`` under
``opentelemetry-instrument`` with a real Flask app (OpenTelemetry's Flask/WSGI instrumentation)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.context import Context

from langfuse_otel_sessions import current_session_id, current_user_id, session
from langfuse_otel_sessions.boundary.propagator import BaggageGuard, SessionBaggagePropagator
from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

from .servers import opentelemetry_instrument

__all__ = ["langfuse_receiver"]

# The app has no OpenTelemetry or langfuse code: it serves /chat (a child span, then an outgoing
# httpx request to /echo, which answers with the baggage header it got) and sends itself
# requests with raw header bytes through http.client.
CLIENT = """
def send(port, session_bytes, user_bytes=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.putrequest("GET", "/chat")
    connection.putheader("X-Session-Id", session_bytes)
    if user_bytes is not None:
        connection.putheader("X-User-Id", user_bytes)
    connection.endheaders()
    body = json.loads(connection.getresponse().read())
    connection.close()
    return body["outgoing baggage"]

def send_all(port):
    print("outgoing:", repr(send(port, "café-ü".encode(), b"alice")))
    send(port, b"x" * 201)  # longer than the id rule's 200 characters
    send(port, b"caf\\xe9")  # not UTF-8 (Flask refuses it; FastAPI's getter reads it as latin-1)
"""

# The apps have no OpenTelemetry or langfuse code: each serves /chat (a child span, then an
# outgoing httpx request to /echo, which answers with the baggage header it got) and sends
# itself requests with raw header bytes through http.client.
FLASK_APP = (
    textwrap.dedent(
        """
    import http.client, json, threading
    import httpx
    from flask import Flask, request
    from opentelemetry import trace
    from werkzeug.serving import make_server

    app = Flask(__name__)
    tracer = trace.get_tracer("app")

    @app.route("/chat")
    def chat():
        with tracer.start_as_current_span("llm call"):
            port = request.environ["SERVER_PORT"]
            echoed = httpx.get(f"http://127.0.0.1:{port}/echo").text
        return {"outgoing baggage": echoed}

    @app.route("/echo")
    def echo():
        return request.headers.get("baggage", "")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    """
    )
    + CLIENT
    + "send_all(server.server_port)\nserver.shutdown()\n"
)

FASTAPI_APP = (
    textwrap.dedent(
        """
    import http.client, json
    import httpx
    from fastapi import FastAPI, Request
    from fastapi.responses import PlainTextResponse
    from opentelemetry import trace
    from tests.servers import serve_asgi

    app = FastAPI()
    tracer = trace.get_tracer("app")

    @app.get("/chat")
    async def chat(request: Request):
        with tracer.start_as_current_span("llm call"):
            async with httpx.AsyncClient() as client:
                echoed = (await client.get(f"{request.base_url}echo")).text
        return {"outgoing baggage": echoed}

    @app.get("/echo")
    async def echo(request: Request):
        return PlainTextResponse(request.headers.get("baggage", ""))
    """
    )
    + CLIENT
    + textwrap.dedent(
        """
    with serve_asgi(app) as url:
        send_all(int(url.rsplit(":", 1)[1]))
    """
    )
)

ROOT = Path(__file__).resolve().parent.parent


def run_app(
    source: str, tmp_path: Path, receiver: LangfuseReceiver
) -> subprocess.CompletedProcess[str]:
    app = tmp_path / "app.py"
    app.write_text(source)
    env = {
        "PATH": "",
        # src first: the code under test, not the editable install's
        "PYTHONPATH": os.pathsep.join(str(ROOT / part) for part in ("src", "")),
        "OTEL_TRACES_EXPORTER": "langfuse",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "LANGFUSE_OTEL_SESSION_HEADER": "X-Session-Id",
        "LANGFUSE_OTEL_USER_HEADER": "X-User-Id",
        **receiver.env(),
    }
    argv = [*opentelemetry_instrument(), sys.executable, str(app)]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result


def test_a_flask_app_under_opentelemetry_instrument_gets_sessions_from_the_header(
    tmp_path: Path, langfuse_receiver: LangfuseReceiver
) -> None:
    pytest.importorskip("flask", reason="the framework stack is in requirements/test.txt")
    pytest.importorskip("opentelemetry.instrumentation.flask")
    result = run_app(FLASK_APP, tmp_path, langfuse_receiver)
    sessions = langfuse_receiver.sessions()
    assert set(sessions) == {"café-ü"}  # UTF-8 bytes through WSGI's latin-1 text
    (trace,) = sessions["café-ü"].traces
    assert trace.user_id == "alice"
    server_span = trace.span("GET /chat")
    assert server_span.attributes["langfuse.session.id"] == "café-ü"
    assert trace.span("llm call").attributes["langfuse.session.id"] == "café-ü"
    assert trace.span("llm call").attributes["langfuse.user.id"] == "alice"
    # not sent on the outgoing request (LANGFUSE_OTEL_PROPAGATE_SESSION_TO is unset)
    assert_no_ids_went_out(result.stdout)
    # the two invalid values: warned, not stamped
    unstamped = [
        span
        for span in langfuse_receiver.spans()
        if span.name == "GET /chat" and "langfuse.session.id" not in span.attributes
    ]
    assert len(unstamped) == 2
    assert "session id from X-Session-Id: longer than 200" in result.stderr
    assert result.stderr.count("Ignoring the session id") == 1  # rate-limited, not per request


def test_a_fastapi_app_under_opentelemetry_instrument_gets_sessions_from_the_header(
    tmp_path: Path, langfuse_receiver: LangfuseReceiver
) -> None:
    pytest.importorskip("fastapi", reason="the framework stack is in requirements/test.txt")
    result = run_app(FASTAPI_APP, tmp_path, langfuse_receiver)
    sessions = langfuse_receiver.sessions()
    assert set(sessions) == {"café-ü", "café"}  # ASGI's getter reads bytes that are not UTF-8
    (trace,) = sessions["café-ü"].traces  # as latin-1: b"caf\xe9" is "café" here
    assert trace.user_id == "alice"
    server_span = trace.span("GET /chat")
    assert server_span.attributes["langfuse.session.id"] == "café-ü"
    assert trace.span("llm call").attributes["langfuse.session.id"] == "café-ü"
    assert_no_ids_went_out(result.stdout)
    assert "session id from X-Session-Id: longer than 200" in result.stderr


def test_the_header_never_replaces_a_session_the_process_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LANGFUSE_OTEL_SESSION_HEADER", "X-Session-Id")
    monkeypatch.setenv("LANGFUSE_OTEL_USER_HEADER", "X-User-Id")
    carrier = {"X-Session-Id": "from-header", "X-User-Id": "header-user"}
    for propagator in (SessionBaggagePropagator(), BaggageGuard(SessionBaggagePropagator())):
        extracted = propagator.extract(carrier, Context())
        assert current_session_id(extracted) == "from-header"
        assert current_user_id(extracted) == "header-user"
        with session("decided-in-process"):
            extracted = propagator.extract(carrier)
        assert current_session_id(extracted) == "decided-in-process"
        assert current_user_id(extracted) == "header-user"


def test_remote_baggage_stays_withheld_and_the_header_wins_over_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LANGFUSE_OTEL_SESSION_HEADER", "x-session-id")
    forged = {"baggage": "session.id=victim,langfuse_user_id=victim-user"}
    extracted = SessionBaggagePropagator().extract(forged, Context())
    assert current_session_id(extracted) is None  # no header: withheld as before
    assert current_user_id(extracted) is None
    extracted = SessionBaggagePropagator(trust_remote_baggage=True).extract(
        {**forged, "x-session-id": "from-header"}, Context()
    )
    assert current_session_id(extracted) == "from-header"
    assert current_user_id(extracted) == "victim-user"  # trusted, and no user header set


def assert_no_ids_went_out(stdout: str) -> None:
    """The outgoing request's baggage holds no session or user id: at most the trace's root
    claim (``langfuse_trace_id``) that a process exporting to Langfuse adds."""
    (line,) = [line for line in stdout.splitlines() if line.startswith("outgoing: ")]
    sent = line.removeprefix("outgoing: ").strip("'")
    members = [member for member in sent.split(",") if member]
    assert all(member.startswith("langfuse_trace_id=") for member in members), sent
    assert "café" not in sent
    assert "alice" not in sent


@pytest.mark.parametrize("ours_outside", [False, True], ids=["add_middleware", "wrapped"])
def test_where_a_middleware_runs_the_header_source_does_not_override_its_decision(
    monkeypatch: pytest.MonkeyPatch, ours_outside: bool
) -> None:
    """A middleware that takes the session from elsewhere (here: an anonymous request, so no
    session) is final for its requests: LANGFUSE_OTEL_SESSION_HEADER adds nothing to them."""
    pytest.importorskip("fastapi", reason="the framework stack is in requirements/test.txt")
    import httpx
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    from langfuse_otel_sessions import ASGISessionMiddleware, SessionSpanProcessor

    from .conftest import Traced
    from .servers import serve_asgi

    monkeypatch.setenv("LANGFUSE_OTEL_SESSION_HEADER", "X-Session-Id")
    monkeypatch.setenv("LANGFUSE_OTEL_USER_HEADER", "X-User-Id")
    traced = Traced(SessionSpanProcessor())  # installs the guard, which reads the headers
    app = FastAPI()

    @app.get("/chat")
    async def chat() -> dict[str, object]:
        with traced.tracer.start_as_current_span("llm call"):
            return {"session": current_session_id(), "user": current_user_id()}

    options = {"session_header": None, "session_from": lambda scope: None}
    if ours_outside:
        FastAPIInstrumentor.instrument_app(app, tracer_provider=traced.provider)
        served: object = ASGISessionMiddleware(app, **options)
    else:
        app.add_middleware(ASGISessionMiddleware, **options)
        FastAPIInstrumentor.instrument_app(app, tracer_provider=traced.provider)
        served = app
    headers = {"X-Session-Id": "client-chosen", "X-User-Id": "client-user"}
    with serve_asgi(served) as url:
        seen = httpx.get(f"{url}/chat", headers=headers).json()
    assert seen == {"session": None, "user": None}
    stamped = {
        value
        for span in traced.spans()
        for key, value in (span.attributes or {}).items()
        if key in ("langfuse.session.id", "langfuse.user.id")
    }
    assert stamped <= {""}  # blanked on the server span at most (Langfuse skips empty ids)
    assert traced.span("llm call").attributes.get("langfuse.session.id") is None
