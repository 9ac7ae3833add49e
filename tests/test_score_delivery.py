"""Delivery under trouble: one refused score costs only itself, the sender never dies, and the
queue is bounded in bytes as well as in count. Against the testing receiver (Langfuse's rules)."""

from __future__ import annotations

import json
import math
import threading
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import langfuse_otel_sessions.scores.sender as score_sender
from langfuse_otel_sessions.export.config import INGESTION_PATH
from langfuse_otel_sessions.export.http import RetryPolicy
from langfuse_otel_sessions.scores.batches import (
    MAX_BATCH_BYTES,
    Outcome,
    deliver_isolating,
    encode_batch,
)
from langfuse_otel_sessions.scores.model import FrozenScore, build_score
from langfuse_otel_sessions.scores.sender import ScoreSender
from langfuse_otel_sessions.testing import Fault, LangfuseReceiver, langfuse_receiver

from .conftest import score_client

__all__ = ["langfuse_receiver"]


@pytest.fixture
def sender(langfuse_receiver: LangfuseReceiver) -> Iterator[ScoreSender]:
    scores = ScoreSender(
        endpoint=langfuse_receiver.url + INGESTION_PATH,
        authorization=langfuse_receiver.authorization,
        policy=RetryPolicy(initial=0.01),
    )
    yield scores
    scores.shutdown(5)


def score(name: str, **fields: Any) -> FrozenScore:
    return build_score({"sessionId": "s"}, name=name, **{"value": 1, **fields}).frozen


def poisoned(name: str) -> FrozenScore:
    """A score our validation would never let through: its body holds ``NaN``, which is not
    JSON, so Langfuse refuses the whole request that carries it (400)."""
    body = {"id": f"poison-{name}", "name": name, "sessionId": "s", "value": math.nan}
    return FrozenScore(body["id"], name, json.dumps(body).encode(), time.time())


def invalid_for_langfuse(name: str) -> FrozenScore:
    """Well-formed JSON that Langfuse refuses per event (an empty TEXT value)."""
    body = {"id": f"bad-{name}", "name": name, "sessionId": "s", "value": "", "dataType": "TEXT"}
    return FrozenScore(body["id"], name, json.dumps(body).encode(), time.time())


def held_batch(
    sender: ScoreSender, receiver: LangfuseReceiver, scores: Sequence[FrozenScore]
) -> threading.Event:
    """Queue ``scores`` behind a held warm-up request, so that they leave as one batch."""
    hold = threading.Event()
    receiver.fail_next("ingestion", Fault(release=hold))
    sender.submit(score("warm-up"))
    assert receiver.wait_for(lambda: receiver.arrivals >= 1)
    for item in scores:
        assert sender.submit(item)
    return hold


def test_a_batch_refused_as_a_whole_costs_only_the_offending_score(
    sender: ScoreSender, langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    good = [score(f"good-{i}") for i in range(60)]
    batch = [*good[:37], poisoned("poison"), *good[37:]]
    held_batch(sender, langfuse_receiver, batch).set()
    assert sender.flush(20)
    assert {s["name"] for s in langfuse_receiver.scores()} == {
        "warm-up",
        *(s.name for s in good),
    }
    stats = sender.stats
    assert (stats.delivered, stats.refused, stats.failed) == (61, 1, 0)
    assert (
        "Langfuse refused score poison-poison ('poison'): 400 Invalid request data" in caplog.text
    )
    assert "body is not JSON" in caplog.text  # the server's own words
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
    assert sender.flush(10)
    assert sorted(s["name"] for s in langfuse_receiver.scores()) == ["a", "b", "warm-up"]
    assert (sender.stats.delivered, sender.stats.refused) == (3, 2)
    assert "TEXT value must be a string of 1-500 characters" in caplog.text
    assert len(langfuse_receiver.requests("ingestion")) == 2  # nothing re-sent


def test_isolation_works_with_any_batch_poster() -> None:
    """The splitting logic alone, over a poster that refuses any batch with a bad score."""
    scores = [score(f"n{i}") for i in range(100)]
    bad = {scores[3].id, scores[50].id, scores[99].id}
    requests: list[int] = []

    def post(batch: Sequence[FrozenScore]) -> Outcome:
        requests.append(len(batch))
        if any(item.id in bad for item in batch):
            return Outcome(refused_together=list(batch), batch_refusal="400 no")
        return Outcome(delivered=len(batch))

    tally = deliver_isolating(scores, post)
    assert tally.delivered == 97
    assert {item.id for item, _ in tally.refused} == bad
    assert all(message == "400 no" for _, message in tally.refused)
    assert len(requests) < 40


def test_the_sender_survives_a_failure_and_carries_on(
    sender: ScoreSender,
    langfuse_receiver: LangfuseReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = iter([RuntimeError("injected")])

    def failing_once(scores: Sequence[FrozenScore]) -> tuple[dict[str, FrozenScore], bytes]:
        for failure in failures:
            raise failure
        return encode_batch(scores)

    monkeypatch.setattr(score_sender, "encode_batch", failing_once)
    sender.submit(score("lost"))
    assert sender.flush(10)
    assert sender.stats.failed == 1
    assert "Score sender failed on a batch of 1" in caplog.text
    sender.submit(score("next"))
    assert sender.flush(10)
    assert [s["name"] for s in langfuse_receiver.scores()] == ["next"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_sender_thread_that_is_gone_is_replaced_by_the_next_call(
    sender: ScoreSender, langfuse_receiver: LangfuseReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even an exception the thread cannot catch (``SystemExit`` here) only costs the batch in
    hand: a score queued behind it is delivered by a new thread, and flush() returns."""
    entered, release = threading.Event(), threading.Event()

    def dies(scores: Sequence[FrozenScore]) -> tuple[dict[str, FrozenScore], bytes]:
        entered.set()
        release.wait(10)
        monkeypatch.undo()
        raise SystemExit("the thread ends here")

    monkeypatch.setattr(score_sender, "encode_batch", dies)
    sender.submit(score("in hand"))
    assert entered.wait(10)
    sender.submit(score("queued behind"))
    release.set()
    assert sender.flush(10)
    assert [s["name"] for s in langfuse_receiver.scores()] == ["queued behind"]
    assert (sender.stats.delivered, sender.stats.failed) == (1, 1)
    sender.submit(score("later"))
    assert sender.flush(10)
    assert sender.stats.delivered == 2


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
    assert "Score queue full (limit: 1000000 bytes)" in caplog.text
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
