"""Only an outgoing request's own destination opens the outbound gate: an app that calls
``propagate.inject(headers)`` by hand in a FastAPI or Flask handler, with an allow-list its
caller's ``Host`` header matches, sends no ids (the current span there is the SERVER span,
which names this process, not the destination). Both semconv modes, both middleware orders;
each mode in its own process, as OpenTelemetry reads ``OTEL_SEMCONV_STABILITY_OPT_IN`` once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the framework stack is in requirements/test.txt")

ALLOWED = ["*.svc.cluster.local"]
BACK = {"url.full": "http://back.svc.cluster.local/v1"}


def _inject() -> dict[str, str]:
    """What the handler's hand-made request carries, and what a CLIENT span to a listed host
    (the control: the gate still opens for an outgoing request) carries."""
    from opentelemetry import propagate, trace

    by_hand: dict[str, str] = {}
    propagate.inject(by_hand)
    control: dict[str, str] = {}
    tracer = trace.get_tracer_provider().get_tracer("app")
    with tracer.start_as_current_span("GET", kind=trace.SpanKind.CLIENT, attributes=BACK):
        propagate.inject(control)
    return {"by_hand": by_hand.get("baggage", ""), "control": control.get("baggage", "")}


def _app(framework: str, order: str) -> Any:
    from fastapi import FastAPI
    from flask import Flask
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    from langfuse_otel_sessions import ASGISessionMiddleware, WSGISessionMiddleware

    if framework == "fastapi":
        api = FastAPI()
        api.get("/chat")(_inject)
        if order == "inside":
            api.add_middleware(ASGISessionMiddleware)
            FastAPIInstrumentor.instrument_app(api)
            return api
        FastAPIInstrumentor.instrument_app(api)
        return ASGISessionMiddleware(api)
    app = Flask(__name__)
    app.route("/chat")(_inject)
    if order == "inside":
        app.wsgi_app = WSGISessionMiddleware(app.wsgi_app)  # type: ignore[method-assign]
        FlaskInstrumentor().instrument_app(app)
    else:
        FlaskInstrumentor().instrument_app(app)
        app.wsgi_app = WSGISessionMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


def collect() -> dict[str, dict[str, str]]:
    """Run in a fresh process: each framework and order, one attacking request."""
    import httpx
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from langfuse_otel_sessions import SessionSpanProcessor, configure

    from .servers import serve_asgi, serve_wsgi

    provider = TracerProvider()
    configure(provider, export=False, processor=SessionSpanProcessor(propagate_session_to=ALLOWED))
    trace.set_tracer_provider(provider)
    results = {}
    for framework, serve in (("fastapi", serve_asgi), ("flask", serve_wsgi)):
        for order in ("inside", "outside"):
            with serve(_app(framework, order)) as url:
                answer = httpx.get(
                    f"{url}/chat",
                    headers={"Host": "front.svc.cluster.local", "X-Session-Id": "conv-2"},
                )
            results[f"{framework}/{order}"] = answer.json()
    return results


@pytest.mark.parametrize("semconv", ["default", "http"])
def test_an_inject_by_hand_in_a_handler_sends_no_ids(semconv: str) -> None:
    import langfuse_otel_sessions

    package = Path(langfuse_otel_sessions.__file__).parent.parent
    env = {
        "PATH": "",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), str(package)]),
    }
    if semconv != "default":
        env["OTEL_SEMCONV_STABILITY_OPT_IN"] = semconv
    code = "import json, tests.test_outbound_frameworks as t; print(json.dumps(t.collect()))"
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    assert len(results) == 4
    for setup, sent in results.items():
        assert "conv-2" not in sent["by_hand"], setup
        assert "langfuse_session_id=conv-2" in sent["control"], setup
