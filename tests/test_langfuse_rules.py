"""Langfuse's reading rules, as the mapping and the receiver share them."""

from __future__ import annotations

import pytest

from langfuse_otel_sessions.export.langfuse_rules import IoRead, langfuse_text, read_io
from langfuse_otel_sessions.testing._model import observation_name, session_id_of


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("s", "s"),
        ("", None),
        (None, None),
        (42, "42"),
        (1.0, "1"),
        (1.5, "1.5"),
        (float("nan"), "null"),
        (True, "true"),
        ((1, "a"), '[1,"a"]'),
        ("é", "é"),
    ],
)
def test_values_become_text_as_javascript_writes_them(value: object, text: str | None) -> None:
    assert langfuse_text(value) == text


def test_session_keys_in_priority_order_and_empty_values_skipped() -> None:
    attributes = {"langfuse.session.id": "", "session.id": 7, "gen_ai.conversation.id": "c"}
    assert session_id_of(attributes) == "7"


def test_one_langfuse_key_takes_both_sides() -> None:
    read = read_io({"langfuse.observation.output": "o", "input.value": "i"})
    assert read == IoRead(None, "o", None, "langfuse.observation.output")


def test_the_legacy_trace_read_prefers_trace_keys() -> None:
    attributes = {"langfuse.trace.input": "t", "langfuse.observation.input": "o"}
    assert read_io(attributes, domain="trace").input == "t"
    assert read_io(attributes).input == "o"


def test_frameworks_are_tried_in_langfuses_order() -> None:
    attributes = {"mlflow.spanOutputs": "m", "traceloop.entity.input": "t", "input.value": "i"}
    assert read_io(attributes) == IoRead(None, "m", None, "mlflow.spanOutputs")


def test_composed_sides_name_no_key() -> None:
    read = read_io({"gen_ai.prompt.0.content": "hi"})
    assert read.input == {"gen_ai.prompt.0.content": "hi"}
    assert read.input_key is None
    events = (("gen_ai.user.message", {"content": "hi"}), ("gen_ai.choice", {"text": "yo"}))
    assert read_io({}, events=events) == IoRead([{"role": "user", "content": "hi"}], {"text": "yo"})


def test_scope_gated_frameworks() -> None:
    genkit = {"genkit:input": '{"messages": [1]}', "genkit:output": '{"message": 2}'}
    assert read_io(genkit, "genkit-tracer") == IoRead([1], 2)
    assert read_io(genkit) == IoRead()  # without the scope these keys mean nothing


def test_the_fast_test_agrees_with_the_read() -> None:
    assert read_io({"http.route": "/"}) == IoRead()
    assert read_io({"llm.output_messages.0.content": "x"}).output == {
        "llm.output_messages.0.content": "x"
    }


def test_observation_names() -> None:
    assert observation_name("s", {"ai.operationId": "op", "ai.telemetry.functionId": ""}) == "op"
    assert observation_name("s", {"gen_ai.tool.name": 5}) == "5"
