"""``also_emit``: the ids under the names other tools read (``session.id``, ``user.id``,
``gen_ai.conversation.id``), never ``gen_ai.conversation.id`` for a generated session id."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from opentelemetry import propagate, trace

from langfuse_otel_sessions import (
    ConfigurationError,
    Session,
    SessionSpanProcessor,
    install_baggage_guard,
    session,
)
from langfuse_otel_sessions.baggage_keys import known_keys
from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

from .conftest import Traced, make_traced
from .servers import opentelemetry_instrument

__all__ = ["langfuse_receiver"]

SESSION = "session.id"
USER = "user.id"
CONVERSATION = "gen_ai.conversation.id"
OTHER_NAMES = (SESSION, USER, CONVERSATION)


def names_on(traced: Traced, name: str) -> dict[str, object]:
    attributes = traced.span(name).attributes or {}
    return {
        key: attributes[key] for key in (*OTHER_NAMES, "langfuse.session.id") if key in attributes
    }


def start_both(traced: Traced, name: str) -> None:
    """A span of the app and one of a third-party instrumentation (another tracer)."""
    with traced.tracer.start_as_current_span(name):
        traced.third_party.start_span(f"{name} (library)").end()


def test_otel_preset_stamps_every_name_on_app_and_third_party_spans() -> None:
    traced = make_traced(also_emit="otel")
    with session("chat-1", user_id="u-1"):
        start_both(traced, "turn")
    for name in ("turn", "turn (library)"):
        attributes = traced.span(name).attributes or {}
        assert attributes["langfuse.session.id"] == "chat-1"
        assert attributes[SESSION] == "chat-1"
        assert attributes[CONVERSATION] == "chat-1"
        assert attributes["langfuse.user.id"] == "u-1"
        assert attributes[USER] == "u-1"


@pytest.mark.parametrize(
    ("also_emit", "expected"),
    [
        (None, set()),
        ("openinference", {SESSION, USER}),
        ("gen_ai", {CONVERSATION}),
        (("openinference", "gen_ai"), set(OTHER_NAMES)),
        (["otel"], set(OTHER_NAMES)),
    ],
)
def test_each_convention_adds_its_names_only(also_emit: object, expected: set[str]) -> None:
    traced = make_traced(also_emit=also_emit)
    with session("chat-1", user_id="u-1"):
        start_both(traced, "turn")
    for name in ("turn", "turn (library)"):
        assert set(OTHER_NAMES).intersection(traced.span(name).attributes or {}) == expected


def test_a_session_started_without_an_id_gets_no_conversation_id() -> None:
    traced = make_traced(also_emit="otel")
    generated = Session.start()
    assert generated.id_generated
    with session(generated, user_id="u-1"):
        start_both(traced, "generated")
    with session(Session.start("given-id")):
        start_both(traced, "given")
    for name in ("generated", "generated (library)"):
        assert names_on(traced, name) == {
            "langfuse.session.id": generated.id,
            SESSION: generated.id,
            USER: "u-1",
        }
    for name in ("given", "given (library)"):
        assert names_on(traced, name)[CONVERSATION] == "given-id"


def test_nested_scopes_follow_the_scope_in_force() -> None:
    traced = make_traced(also_emit="otel")
    generated = Session.start()
    with session(generated):
        with session(generated.id):  # the same value, given explicitly: explicit
            traced.tracer.start_span("inner explicit").end()
        with session(generated, tags=["inner"]):  # the generated session again
            traced.tracer.start_span("inner generated").end()
        traced.tracer.start_span("outer after").end()
    with session("explicit-outer"):
        with session(Session.start()):
            traced.tracer.start_span("generated inside explicit").end()
        traced.tracer.start_span("explicit after").end()
    assert names_on(traced, "inner explicit").get(CONVERSATION) == generated.id
    assert CONVERSATION not in names_on(traced, "inner generated")
    assert CONVERSATION not in names_on(traced, "outer after")
    assert CONVERSATION not in names_on(traced, "generated inside explicit")
    assert names_on(traced, "explicit after")[CONVERSATION] == "explicit-outer"


def test_a_span_outside_the_scope_falls_back_without_a_conversation_id() -> None:
    traced = make_traced(also_emit="otel")
    generated = Session.start()
    with session(generated):
        parent = traced.tracer.start_span("request")
    parent_context = trace.set_span_in_context(parent)  # no baggage: the request's fallback
    worker = threading.Thread(
        target=lambda: traced.third_party.start_span("worker", context=parent_context).end()
    )
    worker.start()
    worker.join(timeout=10)
    parent.end()
    assert names_on(traced, "worker") == {
        "langfuse.session.id": generated.id,
        SESSION: generated.id,
    }


@pytest.mark.parametrize("given", [True, False], ids=["given", "generated"])
def test_the_exporter_completes_spans_under_every_name_too(given: bool) -> None:
    """A span that started before the scope (the request's root) is completed by the exporter:
    under the other names as well, ``gen_ai.conversation.id`` only for a given session."""
    chosen = Session.start("given-1") if given else Session.start()
    with LangfuseReceiver() as receiver:
        traced = make_traced(also_emit="otel").export_to(receiver)
        with traced.tracer.start_as_current_span("root"), session(chosen, user_id="u-1"):
            start_both(traced, "inside")
        assert receiver.wait_for_spans(3)
        received = {span.name: span for span in receiver.spans()}
        views = receiver.traces()
    expected = {
        "langfuse.session.id": chosen.id,
        SESSION: chosen.id,
        "langfuse.user.id": "u-1",
        USER: "u-1",
        **({CONVERSATION: chosen.id} if given else {}),
    }
    for name in ("root", "inside", "inside (library)"):
        attributes = received[name].attributes
        names = {key: attributes[key] for key in (*expected, CONVERSATION) if key in attributes}
        assert names == expected, name
    (view,) = views.values()
    assert view.session_id == chosen.id
    assert view.user_id == "u-1"


def test_an_explicit_attribute_on_a_span_still_wins() -> None:
    traced = make_traced(also_emit="otel")
    with session("chat-1"):
        traced.third_party.start_span("library", attributes={SESSION: "theirs"}).end()
    assert names_on(traced, "library") == {SESSION: "theirs"}


def test_forged_remote_baggage_reaches_none_of_the_names() -> None:
    traced = make_traced(also_emit="otel")
    install_baggage_guard()
    forged = {"baggage": "session.id=victim,langfuse_session_id=victim,user.id=mallory"}
    traced.tracer.start_span("server", context=propagate.extract(forged)).end()
    attributes = traced.span("server").attributes or {}
    assert not {*OTHER_NAMES, "langfuse.session.id"}.intersection(attributes)


def test_the_keys_registry_knows_the_names_and_which_take_given_ids_only() -> None:
    processor = SessionSpanProcessor(also_emit="otel")
    known = known_keys()
    assert {SESSION, CONVERSATION, "langfuse.session.id"} <= known.session_attributes
    assert {USER, "langfuse.user.id"} <= known.user_attributes
    assert known.given_session_attributes == {CONVERSATION}
    # reading precedence is unchanged: the baggage keys read for ids are the same
    assert processor.session_keys == SessionSpanProcessor().session_keys


@pytest.mark.parametrize("bad", ["bogus", ["otel", "bogus"], ["otel", 3], "OTEL,gen_ai", [""]])
def test_an_unknown_name_raises(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="also_emit must be one or more of"):
        SessionSpanProcessor(also_emit=bad)  # type: ignore[arg-type]


def test_the_environment_variable_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_OTEL_ALSO_EMIT", " OTel , gen_ai ")
    assert SessionSpanProcessor().also_emit == ("otel", "gen_ai")
    assert SessionSpanProcessor(also_emit=()).also_emit == ()  # the argument wins


def test_a_bad_environment_value_warns_and_emits_none(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LANGFUSE_OTEL_ALSO_EMIT", "otel,phoenix")
    with caplog.at_level(logging.WARNING, logger="langfuse_otel_sessions"):
        traced = make_traced()
    assert traced.processor.also_emit == ()
    assert "Ignoring LANGFUSE_OTEL_ALSO_EMIT='otel,phoenix'" in caplog.text
    assert "'openinference', 'gen_ai', 'otel'" in caplog.text
    with session("chat-1"):
        traced.tracer.start_span("turn").end()
    assert names_on(traced, "turn") == {"langfuse.session.id": "chat-1"}


# Zero code: no processor in the app's code, only opentelemetry-instrument and the variable.
ZERO_CODE_APP = """
from opentelemetry import trace
from langfuse_otel_sessions import Session, session

tracer = trace.get_tracer("app")
library = trace.get_tracer("opentelemetry.instrumentation.somelibrary")
with session("chat-given", user_id="alice"):
    with tracer.start_as_current_span("given turn"):
        library.start_span("given call").end()
with session(Session.start(), user_id="bob"):
    with tracer.start_as_current_span("generated turn"):
        library.start_span("generated call").end()
"""


def run_zero_code(tmp_path: Path, receiver: LangfuseReceiver, also_emit: str) -> str:
    app = tmp_path / "app.py"
    app.write_text(ZERO_CODE_APP)
    env = {
        "PYTHONPATH": str(Path(__file__).parent.parent),
        "OTEL_TRACES_EXPORTER": "langfuse",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "LANGFUSE_OTEL_ALSO_EMIT": also_emit,
        **receiver.env(),
    }
    argv = [*opentelemetry_instrument(), sys.executable, str(app)]
    result = subprocess.run(
        argv,
        env={"PATH": "", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_zero_code_the_variable_emits_the_names_and_langfuse_groups_as_before(
    tmp_path: Path, langfuse_receiver: LangfuseReceiver
) -> None:
    run_zero_code(tmp_path, langfuse_receiver, "otel")
    sessions = langfuse_receiver.sessions()
    generated = next(name for name in sessions if name != "chat-given")
    assert set(sessions) == {"chat-given", generated}
    assert generated.startswith("session_")
    (given_trace,) = sessions["chat-given"].traces
    assert given_trace.user_id == "alice"
    assert sessions["chat-given"].observations_in_session == 2
    for name in ("given turn", "given call"):
        attributes = given_trace.span(name).attributes
        assert attributes[SESSION] == attributes[CONVERSATION] == "chat-given"
        assert attributes[USER] == "alice"
    (generated_trace,) = sessions[generated].traces
    assert generated_trace.user_id == "bob"
    assert sessions[generated].observations_in_session == 2
    for name in ("generated turn", "generated call"):
        attributes = generated_trace.span(name).attributes
        assert attributes[SESSION] == generated
        assert CONVERSATION not in attributes


def test_zero_code_a_bad_value_warns_naming_the_variable(
    tmp_path: Path, langfuse_receiver: LangfuseReceiver
) -> None:
    stderr = run_zero_code(tmp_path, langfuse_receiver, "otel,phoenix")
    assert "Ignoring LANGFUSE_OTEL_ALSO_EMIT='otel,phoenix'" in stderr
    sessions = langfuse_receiver.sessions()
    assert "chat-given" in sessions  # sessions as before, without the other names
    assert not any(set(OTHER_NAMES) & span.attributes.keys() for span in langfuse_receiver.spans())
