"""SessionSampler with no code (OTEL_TRACES_SAMPLER=langfuse_session) and through configure()."""

from __future__ import annotations

import logging
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from langfuse_otel_sessions import (
    ConfigurationError,
    SessionSampler,
    SessionSpanProcessor,
    configure,
    session,
)
from langfuse_otel_sessions.spans.sampler import session_sampler_from_env
from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

from .servers import opentelemetry_instrument, run_command, run_python

__all__ = ["langfuse_receiver"]

SESSIONS = [f"zero-code-{i}" for i in range(40)]

APP = textwrap.dedent(
    """
    from opentelemetry import trace
    from langfuse_otel_sessions import session

    print(trace.get_tracer_provider().sampler.get_description())
    tracer = trace.get_tracer("zero-code-app")
    for i in range(40):
        with session(f"zero-code-{i}"):
            for turn in range(2):
                with tracer.start_as_current_span(f"turn {turn}"):
                    with tracer.start_as_current_span("llm call"):
                        pass
    """
)


def test_the_entry_point_is_registered_for_the_sdk_configurator() -> None:
    (entry,) = entry_points(group="opentelemetry_traces_sampler", name="langfuse_session")
    sampler = entry.load()("0.1")
    assert isinstance(sampler, SessionSampler)
    assert sampler.ratio == 0.1


@pytest.mark.parametrize("arg", [None, "", "ten percent", "1.5", "-0.1"])
def test_a_bad_sampler_arg_warns_and_keeps_every_session(
    arg: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "langfuse_otel_sessions"):
        assert session_sampler_from_env(arg).ratio == 1.0
    assert "OTEL_TRACES_SAMPLER_ARG" in caplog.text


def test_opentelemetry_instrument_samples_whole_sessions_with_no_code_change(
    tmp_path: Path, langfuse_receiver: LangfuseReceiver
) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {
        "OTEL_TRACES_EXPORTER": "langfuse",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_TRACES_SAMPLER": "langfuse_session",
        "OTEL_TRACES_SAMPLER_ARG": "0.5",
        **langfuse_receiver.env(),
    }
    out = run_command([*opentelemetry_instrument(), sys.executable, str(app)], env)
    assert out.strip() == "SessionSampler{0.5}"
    expected = {s for s in SESSIONS if SessionSampler(0.5).keeps_hash_of(s)}
    assert 0 < len(expected) < len(SESSIONS)
    received = langfuse_receiver.sessions()
    assert set(received) == expected
    for view in received.values():  # whole sessions: both turns, all spans
        assert len(view.traces) == 2
        assert len(view.spans) == 4


def test_configure_makes_the_global_provider_with_the_sampler_from_the_environment(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    code = textwrap.dedent(
        """
        from opentelemetry import trace
        import langfuse_otel_sessions as lf
        provider = lf.configure()
        print(provider.sampler.get_description())
        for i in range(40):
            with lf.session(f"zero-code-{i}"), trace.get_tracer("t").start_as_current_span("op"):
                pass
        """
    )
    env = {
        **langfuse_receiver.env(),
        "OTEL_TRACES_SAMPLER": "langfuse_session",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
    }
    out = run_python("-c", code, env=env, timeout=60)
    assert out.strip() == "SessionSampler{0.25}"
    expected = {s for s in SESSIONS if SessionSampler(0.25).keeps_hash_of(s)}
    assert set(langfuse_receiver.sessions()) == expected


def _memory_provider(
    sampler: SessionSampler | None = None,
) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider() if sampler is None else TracerProvider(sampler=sampler)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def test_configure_accepts_a_sampler_and_it_reads_sessions_like_the_processor_it_adds() -> None:
    provider, memory = _memory_provider()
    processor = SessionSpanProcessor(session_keys=("conversation_id",))  # guarded
    kept = next(f"c-{i}" for i in range(100) if SessionSampler(0.5).keeps_hash_of(f"c-{i}"))
    dropped = next(f"c-{i}" for i in range(100) if not SessionSampler(0.5).keeps_hash_of(f"c-{i}"))
    sampler = SessionSampler(0.5, fallback=ALWAYS_OFF)
    configure(provider, export=False, processor=processor, sampler=sampler)
    assert provider.sampler is sampler
    tracer = provider.get_tracer("t")
    for conversation in (kept, dropped):
        context = baggage.set_baggage("conversation_id", conversation, Context())
        tracer.start_span(conversation, context=context).end()
    assert [s.name for s in memory.get_finished_spans()] == [kept]


def test_a_sampler_given_to_the_provider_reads_like_the_processor_configure_adds() -> None:
    sampler = SessionSampler(0.5, fallback=ALWAYS_OFF)
    provider, memory = _memory_provider(sampler)
    processor = SessionSpanProcessor(session_keys=("conversation_id",))  # guarded
    configure(provider, export=False, processor=processor)
    configure(provider, export=False, sampler=sampler)  # again: still bound to that processor
    kept = next(f"c-{i}" for i in range(100) if sampler.keeps_hash_of(f"c-{i}"))
    context = baggage.set_baggage("conversation_id", kept, Context())
    provider.get_tracer("t").start_span("custom key", context=context).end()
    assert [s.name for s in memory.get_finished_spans()] == ["custom key"]


def test_configure_refuses_a_sampler_that_is_not_one() -> None:
    with pytest.raises(ConfigurationError):
        configure(TracerProvider(), export=False, sampler="langfuse_session")  # type: ignore[arg-type]


def test_session_scope_and_sampler_work_together_under_configure() -> None:
    provider, memory = _memory_provider()
    configure(
        provider,
        export=False,
        sampler=SessionSampler(0.0, always_keep=lambda _, user_id: user_id == "qa"),
    )
    tracer = provider.get_tracer("t")
    with session("customer"), tracer.start_as_current_span("customer turn"):
        pass
    with session("tester", user_id="qa"), tracer.start_as_current_span("qa turn"):
        pass
    assert [s.name for s in memory.get_finished_spans()] == ["qa turn"]


def test_the_python_blocks_of_the_sampling_guide_run(tmp_path: Path) -> None:
    import re

    guide = (Path(__file__).resolve().parent.parent / "docs" / "sampling.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, re.DOTALL)
    assert len(blocks) >= 3
    for index, block in enumerate(blocks):
        compile(block, "docs/sampling.md", "exec")
        if block.startswith("from langfuse_otel_sessions import SessionSampler, configure"):
            script = tmp_path / f"block{index}.py"
            script.write_text(block + "\nprint(type(configure().sampler).__name__)\n")
            env = {"LANGFUSE_PUBLIC_KEY": "pk-lf-x", "LANGFUSE_SECRET_KEY": "sk-lf-x"}
            env["LANGFUSE_BASE_URL"] = "http://127.0.0.1:9"
            assert run_python(str(script), env=env, timeout=60).strip() == "SessionSampler"
