"""Session scores against the testing receiver: validation, idempotency, faults, fork, exit."""

from __future__ import annotations

import json
import logging
import math
import os
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import langfuse_otel_sessions.scores.client as scores_module
from langfuse_otel_sessions import (
    InvalidIdError,
    InvalidScoreError,
    ScoreClient,
    Session,
    flush_scores,
    score_id,
    score_session,
    score_trace,
)
from langfuse_otel_sessions.testing import Fault, LangfuseReceiver, langfuse_receiver

from .conftest import score_client
from .servers import run_python

__all__ = ["langfuse_receiver"]


@pytest.fixture
def client(langfuse_receiver: LangfuseReceiver) -> Iterator[ScoreClient]:
    scores = score_client(langfuse_receiver)
    yield scores
    scores.shutdown(5)


@pytest.fixture
def default_client_from_env(
    monkeypatch: pytest.MonkeyPatch, langfuse_receiver: LangfuseReceiver
) -> Iterator[None]:
    for name, value in langfuse_receiver.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(scores_module, "_default", None)
    yield
    if scores_module._default is not None:
        scores_module._default.shutdown(5)


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll a condition under a deadline (for state with no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"name": "", "value": 1}, InvalidScoreError),
        ({"name": "x"}, InvalidScoreError),
        ({"name": "x", "value": 1, "string_value": "a"}, InvalidScoreError),
        ({"name": "x", "value": math.nan}, InvalidScoreError),
        ({"name": "x", "value": math.inf}, InvalidScoreError),
        ({"name": "x", "value": "high", "data_type": "NUMERIC"}, InvalidScoreError),
        ({"name": "x", "value": 2, "data_type": "BOOLEAN"}, InvalidScoreError),
        ({"name": "x", "value": 0.5, "data_type": "BOOLEAN"}, InvalidScoreError),
        ({"name": "x", "value": 3, "data_type": "CATEGORICAL"}, InvalidScoreError),
        ({"name": "x", "string_value": "y" * 501, "data_type": "TEXT"}, InvalidScoreError),
        ({"name": "x", "string_value": "", "data_type": "TEXT"}, InvalidScoreError),
        ({"name": "x", "value": 1, "data_type": "PERCENT"}, InvalidScoreError),
        ({"name": "x", "value": 1, "id": "a\rb"}, InvalidScoreError),
        ({"name": "x", "value": 1, "id": "i" * 801}, InvalidScoreError),
        ({"name": "x", "value": 1, "id": ""}, InvalidScoreError),
        ({"name": "x", "value": 1, "comment": 5}, InvalidScoreError),
        ({"name": "x", "value": 1, "metadata": {"o": object()}}, InvalidScoreError),
        ({"name": "x", "value": 1, "metadata": {"n": math.nan}}, InvalidScoreError),
        ({"name": "x", "value": 1, "metadata": ["not", "a", "mapping"]}, InvalidScoreError),
    ],
)
def test_invalid_scores_raise_before_anything_is_queued(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver, fields: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        client.score_session("s", **fields)
    assert issubclass(error, ValueError)
    assert client.flush(5)
    assert client.stats.queued == 0
    assert langfuse_receiver.requests() == []


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.score_session("", name="x", value=1), InvalidIdError),
        (lambda c: c.score_session("bad\nid", name="x", value=1), InvalidIdError),
        (lambda c: c.score_session(42, name="x", value=1), TypeError),
        (lambda c: c.score_trace(0, name="x", value=1), InvalidScoreError),
        (lambda c: c.score_trace(2**128, name="x", value=1), InvalidScoreError),
        (lambda c: c.score_trace("", name="x", value=1), InvalidScoreError),
        (lambda c: c.score_trace(1, observation_id=2**64, name="x", value=1), InvalidScoreError),
    ],
)
def test_invalid_targets_raise(
    client: ScoreClient, call: Callable[[ScoreClient], str], error: type
) -> None:
    with pytest.raises(error):
        call(client)
    assert client.stats.queued == 0


