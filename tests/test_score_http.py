"""Scores against a misbehaving server (redirects, trickled and huge answers, refusals), what
flush() tells the caller, and the sender's lifecycle (shutdown, garbage collection, exit)."""

from __future__ import annotations

import gc
import logging
import textwrap
import threading
import time

import pytest

from langfuse_otel_sessions import ConfigurationError, LangfuseSpanExporter, ScoreClient
from langfuse_otel_sessions.export.http import MAX_RESPONSE_BYTES
from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

from .conftest import score_client
from .fault_server import Answer, fault_server
from .servers import run_python

__all__ = ["langfuse_receiver"]
KEYS = {"public_key": "pk-lf-test", "secret_key": "sk-lf-test-secret"}


def client_for(url: str, **options: float) -> ScoreClient:
    settings = {"timeout": 5.0}
    return ScoreClient(base_url=url, **KEYS, **{**settings, **options})  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [301, 307, 308])
def test_a_redirect_fails_the_scores_and_nothing_follows_it(
    caplog: pytest.LogCaptureFixture, status: int
) -> None:
    with fault_server() as elsewhere:
        moved = Answer(status, b"", {"Location": f"{elsewhere.url}/api/public/ingestion"})
        with fault_server(default=moved) as server:
            client = client_for(server.url)
            client.score_session("s", name="helpful", value=1)
            assert client.flush(10) is False
            client.shutdown(1)
            assert len(server.seen) == 1  # not retried
        assert elsewhere.seen == []  # neither the score nor the key followed
    assert client.stats.failed == 1
    assert client.stats.delivered == 0
    assert f"answered {status} to {elsewhere.url}/api/public/ingestion" in caplog.text
    assert "(not followed): check base_url" in caplog.text


def test_a_trickling_server_holds_flush_and_shutdown_no_longer_than_their_bounds() -> None:
    trickle = Answer(200, b"{}" * 500, trickle=0.05)
    with fault_server(default=trickle) as server:
        client = client_for(server.url, timeout=1.5)
        client.score_session("s", name="helpful", value=1)
        started = time.monotonic()
        assert client.flush(10) is False  # given up: no answer within the deadline
        assert time.monotonic() - started < 5.0  # 1.5 s of retry deadline, with room
        client.score_session("s", name="again", value=1)
        started = time.monotonic()
        client.shutdown(1.0)
        assert time.monotonic() - started < 3.0
    assert client.stats.delivered == 0


def test_a_huge_answer_is_read_only_up_to_the_cap() -> None:
    with fault_server(default=Answer(200, body_size=100 * MAX_RESPONSE_BYTES)) as server:
        client = client_for(server.url)
        client.score_session("s", name="helpful", value=1)
        assert client.flush(10)
        client.shutdown(1)
        assert server.sent_bytes < 100 * MAX_RESPONSE_BYTES
    assert client.stats.delivered == 1


def test_a_refusal_logs_langfuses_message_and_the_url(caplog: pytest.LogCaptureFixture) -> None:
    refusal = Answer.json(401, {"message": "Invalid credentials. Confirm that you've configured"})
    with fault_server(default=refusal) as server:
        client = client_for(server.url)
        client.score_session("s", name="helpful", value=1)
        assert client.flush(10) is False
        client.shutdown(1)
    assert (
        f"1 scores failed: Langfuse at {server.url}/api/public/ingestion answered 401"
        in caplog.text
    )
    assert "Invalid credentials. Confirm" in caplog.text


def test_a_connection_error_names_the_url(caplog: pytest.LogCaptureFixture) -> None:
    with fault_server() as server:
        url = server.url
    client = client_for(url, timeout=0.5)
    client.score_session("s", name="helpful", value=1)
    assert client.flush(10) is False
    client.shutdown(1)
    assert f"Langfuse at {url}/api/public/ingestion did not answer" in caplog.text


# -- what flush() tells ------------------------------------------------------------------------


def test_flush_tells_when_nothing_was_delivered(
    monkeypatch: pytest.MonkeyPatch, langfuse_receiver: LangfuseReceiver
) -> None:
    monkeypatch.setenv("LANGFUSE_BASE_URL", langfuse_receiver.url)
    keyless = ScoreClient()
    keyless.score_session("s", name="n", value=1)
    assert keyless.flush(5) is False  # dropped: keys missing
    assert keyless.flush(5) is True  # nothing since
    client = ScoreClient(langfuse_receiver.public_key, langfuse_receiver.secret_key)
    client.score_session("s", name="n", value=1)
    assert client.flush(5) is True
    assert client.stats.delivered == 1
    for each in (keyless, client):
        each.shutdown(1)


