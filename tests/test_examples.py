"""Every example runs and does what it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from .servers import run_python

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> str:
    return run_python(str(EXAMPLES / name))


def test_quickstart_without_keys_shows_the_sessions_langfuse_would_show() -> None:
    out = run_example("quickstart.py")
    assert "No Langfuse keys set: sending to a local receiver" in out
    sessions = [line for line in out.splitlines() if line.startswith("session ")]
    assert len(sessions) == 2
    assert "user=alice  traces=2  observations in session=4/4" in sessions[0]
    assert "user=bob  traces=1  observations in session=2/2" in sessions[1]
    assert out.count("input='what is OTel?'  output='echo: what is OTel?'") == 1
    assert "no session id on this span" not in out
    assert out.count("   score helpful=") == 2  # each session's score, shown under it
    assert "   score helpful=1 (BOOLEAN)" in out.split(sessions[1])[0].split(sessions[0])[1]


def test_fastapi_example_puts_every_span_in_its_session() -> None:
    pytest.importorskip("fastapi")
    out = run_example("fastapi_app.py")
    assert "session chat-1  user=alice  traces=2  observations in session=8/8" in out
    assert "session chat-2  user=bob  traces=1  observations in session=4/4" in out


def test_flask_example_puts_every_span_in_its_session() -> None:
    pytest.importorskip("flask")
    out = run_example("flask_app.py")
    assert "session chat-a  traces=2  observations in session=4/4" in out
    assert "session chat-b  traces=1  observations in session=2/2" in out


def test_two_services_share_the_session_and_refuse_forged_baggage() -> None:
    pytest.importorskip("fastapi")
    out = run_example("two_services/run.py")
    assert out.count("'back saw session': 'conv-42'") == 2
    assert (
        "forged request: {'answer': 'based on docs about sneaky', 'back saw session': None}" in out
    )
    sessions = [line for line in out.splitlines() if line.startswith("session ")]
    assert sessions == ["session conv-42  traces=2  observations in session=16/16"]


def test_zero_code_example_exports_its_session_under_opentelemetry_instrument() -> None:
    import sys

    from langfuse_otel_sessions.testing import LangfuseReceiver

    from .servers import opentelemetry_instrument, run_command

    env = {"OTEL_TRACES_EXPORTER": "langfuse", "OTEL_METRICS_EXPORTER": "none"}
    with LangfuseReceiver() as receiver:
        run_command(
            [*opentelemetry_instrument(), sys.executable, str(EXAMPLES / "zero_code_app.py")],
            env={**env, "OTEL_LOGS_EXPORTER": "none", **receiver.env()},
        )
        view = receiver.sessions()["zero-code-demo"]
    assert sorted(span.name for span in view.spans) == ["answer", "chat gpt-4o"]
    assert view.observations_in_session == 2


def test_every_example_is_tested() -> None:
    scripts = {
        p.relative_to(EXAMPLES).as_posix()
        for p in EXAMPLES.rglob("*.py")
        if (not p.name.startswith("_") and p.parent.name != "two_services") or p.name == "run.py"
    }
    tested = {
        "quickstart.py",
        "fastapi_app.py",
        "flask_app.py",
        "two_services/run.py",
        "zero_code_app.py",
    }
    assert scripts == tested
