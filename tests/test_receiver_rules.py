"""The receiver's view follows Langfuse's reading rules, for what users' frameworks
send as much as for what we send (raw OTLP/JSON posted to the receiver)."""

from __future__ import annotations

from typing import Any

import pytest

from langfuse_otel_sessions.testing import (
    LangfuseReceiver,
    TraceView,
    langfuse_receiver,
)

from .otlp_json import json_span, pairs, request_body
from .test_receiver import TRACES, post

__all__ = ["langfuse_receiver"]

TRACE_ID = "8f1e2d3c4b5a69788796a5b4c3d2e1f0"
ROOT = "00000000000000a1"


def span(
    span_id: str, name: str, parent: str | None = None, **attributes: object
) -> dict[str, Any]:
    named = {k.replace("__", ".").replace("_colon_", ":"): v for k, v in attributes.items()}
    return json_span(TRACE_ID, span_id, name, parent, named)


def send(
    receiver: LangfuseReceiver,
    *spans: dict[str, Any],
    scope: str = "",
    resource: dict[str, object] | None = None,
) -> TraceView:
    """Post ``spans`` (and ``resource`` attributes) under an instrumentation scope ``scope``;
    returns what the receiver shows for the trace."""
    shown_resource = None if resource is None else {"attributes": pairs(resource)}
    body = request_body(*spans, resource=shown_resource, scope={"name": scope})
    assert post(receiver, TRACES, body)[0] == 200
    return receiver.traces()[TRACE_ID]


@pytest.mark.parametrize(
    ("attributes", "name"),
    [
        ({}, "span name"),
        ({"gen_ai__tool__name": "search"}, "search"),
        ({"genkit_colon_name": "flow", "logfire__msg": "msg"}, "flow"),
        ({"logfire__msg": "agent run", "ai__toolCall__name": "tool"}, "agent run"),
        ({"ai__toolCall__name": "weather"}, "weather"),
        ({"ai__operationId": "ai.generateText"}, "ai.generateText"),
        (
            {"ai__operationId": "ai.generateText", "ai__telemetry__functionId": "chat"},
            "chat:ai.generateText",
        ),
        ({"gen_ai__tool__name": "", "logfire__msg": "fallback"}, "fallback"),
    ],
)
def test_the_trace_name_comes_from_the_root_observation_name(
    langfuse_receiver: LangfuseReceiver, attributes: dict[str, object], name: str
) -> None:
    shown = send(langfuse_receiver, span(ROOT, "span name", **attributes))
    assert shown.name == name


def test_a_trace_name_on_any_span_wins(langfuse_receiver: LangfuseReceiver) -> None:
    shown = send(
        langfuse_receiver,
        span(ROOT, "root", gen_ai__tool__name="tool"),
        span("00000000000000a2", "child", ROOT, langfuse__trace__name="chosen"),
    )
    assert shown.name == "chosen"


def test_root_io_falls_back_to_observation_and_framework_keys(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    shown = send(
        langfuse_receiver,
        span(ROOT, "root", langfuse__observation__input="obs-in", output__value="framework"),
    )
    assert (shown.input, shown.output) == ("obs-in", None)  # both-or-neither


def test_framework_io_when_no_langfuse_key_is_there(langfuse_receiver: LangfuseReceiver) -> None:
    shown = send(
        langfuse_receiver,
        span(ROOT, "root", traceloop__entity__input="t-in", output__value="o-out"),
    )
    assert (shown.input, shown.output) == ("t-in", None)  # Traceloop's pair is read first


def test_trace_keys_on_a_root_are_ignored(langfuse_receiver: LangfuseReceiver) -> None:
    shown = send(
        langfuse_receiver, span(ROOT, "root", langfuse__trace__input="Q", output__value="W")
    )
    assert (shown.input, shown.output) == (None, "W")


def test_app_roots_count_and_as_root_does_not(langfuse_receiver: LangfuseReceiver) -> None:
    remote = "00000000000000ff"
    shown = send(
        langfuse_receiver,
        span("00000000000000b1", "app", remote, langfuse__internal__is_app_root=True),
        span("00000000000000b2", "legacy", remote, langfuse__internal__as_root="true"),
    )
    assert [root.name for root in shown.roots] == ["app"]
    assert shown.name == "app"


def test_v4_trace_io_comes_from_a_root_never_from_a_span_under_a_remote_parent(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    remote = "00000000000000ff"
    io = {"langfuse.observation.input": "q", "langfuse.observation.output": "a"}
    shown = send(langfuse_receiver, span("00000000000000b1", "local", remote, **io))
    assert (shown.root, shown.input, shown.output) == (None, None, None)
    app_root = {"langfuse.internal.is_app_root": True, **io}
    shown = send(langfuse_receiver, span("00000000000000b2", "app", remote, **app_root))
    assert (shown.input, shown.output) == ("q", "a")


def test_non_string_ids_are_stringified(langfuse_receiver: LangfuseReceiver) -> None:
    shown = send(langfuse_receiver, span(ROOT, "root", session__id=42, user__id=True))
    assert (shown.session_id, shown.user_id) == ("42", "true")
    assert list(langfuse_receiver.sessions()) == ["42"]


def test_the_last_session_written_wins(langfuse_receiver: LangfuseReceiver) -> None:
    send(
        langfuse_receiver,
        span(ROOT, "root", langfuse__session__id="a"),
        span("00000000000000a2", "child", ROOT, langfuse__session__id="b"),
    )
    shown = send(langfuse_receiver, span("00000000000000a3", "late", ROOT, session__id="c"))
    assert shown.session_id == "c"