# -- lifecycle ---------------------------------------------------------------------------------


def sender_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "langfuse-score-sender"}


def test_a_collected_client_stops_its_thread(langfuse_receiver: LangfuseReceiver) -> None:
    before = sender_threads()
    client = score_client(langfuse_receiver)
    client.score_session("s", name="n", value=1)
    (thread,) = sender_threads() - before
    del client
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()
    assert len(langfuse_receiver.scores()) == 1  # what it held was still sent


def test_a_shut_down_client_stops_its_thread(langfuse_receiver: LangfuseReceiver) -> None:
    before = sender_threads()
    client = score_client(langfuse_receiver)
    client.score_session("s", name="n", value=1)
    (thread,) = sender_threads() - before
    assert client.shutdown(5)
    thread.join(5)
    assert not thread.is_alive()


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": float("inf")},
        {"timeout": float("nan")},
        {"timeout": -1},
        {"max_queue_bytes": -1},
        {"max_queue_bytes": 0},
        {"public_key": ""},
        {"base_url": "ftp://x"},
    ],
)
def test_every_bad_argument_raises_configuration_error(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        ScoreClient(**options)  # type: ignore[arg-type]


class Seconds(float):
    """A float subclass, as numpy's ``float64`` is."""


@pytest.mark.parametrize("bad", [True, "5", 0, float("nan")])
def test_the_exporter_and_the_score_client_take_the_same_numbers(bad: object) -> None:
    LangfuseSpanExporter(timeout=Seconds(5), **KEYS).shutdown()
    assert ScoreClient(timeout=Seconds(5), max_queue_bytes=Seconds(1e6), **KEYS).shutdown()
    for make in (LangfuseSpanExporter, ScoreClient):
        with pytest.raises(ConfigurationError, match="timeout must be a positive, finite number"):
            make(timeout=bad, **KEYS)  # type: ignore[arg-type]


def test_one_info_line_names_the_destination_and_its_source(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "langfuse_otel_sessions")
    monkeypatch.setenv("LANGFUSE_BASE_URL", "https://user:pa55word@lf.example")
    client = ScoreClient(**KEYS)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "ScoreClient: direct mode, scores to https://***@lf.example/api/public/ingestion "
        "(from LANGFUSE_BASE_URL)"
    ]
    assert "pa55word" not in repr(client)
    client.shutdown(1)


def test_exit_with_many_clients_is_bounded_overall() -> None:
    """Ten clients, each with scores held by a server that trickles its answer: exit takes
    about one ``exit_timeout``, not ten."""
    trickle = Answer(200, b"{}" * 5000, trickle=0.2)
    with fault_server(default=trickle) as server:
        script = textwrap.dedent(
            f"""
            import time
            from langfuse_otel_sessions import ScoreClient
            clients = [
                ScoreClient("pk", "sk", "{server.url}", timeout=1.5)
                for _ in range(10)
            ]
            for client in clients:
                client.score_session("s", name="n", value=1)
            print(time.monotonic(), flush=True)
            """
        )
        started = time.monotonic()
        run_python("-c", script, timeout=60)
        elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed  # one bound of 1.5 s plus interpreter start, not 10 x 1.5 s


@pytest.mark.parametrize("body", [b"not json", b"[]"])
def test_a_207_without_results_delivers_nothing(body: bytes) -> None:
    with fault_server(default=Answer(207, body)) as server:
        client = client_for(server.url, timeout=0.5)
        client.score_session("s", name="helpful", value=1)
        assert client.flush(10) is False
        client.shutdown(1)
    assert (client.stats.delivered, client.stats.failed) == (0, 1)


def test_an_interim_status_is_not_a_refusal(caplog: pytest.LogCaptureFixture) -> None:
    with fault_server(default=Answer(102, b"")) as server:
        client = client_for(server.url, timeout=1)
        client.score_session("s", name="helpful", value=1)
        assert client.flush(10) is False
        client.shutdown(1)
    assert "refused" not in caplog.text
    assert "did not answer: no answer within" in caplog.text  # interim answers are skipped
