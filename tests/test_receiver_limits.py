"""The receiver (``LangfuseReceiver`` and ``python -m langfuse_otel_sessions serve``) takes
bounded request bodies: a huge Content-Length or a gzip bomb gets 413, not gigabytes of
memory; and ``serve`` warns when it listens beyond loopback."""

from __future__ import annotations

import gzip
import http.client
import socket
import subprocess
import sys

import pytest

from langfuse_otel_sessions.testing import LangfuseReceiver
from langfuse_otel_sessions.testing._server import MAX_REQUEST_BYTES


def post(receiver: LangfuseReceiver, body: bytes, **headers: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", int(receiver.url.rsplit(":", 1)[1]), 10)
    try:
        connection.request(
            "POST",
            "/api/public/otel/v1/traces",
            body=body,
            headers={"Content-Type": "application/x-protobuf", **headers},
        )
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (MAX_REQUEST_BYTES + 1), 9)
    assert len(bomb) < 100_000
    with LangfuseReceiver() as receiver:
        status = post(
            receiver, bomb, Authorization=receiver.authorization, **{"Content-Encoding": "gzip"}
        )
        assert status == 413
        assert receiver.requests() == []


def test_a_huge_content_length_is_refused_before_reading() -> None:
    with LangfuseReceiver() as receiver:
        connection = http.client.HTTPConnection("127.0.0.1", int(receiver.url.rsplit(":", 1)[1]))
        connection.timeout = 10
        connection.putrequest("POST", "/api/public/otel/v1/traces")
        connection.putheader("Content-Length", str(MAX_REQUEST_BYTES + 1))
        connection.putheader("Authorization", receiver.authorization)
        connection.endheaders(b"x" * 1000)  # the server must not wait for the rest
        assert connection.getresponse().status == 413
        connection.close()


def test_a_chunked_body_without_content_length_gets_411() -> None:
    with LangfuseReceiver() as receiver:
        address = ("127.0.0.1", int(receiver.url.rsplit(":", 1)[1]))
        with socket.create_connection(address, timeout=10) as raw:
            head = "POST /api/public/otel/v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            raw.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())  # no chunk yet
            assert raw.recv(12) == b"HTTP/1.1 411"
        assert receiver.requests() == []


def test_a_body_at_the_cap_still_gets_an_answer() -> None:
    with LangfuseReceiver() as receiver:
        body = gzip.compress(b"\0" * 1000)
        status = post(
            receiver, body, Authorization=receiver.authorization, **{"Content-Encoding": "gzip"}
        )
    assert status == 400  # not protobuf; parsed, not refused for its size


@pytest.mark.parametrize("host", ["192.0.2.1"])  # TEST-NET: never bound here, nothing listens
def test_serve_warns_when_not_on_loopback(host: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "langfuse_otel_sessions", "serve", "--host", host, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert f"Warning: {host} is not a loopback address" in result.stderr


def get(receiver: LangfuseReceiver, path: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", int(receiver.url.rsplit(":", 1)[1]), 10)
    try:
        connection.request("GET", path, headers={"Host": host})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_the_page_answers_only_to_a_loopback_name() -> None:
    """A site the browser visits cannot rebind its name to 127.0.0.1 and read the sessions."""
    with LangfuseReceiver(require_auth=False) as receiver:
        assert get(receiver, "/api/overview", host="attacker.example:4318")[0] == 403
        assert get(receiver, "/", host="attacker.example")[0] == 403
        assert get(receiver, "/api/overview", host="localhost:4318")[0] == 200


def test_the_page_data_stays_bounded_however_long_a_span_name() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from langfuse_otel_sessions.testing._page import MAX_TEXT

    with LangfuseReceiver(require_auth=False) as receiver:
        provider = TracerProvider()
        exporter = OTLPSpanExporter(receiver.url + "/v1/traces")
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        for _ in range(3):
            provider.get_tracer("t").start_span("x" * 1_000_000).end()
        provider.shutdown()
        status, body = get(receiver, "/api/overview")
        assert status == 200
        assert len(body) < 3 * (MAX_TEXT + 1000)