def test_data_types_are_inferred_and_accepted_by_langfuse(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    session = Session.start()
    client.score_session(session, name="liked", value=True)
    client.score_session(session, name="disliked", value=False)
    client.score_session(session, name="rating", value=4)
    client.score_session(session, name="latency", value=1.25)
    client.score_session(session, name="tone", string_value="warm")
    client.score_session(session, name="verdict", string_value="fine", data_type="text")
    client.score_session(session, name="flag", value=1, data_type="BOOLEAN")
    client.score_trace(
        0x5B8EFFF798038103D269B633813FC60C, observation_id=0xEEE19B7EC3C1B174, name="t", value=1
    )
    assert client.flush(10)
    assert client.stats.delivered == 8
    got = {s["name"]: (s["value"], s["dataType"]) for s in langfuse_receiver.scores()}
    assert got == {
        "liked": (1, "BOOLEAN"),
        "disliked": (0, "BOOLEAN"),
        "rating": (4, "NUMERIC"),
        "latency": (1.25, "NUMERIC"),
        "tone": ("warm", "CATEGORICAL"),
        "verdict": ("fine", "TEXT"),
        "flag": (1, "BOOLEAN"),
        "t": (1, "NUMERIC"),
    }
    (trace_score,) = [s for s in langfuse_receiver.scores() if s["name"] == "t"]
    assert trace_score["traceId"] == "5b8efff798038103d269b633813fc60c"
    assert trace_score["observationId"] == "eee19b7ec3c1b174"
    assert len(langfuse_receiver.sessions()[session.id].scores) == 7


def test_comment_metadata_and_config_id_travel(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    client.score_session(
        "s", name="n", value=1, comment="why", metadata={"k": [1, 2]}, config_id="cfg-1"
    )
    assert client.flush(10)
    (score,) = langfuse_receiver.scores()
    assert (score["comment"], score["metadata"], score["configId"]) == (
        "why",
        {"k": [1, 2]},
        "cfg-1",
    )


def test_a_given_id_is_sent_as_is_and_resending_replaces(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    assert client.score_session("s", name="helpful", value=0, id="fb-1") == "fb-1"
    assert client.flush(10)
    client.score_session("s", name="helpful", value=1, id="fb-1")
    assert client.flush(10)
    (score,) = langfuse_receiver.scores()
    assert (score["id"], score["value"]) == ("fb-1", 1)


def test_stable_ids_make_repeated_feedback_an_update(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    session = Session.start()
    first = score_id(session, "thumbs", "message-17")
    assert first == score_id(session.id, "thumbs", "message-17")
    assert first != score_id(session, "thumbs", "message-18")
    assert first != score_id(session, "stars", "message-17")
    for value in (True, False):
        client.score_session(session, name="thumbs", value=value, id=first)
        assert client.flush(10)
    (score,) = langfuse_receiver.scores()
    assert score["value"] == 0


def test_503_503_200_is_delivered_exactly_once(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    langfuse_receiver.fail_next("ingestion", 503, 503)
    client.score_session("s", name="n", value=1)
    assert client.flush(10)
    assert [r.status for r in langfuse_receiver.requests()] == [503, 503, 207]
    assert len(langfuse_receiver.scores()) == 1
    assert (client.stats.delivered, client.stats.retries, client.stats.failed) == (1, 2, 0)


def test_429_waits_for_retry_after(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    langfuse_receiver.fail_next("ingestion", Fault(status=429, retry_after="0.3"))
    client.score_session("s", name="n", value=1)
    assert client.flush(10)
    first, second = langfuse_receiver.requests()
    assert (first.status, second.status) == (429, 207)
    assert client.stats.delivered == 1


def test_400_is_not_retried_and_the_server_message_is_logged(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    langfuse_receiver.fail_next("ingestion", 400)
    score = client.score_session("s", name="n", value=1)
    assert client.flush(10) is False  # not every score was delivered, and flush says so
    assert [r.status for r in langfuse_receiver.requests()] == [400]
    assert (client.stats.refused, client.stats.failed) == (1, 0)
    assert f"Langfuse refused score {score} ('n'): 400 scripted fault" in caplog.text


def test_207_events_are_retried_only_when_their_own_status_is_transient(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    def partial(body: bytes) -> object:
        first, second, third = (event["id"] for event in json.loads(body)["batch"])
        return {
            "successes": [{"id": first, "status": 201}],
            "errors": [
                {"id": second, "status": 500, "message": "try again"},
                {"id": third, "status": 400, "message": "configId does not match"},
            ],
        }

    hold = threading.Event()
    langfuse_receiver.fail_next("ingestion", Fault(release=hold), Fault(status=207, answer=partial))
    client.score_session("s", name="warm-up", value=1)
    assert langfuse_receiver.wait_for(lambda: langfuse_receiver.arrivals >= 1)
    for name in ("a", "b", "c"):
        client.score_session("s", name=name, value=1)
    hold.set()
    assert client.flush(10) is False  # not every score was delivered, and flush says so
    *_, retry = langfuse_receiver.requests()
    assert [event["body"]["name"] for event in json.loads(retry.body)["batch"]] == ["b"]
    assert client.stats.delivered == 3  # warm-up, a (per the scripted answer), b (retried)
    assert (client.stats.refused, client.stats.failed) == (1, 0)
    assert "configId does not match" in caplog.text


def test_receiver_down_then_up_is_delivered(langfuse_receiver: LangfuseReceiver) -> None:
    client = score_client(langfuse_receiver)
    langfuse_receiver.stop()
    client.score_session("s", name="n", value=1)
    assert eventually(lambda: client.stats.retries >= 2)  # it kept trying while down
    langfuse_receiver.start()
    assert client.flush(10)
    assert client.stats.delivered == 1
    assert len(langfuse_receiver.scores()) == 1
    client.shutdown(5)


def test_gives_up_at_the_retry_deadline_counts_and_logs(
    langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    client = score_client(langfuse_receiver, timeout=1.2)
    langfuse_receiver.fail_next("ingestion", *[503] * 50)
    client.score_session("s", name="n", value=1)
    assert client.flush(10) is False  # not every score was delivered, and flush says so
    assert client.stats.failed == 1
    assert 2 <= len(langfuse_receiver.requests()) < 12  # bounded attempts, no retry storm
    assert "Gave up on 1 scores" in caplog.text
    client.shutdown(1)


def test_ten_threads_of_a_thousand_scores_are_each_delivered_once(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    ids: list[list[str]] = [[] for _ in range(10)]

    def scorer(thread: int) -> None:
        for i in range(1000):
            ids[thread].append(client.score_session(f"s-{thread}", name=f"n{i}", value=i))

    threads = [threading.Thread(target=scorer, args=(t,)) for t in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.flush(60)
    sent = {i for per_thread in ids for i in per_thread}
    assert len(sent) == 10_000
    received = [s["id"] for s in langfuse_receiver.scores()]
    assert sorted(received) == sorted(sent)
    accepted = sum(
        len(json.loads(r.body)["batch"]) for r in langfuse_receiver.requests() if r.status == 207
    )
    assert accepted == 10_000  # no score sent twice
    assert client.stats.delivered == 10_000
    assert client.stats.dropped == client.stats.failed == 0


def test_flush_returns_only_when_delivered_or_timed_out(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    hold = threading.Event()
    langfuse_receiver.fail_next("ingestion", Fault(release=hold))
    client.score_session("s", name="n", value=1)
    assert langfuse_receiver.wait_for(lambda: langfuse_receiver.arrivals >= 1)
    started = time.monotonic()
    assert client.flush(0.2) is False
    assert time.monotonic() - started >= 0.2
    assert langfuse_receiver.scores() == []
    hold.set()
    assert client.flush(10) is True
    assert len(langfuse_receiver.scores()) == 1


def test_score_is_a_span_event_on_the_recording_span(client: ScoreClient) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("handler"):
        score = client.score_session("s-1", name="helpful", value=True, comment="great")
    (span,) = exporter.get_finished_spans()
    ours, evaluation = span.events
    assert ours.name == "langfuse.score"
    assert dict(ours.attributes or {}) == {
        "langfuse.score.id": score,
        "langfuse.score.name": "helpful",
        "langfuse.score.value": 1,
        "langfuse.score.data_type": "BOOLEAN",
        "langfuse.score.session_id": "s-1",
        "langfuse.score.comment": "great",
    }
    assert evaluation.name == "gen_ai.evaluation.result"
    assert dict(evaluation.attributes or {}) == {
        "gen_ai.evaluation.name": "helpful",
        "gen_ai.evaluation.score.value": 1.0,
        "gen_ai.evaluation.score.label": "true",
        "gen_ai.evaluation.explanation": "great",
    }


def test_the_senders_http_calls_are_not_traced(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = RequestsInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client.score_session("s", name="n", value=1)
        assert client.flush(10)
        import requests

        requests.get(langfuse_receiver.url + "/api/public/otel/v1/traces", timeout=5)
    finally:
        instrumentor.uninstrument()
    assert [s.name for s in exporter.get_finished_spans()] == ["GET"]  # only our own call


def test_missing_credentials_drop_count_and_log_without_raising(
    monkeypatch: pytest.MonkeyPatch,
    langfuse_receiver: LangfuseReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("LANGFUSE_BASE_URL", langfuse_receiver.url)
    client = ScoreClient()
    assert (
        "ScoreClient: direct mode, nothing will be sent: "
        "set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY" in caplog.text
    )
    assert client.score_session("s", name="n", value=1)
    assert client.flush(1) is False  # nothing was delivered
    assert client.stats.dropped == 1
    assert langfuse_receiver.requests() == []


def test_secrets_stay_out_of_logs_and_reprs(
    langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk-lf-do-not-log-me"
    client = ScoreClient(langfuse_receiver.public_key, secret, langfuse_receiver.url)
    client.score_session("s", name="n", value=1)
    assert client.flush(10) is False  # not every score was delivered, and flush says so
    assert client.stats.failed == 1  # 401: not retried
    assert secret not in caplog.text
    assert secret not in repr(client)
    client.shutdown(1)


def test_shutdown_is_idempotent_and_later_scores_are_dropped(client: ScoreClient) -> None:
    client.score_session("s", name="n", value=1)
    assert client.shutdown(10) is True
    assert client.shutdown(10) is True
    client.score_session("s", name="late", value=1)
    assert client.stats.dropped == 1
    assert client.stats.delivered == 1


def test_module_functions_use_a_default_client_from_the_environment(
    default_client_from_env: None, langfuse_receiver: LangfuseReceiver
) -> None:
    session = Session.start()
    score_session(session, name="a", value=1)
    session.score(name="b", string_value="ok")
    score_trace("5b8efff798038103d269b633813fc60c", name="c", value=0.5)
    assert flush_scores(10)
    assert sorted(s["name"] for s in langfuse_receiver.scores()) == ["a", "b", "c"]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_sender_and_nothing_is_sent_twice(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    hold = threading.Event()
    langfuse_receiver.fail_next("ingestion", Fault(release=hold))
    client.score_session("s", name="parent-0", value=1)
    assert langfuse_receiver.wait_for(lambda: langfuse_receiver.arrivals >= 1)
    for i in range(1, 4):
        client.score_session("s", name=f"parent-{i}", value=1)
    pid = os.fork()
    if pid == 0:  # the child: its own sender, empty, working
        code = 1
        try:
            if client.stats.queued == 0:
                client.score_session("s", name="child", value=1)
                code = 0 if client.flush(10) and client.stats.delivered == 1 else 2
        finally:
            os._exit(code)
    hold.set()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.flush(10)
    names = sorted(s["name"] for s in langfuse_receiver.scores())
    assert names == ["child", "parent-0", "parent-1", "parent-2", "parent-3"]
    accepted = sum(
        len(json.loads(r.body)["batch"]) for r in langfuse_receiver.requests() if r.status == 207
    )
    assert accepted == 5


def test_scores_queued_at_interpreter_exit_are_delivered(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    script = textwrap.dedent(
        """
        from langfuse_otel_sessions import score_session
        for i in range(25):
            score_session("exit-session", name=f"n{i}", value=i)
        # no flush: the interpreter's exit must deliver them
        """
    )
    run_python("-c", script, env=langfuse_receiver.env(), timeout=60)
    assert len(langfuse_receiver.sessions()["exit-session"].scores) == 25


def test_shutdown_returns_promptly_when_langfuse_hangs(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    hold = threading.Event()
    langfuse_receiver.fail_next("ingestion", Fault(release=hold))
    client.score_session("s", name="stuck", value=1)
    assert langfuse_receiver.wait_for(lambda: langfuse_receiver.arrivals >= 1)
    client.score_session("s", name="queued behind it", value=1)
    started = time.monotonic()
    assert client.shutdown(0.5) is False
    assert time.monotonic() - started < 2
    assert client.stats.failed == 2  # the one in flight (not confirmed) and the queued one
    assert "2 scores not delivered (or not confirmed)" in caplog.text
    hold.set()
