"""Scores follow the sampling decision: no score for a session Langfuse never received."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from langfuse_otel_sessions import ScoreClient, SessionSampler, session
from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

from .conftest import score_client
from .servers import run_python

__all__ = ["langfuse_receiver"]

RATIO = 0.5
CANDIDATES = [f"conversation-{i}" for i in range(100)]
KEPT = next(s for s in CANDIDATES if SessionSampler(RATIO).keeps_hash_of(s))
DROPPED = next(s for s in CANDIDATES if not SessionSampler(RATIO).keeps_hash_of(s))


@pytest.fixture
def make_client(langfuse_receiver: LangfuseReceiver) -> Iterator[type[ScoreClient]]:
    made: list[ScoreClient] = []

    def make(**options: object) -> ScoreClient:
        client = score_client(
            langfuse_receiver,
            **options,  # type: ignore[arg-type]
        )
        made.append(client)
        return client

    yield make  # type: ignore[misc]
    for client in made:
        client.shutdown(5)


def _scored_sessions(receiver: LangfuseReceiver, client: ScoreClient) -> set[str]:
    assert client.flush(10)
    return {score["sessionId"] for score in receiver.scores()}


def test_a_score_for_a_sampled_out_session_is_not_sent_and_is_counted(
    make_client, langfuse_receiver: LangfuseReceiver
) -> None:
    client = make_client(sampler=SessionSampler(RATIO))
    for session_id in (KEPT, DROPPED):
        assert client.score_session(session_id, name="helpful", value=True)  # an id either way
    assert _scored_sessions(langfuse_receiver, client) == {KEPT}
    stats = client.stats
    assert stats.sampled_out == 1
    assert stats.queued == 1
    assert stats.dropped == 0


def test_sessions_kept_by_an_allow_rule_keep_their_scores(
    make_client, langfuse_receiver: LangfuseReceiver
) -> None:
    sampler = SessionSampler(
        0.0, always_keep_sessions={DROPPED}, always_keep=lambda _, user_id: user_id == "qa"
    )
    client = make_client(sampler=sampler)
    client.score_session(DROPPED, name="listed session", value=True)
    with session(KEPT, user_id="qa"):  # the user is known inside the scope
        client.score_session(KEPT, name="tester in scope", value=True)
    client.score_session("conversation-x", name="user unknown", value=True)  # cannot tell: sent
    with session("conversation-y", user_id="customer"):
        client.score_session("conversation-y", name="customer", value=True)  # dropped
    assert client.flush(10)
    names = {score["name"] for score in langfuse_receiver.scores()}
    assert names == {"listed session", "tester in scope", "user unknown"}
    assert client.stats.sampled_out == 1


def test_trace_scores_and_clients_without_a_session_sampler_are_unaffected(
    make_client, langfuse_receiver: LangfuseReceiver
) -> None:
    client = make_client()  # the global provider has no SessionSampler in this process
    client.score_session(DROPPED, name="helpful", value=True)
    sampling = make_client(sampler=SessionSampler(0.0))
    sampling.score_trace(0xABC, name="latency_ok", value=True)
    assert client.flush(10)
    assert sampling.flush(10)
    assert {score["name"] for score in langfuse_receiver.scores()} == {"helpful", "latency_ok"}


def test_the_global_providers_session_sampler_is_followed_by_default(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    code = textwrap.dedent(
        f"""
        import langfuse_otel_sessions as lf

        lf.configure(sampler=lf.SessionSampler({RATIO}))
        for session_id in ({KEPT!r}, {DROPPED!r}):
            lf.score_session(session_id, name="goal", value=True)
        lf.flush_scores(10)
        print(lf.default_score_client().stats.sampled_out)
        """
    )
    out = run_python("-c", code, env=langfuse_receiver.env(), timeout=60)
    assert out.strip() == "1"
    assert {score["sessionId"] for score in langfuse_receiver.scores()} == {KEPT}


def test_a_session_sampler_set_after_the_first_score_is_followed(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    code = textwrap.dedent(
        f"""
        import langfuse_otel_sessions as lf

        provider = lf.configure(export=False)
        lf.score_session({KEPT!r}, name="before", value=True)
        lf.configure(provider, sampler=lf.SessionSampler({RATIO}))
        lf.score_session({DROPPED!r}, name="after", value=True)
        lf.flush_scores(10)
        print(lf.default_score_client().stats.sampled_out)
        """
    )
    assert run_python("-c", code, env=langfuse_receiver.env(), timeout=60).strip() == "1"
