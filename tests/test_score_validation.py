"""Scores are validated completely and frozen at the call: whatever the caller passes or does
afterwards, either ``InvalidScoreError`` at the call or a score the receiver (Langfuse's rules)
accepts, with exactly what the call saw."""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langfuse_otel_sessions import InvalidScoreError, ScoreClient
from langfuse_otel_sessions.attributes import MAX_SCORE_EVENT_TEXT
from langfuse_otel_sessions.scores.model import MAX_METADATA_DEPTH, MAX_SCORE_BYTES
from langfuse_otel_sessions.testing import Fault, LangfuseReceiver, langfuse_receiver

from .conftest import score_client
from .test_scores import client

__all__ = ["client", "langfuse_receiver"]

TRACE = "5b8efff798038103d269b633813fc60c"


def nested(depth: int) -> dict[str, Any]:
    """A mapping ``depth`` levels deep (the top-level mapping is level 1)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def cyclic_dict() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


def cyclic_list() -> dict[str, Any]:
    loop: list[Any] = []
    loop.append(loop)
    return {"list": loop}


@pytest.mark.parametrize(
    "fields",
    [
        {"value": 10**400},
        {"value": -(10**400)},
        {"value": 10**400, "data_type": "BOOLEAN"},
        {"value": 1, "metadata": {"big": 10**400}},
        {"value": 1, "metadata": {"n": [1, {"x": math.nan}]}},
        {"value": 1, "metadata": {"n": {"x": -math.inf}}},
        {"value": 1, "metadata": cyclic_dict()},
        {"value": 1, "metadata": cyclic_list()},
        {"value": 1, "metadata": nested(5000)},
        {"value": 1, "metadata": nested(MAX_METADATA_DEPTH + 1)},
        {"value": 1, "metadata": {"when": datetime.datetime.now(datetime.timezone.utc)}},
        {"value": 1, "metadata": {"tags": {"a", "b"}}},
        {"value": 1, "metadata": {1: "a key that is not a string"}},
        {"value": 1, "comment": "c" * (MAX_SCORE_BYTES + 1)},
        {"value": 1, "comment": "€" * (MAX_SCORE_BYTES // 3 + 1)},  # counted in UTF-8 bytes
        {"string_value": "v" * (MAX_SCORE_BYTES + 1)},
        {"value": 1, "metadata": {"blob": "b" * MAX_SCORE_BYTES}},
        {"value": 1, "comment": "lone surrogate \ud800"},
        {"string_value": "fixed", "data_type": "CORRECTION"},  # on a session: Langfuse drops it
    ],
)
def test_what_langfuse_refuses_or_python_cannot_encode_raises_invalid_score_error(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver, fields: dict[str, Any]
) -> None:
    with pytest.raises(InvalidScoreError):
        client.score_session("s", name="n", **fields)
    assert client.flush(5)
    assert client.stats.queued == 0
    assert langfuse_receiver.requests() == []


class Exploding(Mapping[str, Any]):
    """A mapping of the caller's that fails when read."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise OSError("the backing store is gone")

    def __len__(self) -> int:
        return 1


def test_metadata_that_fails_when_read_raises_invalid_score_error(client: ScoreClient) -> None:
    with pytest.raises(InvalidScoreError, match="the backing store is gone"):
        client.score_session("s", name="n", value=1, metadata=Exploding())
    with pytest.raises(InvalidScoreError):
        client.score_session("s", name="n", value=1, metadata={"nested": Exploding()})


