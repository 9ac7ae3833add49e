"""The receiver (``LangfuseReceiver`` and ``python -m langfuse_otel_sessions serve``) takes
bounded request bodies: a huge Content-Length or a gzip bomb gets 413, not gigabytes of
memory; and ``serve`` warns when it listens beyond loopback."""

from __future__ import annotations

import gzip
import http.client
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
