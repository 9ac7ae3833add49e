"""The outbound policy does not turn off without a word: one warning when the package writes its
entries while the global propagator sends baggage without the policy, none in the default setups."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from langfuse_otel_sessions import SessionSpanProcessor, WSGISessionMiddleware, configure, session
from langfuse_otel_sessions.boundary.propagator import SessionBaggagePropagator
from langfuse_otel_sessions.sessions import _setup_warnings as outbound_check

WARNING = "sends baggage without langfuse-otel-sessions' outbound policy"


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbound_check, "_warned", {"processor"})
    monkeypatch.setattr(outbound_check, "_checked", None)


def plain() -> TextMapPropagator:
    """OpenTelemetry's default propagators, as ``set_global_textmap`` examples copy them."""
    return CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


def guard_off() -> None:
    propagate.set_global_textmap(plain())
    SessionSpanProcessor()


def app_replaces_the_propagator() -> None:
    propagate.set_global_textmap(plain())
    configure(TracerProvider(), export=False)
    propagate.set_global_textmap(plain())


def default() -> None:
    propagate.set_global_textmap(plain())
    configure(TracerProvider(), export=False)


def replaced_after_a_first_check() -> None:
    default()
    with session("s-0"):  # checked once, found guarded: later checks are one comparison
        pass
    propagate.set_global_textmap(plain())


def langfuse_baggage_without_guard() -> None:
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), SessionBaggagePropagator()])
    )
    SessionSpanProcessor()


def no_baggage_propagator() -> None:
    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator()]))
    SessionSpanProcessor()


def in_scopes() -> None:
    for turn in range(3):
        with session(f"s-{turn}", user_id="alice@example.com", tags=["t"]):
            pass


def in_middleware() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    middleware = WSGISessionMiddleware(
        app, trace_attributes={"tags": ["web"], "environment": "prod"}
    )
    for _ in range(3):
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "HTTP_X_SESSION_ID": "hdr-sess",
        }
        list(middleware(environ, lambda status, headers, exc_info=None: None))


@pytest.mark.parametrize("use", [in_scopes, in_middleware], ids=["session", "middleware"])
@pytest.mark.parametrize(
    ("setup", "warned"),
    [
        (guard_off, True),
        (app_replaces_the_propagator, True),
        (replaced_after_a_first_check, True),
        (default, False),
        (langfuse_baggage_without_guard, False),
        (no_baggage_propagator, False),
    ],
    ids=[
        "guard-off",
        "app-replaced-propagator",
        "replaced-later",
        "default",
        "langfuse-baggage",
        "no-baggage",
    ],
)
def test_a_setup_without_the_outbound_policy_warns_once(
    caplog: pytest.LogCaptureFixture,
    setup: Callable[[], None],
    warned: bool,
    use: Callable[[], None],
) -> None:
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    setup()
    use()
    assert caplog.text.count(WARNING) == (1 if warned else 0)
    if warned:
        assert "install_baggage_guard()" in caplog.text
        assert "alice" not in caplog.text
        assert "hdr-sess" not in caplog.text