def test_limits_hold_exactly_at_their_edge(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    client.score_session("s", name="deep", value=1, metadata=nested(MAX_METADATA_DEPTH))
    client.score_session("s", name="huge int", value=2**1023, metadata={"n": -(2**1023)})
    client.score_session("s", name="big", value=1, comment="c" * (MAX_SCORE_BYTES - 200))
    assert client.flush(10)
    assert client.stats.delivered == 3
    assert {s["name"] for s in langfuse_receiver.scores()} == {"deep", "huge int", "big"}


def test_error_messages_say_where_the_metadata_is_wrong(client: ScoreClient) -> None:
    with pytest.raises(InvalidScoreError, match=r"'a.b\[1\]'.*not finite"):
        client.score_session("s", name="n", value=1, metadata={"a": {"b": [0, math.nan]}})
    with pytest.raises(InvalidScoreError, match="nested deeper than 20 levels"):
        client.score_session("s", name="n", value=1, metadata=cyclic_dict())


def test_a_score_is_frozen_at_the_call(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    """The issue's case: the caller changes its metadata after the call (adding a datetime)
    while the score still waits in the queue; the score is sent as it was, and the sender
    carries on with the next one."""
    hold = threading.Event()
    langfuse_receiver.fail_next("ingestion", Fault(release=hold))
    client.score_session("s", name="warm-up", value=1)
    assert langfuse_receiver.wait_for(lambda: langfuse_receiver.arrivals >= 1)
    metadata: dict[str, Any] = {"model": "m-1", "tags": ["a"]}
    client.score_session("s", name="frozen", value=1, metadata=metadata)
    called_at = datetime.datetime.now(datetime.timezone.utc)
    metadata["when"] = datetime.datetime.now(datetime.timezone.utc)
    metadata["tags"].append(object())
    metadata["model"] = "changed"
    time.sleep(0.01)  # the clock moves on before the score is sent (not a synchronisation)
    hold.set()
    assert client.flush(10)
    client.score_session("s", name="after", value=1)
    assert client.flush(10)
    scores = {s["name"]: s for s in langfuse_receiver.scores()}
    assert scores["frozen"]["metadata"] == {"model": "m-1", "tags": ["a"]}
    assert "after" in scores
    assert client.stats.delivered == 3
    (event,) = [
        event
        for request in langfuse_receiver.requests("ingestion")
        for event in json.loads(request.body)["batch"]
        if event["body"]["name"] == "frozen"
    ]
    sent_as = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert sent_as <= called_at  # the score's time is the call's, not the send's


def test_correction_scores_go_on_traces_and_observations(
    client: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    client.score_trace(
        TRACE, name="output", string_value="The corrected answer", data_type="CORRECTION"
    )
    client.score_trace(
        TRACE, observation_id="eee19b7ec3c1b174", name="o", value="fixed", data_type="correction"
    )
    assert client.flush(10)
    assert client.stats.delivered == 2
    scores = langfuse_receiver.scores()
    assert [(s["dataType"], s["value"]) for s in scores] == [
        ("CORRECTION", "The corrected answer"),
        ("CORRECTION", "fixed"),
    ]
    assert {s["name"] for s in scores} == {"output"}  # Langfuse stores corrections as "output"


@pytest.mark.parametrize(
    "fields",
    [
        {"value": 1, "data_type": "CORRECTION"},
        {"string_value": "fixed", "data_type": "CORRECTION", "config_id": "cfg"},
    ],
)
def test_correction_scores_langfuse_would_refuse_raise(
    client: ScoreClient, fields: dict[str, Any]
) -> None:
    with pytest.raises(InvalidScoreError):
        client.score_trace(TRACE, name="output", **fields)
    assert client.stats.queued == 0


def test_correction_on_a_session_names_the_reason(client: ScoreClient) -> None:
    with pytest.raises(InvalidScoreError, match="drops CORRECTION scores on sessions"):
        client.score_session("s", name="output", string_value="x", data_type="CORRECTION")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"value": 0.25, "comment": "judge says"},
            {"gen_ai.evaluation.score.value": 0.25, "gen_ai.evaluation.explanation": "judge says"},
        ),
        ({"value": 7}, {"gen_ai.evaluation.score.value": 7.0}),
        (
            {"value": False},
            {"gen_ai.evaluation.score.value": 0.0, "gen_ai.evaluation.score.label": "false"},
        ),
        ({"string_value": "relevant"}, {"gen_ai.evaluation.score.label": "relevant"}),
        (
            {"string_value": "misses step 2", "data_type": "TEXT"},
            {"gen_ai.evaluation.explanation": "misses step 2"},
        ),
        (
            {"string_value": "right output", "data_type": "CORRECTION", "comment": "typo"},
            {"gen_ai.evaluation.explanation": "typo"},
        ),
    ],
)
def test_every_score_is_also_a_gen_ai_evaluation_event(
    client: ScoreClient, fields: dict[str, Any], expected: dict[str, object]
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("judge"):
        client.score_trace(TRACE, name="quality", **fields)
    (span,) = exporter.get_finished_spans()
    assert [event.name for event in span.events] == ["langfuse.score", "gen_ai.evaluation.result"]
    attributes = dict(span.events[1].attributes or {})
    assert attributes == {"gen_ai.evaluation.name": "quality", **expected}
    value = attributes.get("gen_ai.evaluation.score.value")
    assert value is None or type(value) is float  # a double, as the convention says


def test_score_events_carry_bounded_strings(client: ScoreClient) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("judge"):
        client.score_trace(TRACE, name="n", value=1, comment="c" * 200_000)
    (span,) = exporter.get_finished_spans()
    for event in span.events:
        for value in (event.attributes or {}).values():
            assert not isinstance(value, str) or len(value) <= MAX_SCORE_EVENT_TEXT


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**320), max_value=10**320),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),  # surrogates included
    st.datetimes(),
    st.binary(max_size=3),
    st.frozensets(st.integers(), max_size=2),
)
metadata_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), children, max_size=3),
    ),
    max_leaves=12,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(metadata=st.dictionaries(st.text(max_size=8), metadata_values, max_size=4))
def test_any_metadata_is_refused_at_the_call_or_accepted_by_langfuse(
    langfuse_receiver: LangfuseReceiver, metadata: dict[Any, Any]
) -> None:
    client = score_client(langfuse_receiver)
    accepted = False
    with contextlib.suppress(InvalidScoreError):  # and nothing else may come out of the call
        client.score_session("s", name="n", value=1, metadata=metadata)
        accepted = True
    assert client.flush(10)
    client.shutdown(5)
    stats = client.stats
    assert (stats.delivered, stats.refused, stats.failed) == (int(accepted), 0, 0)
