"""Real HTTP servers on loopback for the tests: a WSGI app in a thread, on a free port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (free port) until the block exits; yields the base URL."""
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def langfuse_sdk_service() -> Iterator[tuple[str, InMemorySpanExporter]]:
    """A service traced by the Langfuse Python SDK's span processor (exporting nowhere), served
    over WSGI with OpenTelemetry's middleware until the block exits. Its one span of its own is
    ``their handler``; yields the base URL and what the service recorded."""
    from langfuse._client.span_processor import LangfuseSpanProcessor
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

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

    def their_app(environ: dict[str, Any], start_response: Any) -> Any:
        with tracer.start_as_current_span("their handler"):
            pass
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"ok": true}']

    with serve_wsgi(OpenTelemetryMiddleware(their_app, tracer_provider=provider)) as url:
        yield url, seen


def their_handler_attributes(seen: InMemorySpanExporter) -> dict[str, Any]:
    """The attributes of the Langfuse SDK service's ``their handler`` span."""
    (handler,) = [s for s in seen.get_finished_spans() if s.name == "their handler"]
    return dict(handler.attributes or {})


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Serve an ASGI app with a real uvicorn server on 127.0.0.1 until the block exits."""
    import socket
    import time

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:  # uvicorn offers no event to wait on
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def run_command(argv: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run ``argv`` in a clean environment (PATH, this tree's package, plus ``env``); fail the
    test with its stderr unless it succeeds; return its stdout."""
    import os
    import subprocess
    from pathlib import Path

    import langfuse_otel_sessions

    source = str(Path(langfuse_otel_sessions.__file__).parents[1])  # this tree, not another
    result = subprocess.run(
        argv,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": source, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def run_python(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """:func:`run_command` of ``python *args``."""
    import sys

    return run_command([sys.executable, *args], env, timeout)


def opentelemetry_instrument() -> list[str]:
    """The argv that starts ``opentelemetry-instrument`` of the running interpreter: its console
    script, or the same entry function where the environment has no script (a venv sharing
    another's site-packages)."""
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "opentelemetry-instrument"
    if script.exists():
        return [str(script)]
    entry = (
        "import sys; from opentelemetry.instrumentation.auto_instrumentation import run; "
        "sys.argv[0] = 'opentelemetry-instrument'; run()"
    )
    return [sys.executable, "-c", entry]


def run_zero_code_app(env: dict[str, str]) -> str:
    """``examples/zero_code_app.py`` under ``opentelemetry-instrument``, with ``env`` and no
    metrics or logs exporter; returns its output."""
    import sys
    from pathlib import Path

    app = Path(__file__).resolve().parent.parent / "examples" / "zero_code_app.py"
    return run_command(
        [*opentelemetry_instrument(), sys.executable, str(app)],
        env={"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", **env},
    )
