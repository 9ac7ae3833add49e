"""The HTTP transport shared by spans and scores, against a misbehaving server on loopback."""

from __future__ import annotations

import base64
import socket
import threading
import time

import pytest

from langfuse_otel_sessions.export.retry import RetryPolicy, otlp_policy, post_with_retries
from langfuse_otel_sessions.export.transport import MAX_RESPONSE_BYTES, HttpTransport, Reply

from .fault_server import Answer, fault_server

HEADERS = {"Content-Type": "application/json", "Authorization": "Basic c2VjcmV0"}


def test_a_redirect_is_an_answer_never_followed() -> None:
    with fault_server() as elsewhere:
        moved = Answer(307, b"", {"Location": f"{elsewhere.url}/v1/traces"})
        with fault_server(moved) as server:
            reply = HttpTransport(f"{server.url}/v1/traces").post(b"{}", HEADERS, 5)
    assert (reply.status, reply.ok) == (307, False)
    assert elsewhere.seen == []  # neither the body nor the credentials followed
    message = reply.describe("Langfuse", "LANGFUSE_BASE_URL")
    assert f"answered 307 to {elsewhere.url}/v1/traces" in message
    assert "set LANGFUSE_BASE_URL to that" in message


@pytest.mark.parametrize("body_only", [False, True])
def test_a_trickled_answer_ends_at_the_deadline(body_only: bool) -> None:
    with fault_server(Answer(200, b"x" * 1000, trickle=0.05, trickle_body=body_only)) as server:
        started = time.monotonic()
        reply = HttpTransport(server.url).post(b"{}", HEADERS, 1.0)
        elapsed = time.monotonic() - started
    assert reply.status is None
    assert reply.timed_out
    assert "within 1 s" in (reply.error or "")
    assert 0.9 < elapsed < 3.0  # the deadline, with room for a loaded machine


def test_a_huge_body_is_read_up_to_the_cap() -> None:
    with fault_server(Answer(400, body_size=200 * MAX_RESPONSE_BYTES)) as server:
        reply = HttpTransport(server.url).post(b"{}", HEADERS, 10)
        sent = server.sent_bytes
    assert reply.status == 400
    assert len(reply.body) == MAX_RESPONSE_BYTES
    assert sent < 200 * MAX_RESPONSE_BYTES  # the client stopped reading and closed


def test_a_refusal_carries_the_servers_message() -> None:
    refusal = Answer.json(400, {"message": "Invalid request data", "error": "x"})
    with fault_server(refusal, Answer.json(401, {"error": "Unauthorized"})) as server:
        transport = HttpTransport(server.url)
        first = transport.post(b"{}", HEADERS, 5)
        second = transport.post(b"{}", HEADERS, 5)
    assert first.describe("Langfuse", "-").endswith("answered 400: Invalid request data")
    assert second.message() == "Unauthorized"


def test_userinfo_is_sent_as_basic_auth_and_never_shown() -> None:
    with fault_server() as server:
        url = server.url.replace("http://", "http://user:tok%40en@") + "/v1/traces"
        transport = HttpTransport(url)
        reply = transport.post(b"{}", {}, 5)
    assert reply.ok
    assert "tok" not in repr(transport)
    assert "tok" not in reply.url
    assert server.seen[0].headers["authorization"] == "Basic " + base64.b64encode(
        b"user:tok@en"
    ).decode("ascii")


def test_a_connection_error_names_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reply = HttpTransport(f"http://127.0.0.1:{port}/x").post(b"", {}, 2)
    assert reply.status is None
    assert not reply.timed_out
    assert reply.describe("Langfuse", "-").startswith(
        f"Langfuse at http://127.0.0.1:{port}/x did not answer: ConnectionRefusedError"
    )


def test_keep_alive_connection_is_reused() -> None:
    with fault_server() as server:
        transport = HttpTransport(server.url)
        for _ in range(3):
            assert transport.post(b"{}", HEADERS, 5).ok
        assert len(server.seen) == 3
        transport.close()


