"""Zero code (opentelemetry-instrument), one call (configure) and the local session view."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langfuse_otel_sessions import ConfigurationError, configure, session
from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

from .servers import opentelemetry_instrument, run_command, run_python
from .test_serve import Output, stop

__all__ = ["langfuse_receiver"]

APP = textwrap.dedent(
    """
    from opentelemetry import baggage, propagate, trace
    from langfuse_otel_sessions import session, current_session_id

    tracer = trace.get_tracer("zero-code-app")
    with tracer.start_as_current_span("request") as span:
        with session("zero-code-session", user_id="zc-user"):
            with tracer.start_as_current_span("llm call"):
                pass
    forged = propagate.extract({"baggage": "session.id=victim"})
    print("forged session seen:", baggage.get_baggage("session.id", forged))
    """
)


def run_instrumented(tmp_path: Path, receiver: LangfuseReceiver, **extra_env: str) -> str:
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {
        "OTEL_TRACES_EXPORTER": "langfuse",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **receiver.env(),
        **extra_env,
    }
    return run_command([*opentelemetry_instrument(), sys.executable, str(app)], env)


def test_opentelemetry_instrument_adds_the_processor_and_the_guard_with_no_code_change(
    tmp_path: Path, langfuse_receiver: LangfuseReceiver
) -> None:
    out = run_instrumented(tmp_path, langfuse_receiver)
    assert "forged session seen: None" in out  # the propagator guard is installed too
    session_view = langfuse_receiver.sessions()["zero-code-session"]
    assert sorted(s.name for s in session_view.spans) == ["llm call", "request"]
    (trace,) = session_view.traces
    assert trace.user_id == "zc-user"
    (request,) = langfuse_receiver.requests("traces")  # OTEL_TRACES_EXPORTER=langfuse
    assert request.headers["authorization"] == langfuse_receiver.authorization
    assert trace.span("llm call").attributes["langfuse.session.id"] == "zero-code-session"


def test_the_zero_code_hook_can_be_turned_off_by_name(
    tmp_path: Path, langfuse_receiver: LangfuseReceiver
) -> None:
    out = run_instrumented(
        tmp_path, langfuse_receiver, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="langfuse_sessions"
    )
    assert "forged session seen: victim" in out
    assert langfuse_receiver.sessions() == {}
    assert len(langfuse_receiver.spans()) == 2  # exported, but nothing stamped them


def test_configure_adds_processor_and_exporter_once(langfuse_receiver: LangfuseReceiver) -> None:
    from langfuse_otel_sessions import LangfuseSpanExporter

    provider = TracerProvider()
    exporter = LangfuseSpanExporter(
        public_key=langfuse_receiver.public_key,
        secret_key=langfuse_receiver.secret_key,
        base_url=langfuse_receiver.url,
    )
    assert configure(provider, exporter=exporter) is provider
    assert configure(provider, exporter=exporter) is provider  # idempotent
    with session("configured"), provider.get_tracer("t").start_as_current_span("op"):
        pass
    assert provider.force_flush(10_000)
    assert len(langfuse_receiver.spans()) == 1  # not exported twice
    assert list(langfuse_receiver.sessions()) == ["configured"]


def test_configure_without_export_only_stamps() -> None:
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    configure(provider, export=False)
    with session("stamped"), provider.get_tracer("t").start_as_current_span("op"):
        pass
    (span,) = memory.get_finished_spans()
    assert (span.attributes or {})["langfuse.session.id"] == "stamped"


def test_configure_refuses_a_provider_that_is_not_the_sdks() -> None:
    from opentelemetry.trace import NoOpTracerProvider

    with pytest.raises(ConfigurationError):
        configure(NoOpTracerProvider())  # type: ignore[arg-type]


def test_configure_sets_up_the_global_provider_when_there_is_none(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    code = textwrap.dedent(
        """
        from opentelemetry import trace
        import langfuse_otel_sessions as lf
        provider = lf.configure()
        assert trace.get_tracer_provider() is provider
        with lf.session("global"), trace.get_tracer("t").start_as_current_span("op"):
            pass
        """
    )
    run_python("-c", code, env=langfuse_receiver.env(), timeout=60)
    assert list(langfuse_receiver.sessions()) == ["global"]  # flushed at exit


def test_serve_prints_sessions_as_spans_arrive(tmp_path: Path) -> None:
    with LangfuseReceiver() as probe:  # a free port, released right away
        port = int(probe.url.rsplit(":", 1)[1])
    view = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "langfuse_otel_sessions",
            "serve",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert view.stdout is not None
    url = f"http://127.0.0.1:{port}"
    assert view.stdout.readline().startswith(f"Listening for OTLP/HTTP on {url}")
    sender = textwrap.dedent(
        """
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from langfuse_otel_sessions import SessionSpanProcessor, session
        provider = TracerProvider()
        provider.add_span_processor(SessionSpanProcessor())
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        tracer = provider.get_tracer("app")
        with session("seen-live"), tracer.start_as_current_span("root"):
            tracer.start_span("child").end()
        provider.shutdown()  # one batch
        """
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
    }
    subprocess.run([sys.executable, "-c", sender], env=env, check=True, timeout=60)
    out = "".join(Output(view).until("batch 1:"))
    stop(view)
    assert f"+2 spans · sessions: seen-live (new) · 1 sessions in all · {url}/" in out
