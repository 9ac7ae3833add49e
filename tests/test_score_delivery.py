"""Delivery under trouble: one refused score costs only itself, the sender never dies, and the
queue is bounded in bytes as well as in count. Against the testing receiver (Langfuse's rules)."""

from __future__ import annotations

import json
import math
import threading
import time
import tracemalloc
from collections.abc import Iterator, Sequence

import pytest

import langfuse_otel_sessions.scores.sender as score_sender
from langfuse_otel_sessions.export.config import INGESTION_PATH, Route
from langfuse_otel_sessions.scores.model import Score, build_score
from langfuse_otel_sessions.scores.sender import MAX_BATCH_BYTES, ScoreSender, encode_batch
from langfuse_otel_sessions.testing import Fault, LangfuseReceiver, langfuse_receiver

from .conftest import score_client

__all__ = ["langfuse_receiver"]


@pytest.fixture
def sender(langfuse_receiver: LangfuseReceiver) -> Iterator[ScoreSender]:
    headers = {"Authorization": langfuse_receiver.authorization}
    url = langfuse_receiver.url + INGESTION_PATH
    route = Route("direct", url, "the test", "base_url", headers)
    scores = ScoreSender(route, timeout=60.0, max_queue_bytes=32_000_000)
    yield scores
    scores.shutdown(5)


def score(name: str, comment: str | None = None) -> Score:
    return build_score({"sessionId": "s"}, name=name, value=1, comment=comment)


def poisoned(name: str) -> Score:
    """A score our validation would never let through, queued as if small: its comment alone
    is larger than Langfuse takes, so Langfuse refuses every request that carries it (413)."""
    comment = "p" * 3_600_000
    body = {"id": f"poison-{name}", "name": name, "sessionId": "s", "value": 1, "comment": comment}
    return Score(body, 100, time.time())


def invalid_for_langfuse(name: str) -> Score:
    """Well-formed JSON that Langfuse refuses per event (an empty TEXT value)."""
    body = {"id": f"bad-{name}", "name": name, "sessionId": "s", "value": "", "dataType": "TEXT"}
    return Score(body, 100, time.time())


def held_batch(
    sender: ScoreSender, receiver: LangfuseReceiver, scores: Sequence[Score]
) -> threading.Event:
    """Queue ``scores`` behind a held warm-up request, so that they leave as one batch."""
    hold = threading.Event()
    receiver.fail_next("ingestion", Fault(release=hold))
    sender.submit(score("warm-up"))
    assert receiver.wait_for(lambda: receiver.arrivals >= 1)
    for item in scores:
        sender.submit(item)
    return hold


def test_a_batch_refused_as_a_whole_costs_only_the_offending_score(
    sender: ScoreSender, langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    good = [score(f"good-{i}") for i in range(60)]
    batch = [*good[:37], poisoned("poison"), *good[37:]]
    held_batch(sender, langfuse_receiver, batch).set()
    assert sender.flush(20) is False  # one score was refused
    assert {s["name"] for s in langfuse_receiver.scores()} == {
        "warm-up",
        *(s.body["name"] for s in good),
    }
    stats = sender.stats
    assert (stats.delivered, stats.refused, stats.failed) == (61, 1, 0)
    assert (
        "Langfuse refused score poison-poison ('poison'): 413 Request body too large" in caplog.text
    )
    posted = langfuse_receiver.requests("ingestion")
    assert len(posted) <= 2 + 2 * math.ceil(math.log2(len(batch)))  # halving, not one by one
    accepted = [
        event["body"]["name"]
        for request in posted
        if request.status == 207
        for event in json.loads(request.body)["batch"]
    ]
    assert len(accepted) == len(set(accepted))  # no good score was posted twice


def test_per_event_refusals_cost_only_those_scores_and_are_logged(
    sender: ScoreSender, langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    batch = [score("a"), invalid_for_langfuse("empty"), score("b"), invalid_for_langfuse("also")]
    held_batch(sender, langfuse_receiver, batch).set()
    assert sender.flush(10) is False  # two scores were refused
    assert sorted(s["name"] for s in langfuse_receiver.scores()) == ["a", "b", "warm-up"]
    assert (sender.stats.delivered, sender.stats.refused) == (3, 2)
    assert "TEXT value must be a string of 1-500 characters" in caplog.text
    assert len(langfuse_receiver.requests("ingestion")) == 2  # nothing re-sent


def test_the_sender_survives_a_failure_and_carries_on(
    sender: ScoreSender,
    langfuse_receiver: LangfuseReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = iter([RuntimeError("injected")])

    def failing_once(scores: Sequence[Score]) -> tuple[dict[str, Score], bytes]:
        for failure in failures:
            raise failure
        return encode_batch(scores)

    monkeypatch.setattr(score_sender, "encode_batch", failing_once)
    sender.submit(score("lost"))
    assert sender.flush(10) is False
    assert sender.stats.failed == 1
    assert "Score sender failed on a batch of 1" in caplog.text
    sender.submit(score("next"))
    assert sender.flush(10)
    assert [s["name"] for s in langfuse_receiver.scores()] == ["next"]


def test_the_queue_is_bounded_in_bytes_and_drops_are_counted_and_logged(
    langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    client = score_client(langfuse_receiver, max_queue_bytes=1_000_000)
    hold = threading.Event()
    langfuse_receiver.fail_next("ingestion", Fault(release=hold))
    client.score_session("s", name="in flight", value=1)
    assert langfuse_receiver.wait_for(lambda: langfuse_receiver.arrivals >= 1)
    comment = "c" * 100_000
    for i in range(50):  # 5 MB of comments
        client.score_session("s", name=f"n{i}", value=i, comment=comment)
    assert client.stats.dropped == 41  # nine 100 KB scores fit in 1 MB
    assert "Score queue full (1000000 bytes)" in caplog.text
    hold.set()
    assert client.flush(10) is False  # not every score was delivered, and flush says so
    assert client.stats.delivered == 10
    client.shutdown(5)


def test_a_queued_score_costs_about_its_bytes_and_no_more(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    """The queue keeps only the serialised score: the caller's comment and metadata are not
    kept alive beside it, so the byte bound is the memory bound."""
    client = score_client(langfuse_receiver)
    hold = threading.Event()
    langfuse_receiver.fail_next("ingestion", Fault(release=hold))
    client.score_session("s", name="in flight", value=1)
    assert langfuse_receiver.wait_for(lambda: langfuse_receiver.arrivals >= 1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20):
            client.score_session(
                "s",
                name=f"n{i}",
                value=i,
                comment=f"{i}" + "c" * 100_000,
                metadata={"m": "x" * 50_000},
            )
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1.2 * 20 * 150_000
    hold.set()
    assert client.flush(10)
    client.shutdown(5)


def test_large_scores_leave_in_requests_langfuse_takes(
    sender: ScoreSender, langfuse_receiver: LangfuseReceiver
) -> None:
    big = [score(f"n{i}", comment="c" * 400_000) for i in range(20)]  # 8 MB in all
    held_batch(sender, langfuse_receiver, big).set()
    assert sender.flush(20)
    assert sender.stats.delivered == 21
    for request in langfuse_receiver.requests("ingestion"):
        assert len(request.body) <= MAX_BATCH_BYTES
        assert request.status == 207