def test_retries_follow_retry_after_within_one_deadline() -> None:
    busy = Answer(429, b"", {"Retry-After": "0.2"})
    with fault_server(busy, Answer(503), Answer(200)) as server:
        started = time.monotonic()
        policy = RetryPolicy(initial=0.05, deadline=5, statuses=otlp_policy(5).statuses)
        reply = post_with_retries(
            HttpTransport(server.url), b"{}", HEADERS, policy=policy, abort=threading.Event()
        )
    assert reply.ok
    assert len(server.seen) == 3
    assert time.monotonic() - started >= 0.2


def test_retries_stop_at_the_deadline_and_on_abort() -> None:
    with fault_server(default=Answer(503)) as server:
        transport = HttpTransport(server.url)
        started = time.monotonic()
        reply = post_with_retries(
            transport, b"{}", HEADERS, policy=otlp_policy(2.5), abort=threading.Event()
        )
        assert reply.status == 503
        assert time.monotonic() - started < 2.5  # never waits past the deadline
        abort = threading.Event()
        abort.set()
        count = len(server.seen)
        post_with_retries(transport, b"{}", HEADERS, policy=otlp_policy(30), abort=abort)
        assert len(server.seen) == count + 1


def test_a_client_error_is_not_retried() -> None:
    with fault_server(default=Answer(400)) as server:
        reply = post_with_retries(
            HttpTransport(server.url),
            b"{}",
            HEADERS,
            policy=otlp_policy(5),
            abort=threading.Event(),
        )
    assert reply.status == 400
    assert len(server.seen) == 1


def test_an_answer_cut_inside_its_headers_is_no_answer() -> None:
    """A server (or proxy) that hangs up after ``HTTP/1.1 200 Scr``: not a success."""
    with fault_server(Answer(200, b"{}", trickle=0.01)) as server:
        transport = HttpTransport(server.url)
        threading.Timer(0.3, server.stop.set).start()  # ~30 bytes: within the headers
        reply = transport.post(b"{}", HEADERS, 5)
    assert reply.status is None
    assert not reply.timed_out


# -- what a log line says about an answer that is not a success ------------------------------

_ROUTE = "/api/public/otel/v1/traces"


@pytest.mark.parametrize(
    ("location", "advice"),
    [  # the advice is a base URL that can be pasted, without the route we add to it
        (
            "https://eu.example/api/public/otel/v1/traces",
            "set LANGFUSE_BASE_URL to https://eu.example",
        ),
        (
            "https://eu.example/lf/api/public/otel/v1/traces/",
            "set LANGFUSE_BASE_URL to https://eu.example/lf",
        ),
        ("/lf/api/public/otel/v1/traces", "set LANGFUSE_BASE_URL to http://old.example/lf"),
        ("https://eu.example/login?next=x", "which is not its API: check LANGFUSE_BASE_URL"),
        ("http://[bad", "to an invalid Location (not followed): check LANGFUSE_BASE_URL"),
        ("", "without a Location (not followed): check LANGFUSE_BASE_URL"),
    ],
)
def test_redirect_advice_is_a_url_to_paste(location: str, advice: str) -> None:
    reply = Reply(f"http://old.example{_ROUTE}", 308, headers={"location": location})
    message = reply.describe("Langfuse", "LANGFUSE_BASE_URL", _ROUTE)
    assert message.endswith(advice)


def test_a_collector_redirect_advises_the_whole_url() -> None:
    reply = Reply("http://c:4318/v1/traces", 301, headers={"location": "http://d:4318/v1/traces"})
    message = reply.describe("the Collector", "endpoint")
    assert message.endswith("set endpoint to that")


def test_an_interim_status_is_not_called_an_answer_to_act_on() -> None:
    message = Reply("http://lf.example/x", 102).describe("Langfuse", "LANGFUSE_BASE_URL")
    assert "102, an interim status, and never a final one: nothing is known to have arrived" in (
        message
    )


def test_a_success_without_results_says_so() -> None:
    message = Reply("http://lf.example/x", 207, b"{}").describe("Langfuse", "LANGFUSE_BASE_URL")
    assert message.endswith("answered 207 without saying what became of what was sent ({})")
