"""Sessions are not lost without a word: a session set (``session()``, the middleware) with no
processor warns once naming the fix, and the warning is visible under ``opentelemetry-instrument``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from langfuse_otel_sessions.sessions._setup_warnings import MISSING_PROCESSOR
from langfuse_otel_sessions.testing import LangfuseReceiver

from .servers import opentelemetry_instrument

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WARNING_START = MISSING_PROCESSOR.split(",", 1)[0]


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    inherited = {name: os.environ[name] for name in ("PATH", "PYTHONPATH") if name in os.environ}
    result = subprocess.run(
        argv,
        env={**inherited, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def run_code(code: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-c", textwrap.dedent(code)])


def test_session_without_a_processor_warns_once_naming_the_fix() -> None:
    result = run_code(
        """
        from opentelemetry import trace
        from langfuse_otel_sessions import session

        tracer = trace.get_tracer("app")
        for turn in range(3):
            with session("lost"), tracer.start_as_current_span("turn"):
                pass
        """
    )
    assert result.stderr.count(WARNING_START) == 1
    assert "langfuse_otel_sessions.configure()" in result.stderr
    assert "SessionSpanProcessor()" in result.stderr


def test_the_middleware_without_configure_warns_naming_the_fix() -> None:
    """The README's web recipe with ``configure()`` forgotten: sessions come from requests."""
    result = run_code(
        """
        from langfuse_otel_sessions import WSGISessionMiddleware

        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"ok"]

        wrapped = WSGISessionMiddleware(app)
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_X_SESSION_ID": "chat-1"}
        for _ in range(2):
            list(wrapped(environ, lambda *args: None))
        """
    )
    assert result.stderr.count(WARNING_START) == 1
    assert "langfuse_otel_sessions.configure()" in result.stderr


def test_session_with_a_processor_on_any_provider_does_not_warn() -> None:
    result = run_code(
        """
        from opentelemetry.sdk.trace import TracerProvider
        from langfuse_otel_sessions import SessionSpanProcessor, configure, session

        provider = TracerProvider()  # not the global one, as in examples/quickstart.py
        provider.add_span_processor(SessionSpanProcessor())
        with session("kept"), provider.get_tracer("app").start_as_current_span("turn"):
            pass
        configure(export=False)  # the global one
        with session("kept"):
            pass
        """
    )
    assert WARNING_START not in result.stderr


def test_a_decorator_made_before_setup_does_not_warn_once_setup_is_done() -> None:
    result = run_code(
        """
        from langfuse_otel_sessions import configure, session

        @session("ticket-42")  # module level, before the app configured anything
        def handle() -> None:
            pass

        configure(export=False)
        handle()
        """
    )
    assert WARNING_START not in result.stderr


def test_the_warning_is_visible_under_opentelemetry_instrument() -> None:
    with LangfuseReceiver() as receiver:
        result = run(
            [*opentelemetry_instrument(), sys.executable, str(EXAMPLES / "zero_code_app.py")],
            env={
                **receiver.env(),
                "OTEL_TRACES_EXPORTER": "langfuse",
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none",
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "langfuse_sessions",
            },
        )
        assert receiver.wait_for(lambda: len(receiver.spans()) == 2, timeout=10)
        assert receiver.sessions() == {}  # exported, but nothing stamped them ...
    assert result.stderr.count(WARNING_START) == 1  # ... and the app was told why
