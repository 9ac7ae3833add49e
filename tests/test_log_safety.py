"""Server text in our logs: a server, proxy or Collector that echoes the request (credentials
included) or answers with newlines, terminal escapes or binary bytes cannot leak a secret
into a log line or forge one."""

from __future__ import annotations

import base64
import logging
import socket

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from langfuse_otel_sessions import ScoreClient
from langfuse_otel_sessions.export.exporter import LangfuseSpanExporter

from .fault_server import Answer, fault_server

PUBLIC, SECRET = "pk-lf-echo", "sk-lf-echo-secret-4711"
TOKEN = base64.b64encode(f"{PUBLIC}:{SECRET}".encode()).decode()
USERINFO_TOKEN = "tok-in-url-0815"
HEADER_SECRET = "hdr-secret-9999"
FORGED = "\n2026-01-01 ERROR root: forged line\x1b[2J\x9b31m\u202e"


def echo(status: int, *secrets: str) -> Answer:
    """What an echoing proxy says: the credentials it saw, and control characters."""
    return Answer.json(status, {"message": " ".join(secrets) + FORGED})


def assert_clean(text: str) -> None:
    for secret in (SECRET, TOKEN, USERINFO_TOKEN, HEADER_SECRET):
        assert secret not in text
    for control in ("\x1b", "\x9b", "\u202e"):
        assert control not in text
    assert "forged line" in text  # the server's words are there, escaped
    assert "\n2026" not in text


def export_one(exporter: LangfuseSpanExporter) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("t").start_span("one").end()
    provider.shutdown()


@pytest.mark.parametrize("status", [400, 401, 500])
def test_an_echoed_langfuse_key_never_reaches_the_log(
    caplog: pytest.LogCaptureFixture, status: int
) -> None:
    with fault_server(echo(status, f"Basic {TOKEN}", SECRET)) as server:
        exporter = LangfuseSpanExporter(
            public_key=PUBLIC, secret_key=SECRET, base_url=server.url, timeout=5
        )
        with caplog.at_level(logging.DEBUG):
            export_one(exporter)
    assert "not delivered" in caplog.text
    assert_clean(caplog.text)


def test_userinfo_and_configured_headers_are_scrubbed_from_a_collectors_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    userinfo = base64.b64encode(f"user:{USERINFO_TOKEN}".encode()).decode()
    with fault_server(echo(400, userinfo, USERINFO_TOKEN, f"Bearer {HEADER_SECRET}")) as server:
        endpoint = server.url.replace("://", f"://user:{USERINFO_TOKEN}@")
        exporter = LangfuseSpanExporter(
            endpoint=endpoint, headers={"X-Api-Key": f"Bearer {HEADER_SECRET}"}, timeout=5
        )
        with caplog.at_level(logging.DEBUG):
            export_one(exporter)
    assert "not delivered" in caplog.text
    assert_clean(caplog.text)


def test_an_echoed_key_never_reaches_the_score_log(caplog: pytest.LogCaptureFixture) -> None:
    with fault_server(echo(401, f"Basic {TOKEN}", SECRET)) as server:
        client = ScoreClient(public_key=PUBLIC, secret_key=SECRET, base_url=server.url, timeout=10)
        with caplog.at_level(logging.DEBUG):
            client.score_session("s", name="helpful", value=1)
            client.flush(10)
            client.shutdown()
    assert "answered 401" in caplog.text
    assert_clean(caplog.text)


def test_a_binary_body_is_escaped_and_capped(caplog: pytest.LogCaptureFixture) -> None:
    with fault_server(Answer(500, bytes(range(256)) * 40)) as server:
        export_one(LangfuseSpanExporter(base_url=server.url, public_key=PUBLIC, secret_key=SECRET))
    [message] = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert message.isprintable()
    assert len(message) < 800


def test_no_repr_inside_the_exporter_shows_a_token() -> None:
    exporter = LangfuseSpanExporter(
        endpoint=f"http://user:{USERINFO_TOKEN}@127.0.0.1:1",
        headers={"X-Api-Key": HEADER_SECRET},
    )
    client = ScoreClient(
        public_key=PUBLIC, secret_key=SECRET, base_url=f"http://u:{USERINFO_TOKEN}@127.0.0.1:1"
    )
    try:
        parts = (exporter, exporter._route, exporter._transport, client, client._sender)
        shown = " ".join(repr(part) for part in parts)
    finally:
        exporter.shutdown()
        client.shutdown()
    for secret in (USERINFO_TOKEN, HEADER_SECRET, SECRET, TOKEN):
        assert secret not in shown


def test_a_failure_through_a_proxy_names_the_proxy(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:  # a port nothing listens on: the proxy is down
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://puser:{HEADER_SECRET}@127.0.0.1:{port}")
    exporter = LangfuseSpanExporter(
        public_key=PUBLIC, secret_key=SECRET, base_url="http://langfuse.example", timeout=2
    )
    with caplog.at_level(logging.DEBUG):
        export_one(exporter)
    assert f"through the proxy http://127.0.0.1:{port} did not answer" in caplog.text
    assert HEADER_SECRET not in caplog.text
