"""LangfuseSpanExporter against the testing receiver, through the real SDK pipeline."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langfuse_otel_sessions import ConfigurationError, SessionSpanProcessor, session
from langfuse_otel_sessions.export.exporter import LangfuseSpanExporter
from langfuse_otel_sessions.testing import Fault, LangfuseReceiver, langfuse_receiver

__all__ = ["langfuse_receiver"]


class Pipeline:
    def __init__(self, exporter: LangfuseSpanExporter, **batch: Any) -> None:
        self.exporter = exporter
        self.provider = TracerProvider()
        self.provider.add_span_processor(SessionSpanProcessor())
        self.provider.add_span_processor(BatchSpanProcessor(exporter, **batch))
        self.tracer = self.provider.get_tracer("app")

    def flush(self) -> None:
        assert self.provider.force_flush(10_000)


@pytest.fixture
def direct(langfuse_receiver: LangfuseReceiver) -> Iterator[Pipeline]:
    pipeline = Pipeline(
        LangfuseSpanExporter(
            public_key=langfuse_receiver.public_key,
            secret_key=langfuse_receiver.secret_key,
            base_url=langfuse_receiver.url,
        )
    )
    yield pipeline
    pipeline.provider.shutdown()


def conversation(pipeline: Pipeline, session_id: str, turns: int = 2) -> None:
    for turn in range(turns):
        with (
            pipeline.tracer.start_as_current_span(f"{session_id} turn {turn}"),
            session(session_id, user_id=f"user-of-{session_id}"),
            pipeline.tracer.start_as_current_span("llm call"),
        ):
            pass


def test_direct_mode_delivers_sessions_with_auth_version_and_gzip(
    direct: Pipeline, langfuse_receiver: LangfuseReceiver
) -> None:
    conversation(direct, "s-a")
    conversation(direct, "s-b", turns=1)
    direct.flush()
    sessions = langfuse_receiver.sessions()
    assert sorted(sessions) == ["s-a", "s-b"]
    assert [t.name for t in sessions["s-a"].traces] == ["s-a turn 0", "s-a turn 1"]
    for view in sessions.values():
        assert view.observations_in_session == len(view.spans)  # every span, server span too
        assert {t.user_id for t in view.traces} == {f"user-of-{view.id}"}
    (request, *_) = langfuse_receiver.requests("traces")
    assert request.headers["authorization"] == langfuse_receiver.authorization
    assert request.headers["x-langfuse-ingestion-version"] == "4"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == "application/x-protobuf"
    assert request.headers["x-langfuse-sdk-name"] == "langfuse-otel-sessions"


def test_direct_mode_from_langfuse_environment_variables(
    monkeypatch: pytest.MonkeyPatch, langfuse_receiver: LangfuseReceiver
) -> None:
    for name, value in langfuse_receiver.env().items():
        monkeypatch.setenv(name, value)
    exporter = LangfuseSpanExporter()
    assert exporter.mode == "direct"
    assert exporter.endpoint == langfuse_receiver.traces_endpoint
    pipeline = Pipeline(exporter)
    conversation(pipeline, "from-env", turns=1)
    pipeline.flush()
    assert list(langfuse_receiver.sessions()) == ["from-env"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "https://cloud.langfuse.com/api/public/otel/v1/traces"),
        (
            {"LANGFUSE_HOST": "https://lf.internal/"},
            "https://lf.internal/api/public/otel/v1/traces",
        ),
        (
            {"LANGFUSE_HOST": "https://old", "LANGFUSE_BASE_URL": "https://new"},
            "https://new/api/public/otel/v1/traces",
        ),
    ],
)
def test_base_url_precedence(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert LangfuseSpanExporter(public_key="pk", secret_key="sk").endpoint == expected


def test_explicit_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_BASE_URL", "https://env")
    monkeypatch.setenv("LANGFUSE_OTEL_COLLECTOR_ENDPOINT", "http://collector:4318")
    exporter = LangfuseSpanExporter(public_key="pk", secret_key="sk", base_url="https://arg")
    assert (exporter.mode, exporter.endpoint) == ("direct", "https://arg/api/public/otel/v1/traces")


def test_other_backends_headers_never_reach_langfuse(
    monkeypatch: pytest.MonkeyPatch, langfuse_receiver: LangfuseReceiver
) -> None:
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team=hc-secret,authorization=Bearer other"
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "dd-api-key=dd-secret")
    pipeline = Pipeline(
        LangfuseSpanExporter(
            public_key=langfuse_receiver.public_key,
            secret_key=langfuse_receiver.secret_key,
            base_url=langfuse_receiver.url,
            headers={"x-proxy-token": "ours"},
        )
    )
    conversation(pipeline, "s", turns=1)
    pipeline.flush()
    (request,) = langfuse_receiver.requests("traces")
    assert request.status == 200
    assert "x-honeycomb-team" not in request.headers
    assert "dd-api-key" not in request.headers
    assert request.headers["authorization"] == langfuse_receiver.authorization
    assert request.headers["x-proxy-token"] == "ours"  # headers= are sent


def test_collector_mode_from_endpoint_argument(langfuse_receiver: LangfuseReceiver) -> None:
    exporter = LangfuseSpanExporter(
        endpoint=langfuse_receiver.traces_endpoint,
        headers={"Authorization": langfuse_receiver.authorization},
    )
    assert exporter.mode == "collector"
    pipeline = Pipeline(exporter)
    conversation(pipeline, "via-collector", turns=1)
    pipeline.flush()
    assert list(langfuse_receiver.sessions()) == ["via-collector"]


def test_collector_mode_from_our_variable_with_its_headers(
    monkeypatch: pytest.MonkeyPatch, langfuse_receiver: LangfuseReceiver
) -> None:
    monkeypatch.setenv("LANGFUSE_OTEL_COLLECTOR_ENDPOINT", langfuse_receiver.traces_endpoint)
    token = langfuse_receiver.authorization.split()[1]
    monkeypatch.setenv("LANGFUSE_OTEL_COLLECTOR_HEADERS", f"Authorization=Basic%20{token}")
    exporter = LangfuseSpanExporter()  # no Langfuse keys: the collector holds them
    assert exporter.mode == "collector"
    pipeline = Pipeline(exporter)
    conversation(pipeline, "env-collector", turns=1)
    pipeline.flush()
    assert list(langfuse_receiver.sessions()) == ["env-collector"]


@pytest.mark.parametrize(
    "name", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_otlp_variables_never_choose_the_destination(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "http://other-backend:4318/v1/traces")
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk")
    exporter = LangfuseSpanExporter()
    assert (exporter.mode, exporter.endpoint) == (
        "direct",
        "https://cloud.langfuse.com/api/public/otel/v1/traces",
    )


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("http://collector:4318/custom/path", "http://collector:4318/custom/path"),
    ],
)
def test_a_collector_url_without_a_path_gets_the_traces_path(given: str, used: str) -> None:
    assert LangfuseSpanExporter(endpoint=given).endpoint == used


def test_missing_credentials_fail_fast_without_network(
    monkeypatch: pytest.MonkeyPatch,
    langfuse_receiver: LangfuseReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("LANGFUSE_BASE_URL", langfuse_receiver.url)
    exporter = LangfuseSpanExporter()
    assert "LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY" in caplog.text
    pipeline = Pipeline(exporter)
    conversation(pipeline, "lost", turns=1)
    pipeline.flush()
    assert exporter.export([]) is SpanExportResult.FAILURE
    assert langfuse_receiver.requests() == []
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk")
    assert "set LANGFUSE_SECRET_KEY (" in (LangfuseSpanExporter()._route.problem or "")


def test_a_bad_base_url_in_the_environment_disables_rather_than_sending_to_the_cloud(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LANGFUSE_BASE_URL", "langfuse.internal:3000")
    exporter = LangfuseSpanExporter(public_key="pk", secret_key="sk")
    assert "LANGFUSE_BASE_URL must be an http(s) URL" in caplog.text
    assert exporter.export([]) is SpanExportResult.FAILURE


@pytest.mark.parametrize(
    "options",
    [
        {"base_url": "ftp://x"},
        {"endpoint": "collector:4318"},
        {"timeout": 0},
        {"compression": "zip"},
        {"public_key": ""},
        {"timeout": float("inf")},
        {"timeout": float("nan")},
        {"timeout": "10"},
        {"headers": {"x": 1}},
        {"collector_auth": "yes"},
    ],
)
def test_bad_explicit_configuration_raises(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        LangfuseSpanExporter(**options)


def test_secrets_never_appear_in_logs_or_reprs(
    langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk-lf-very-secret-value"
    exporter = LangfuseSpanExporter(
        public_key=langfuse_receiver.public_key, secret_key=secret, base_url=langfuse_receiver.url
    )
    pipeline = Pipeline(exporter)
    conversation(pipeline, "s", turns=1)
    pipeline.flush()  # 401: wrong secret
    assert [r.status for r in langfuse_receiver.requests()] == [401]
    encoded = base64.b64encode(f"{langfuse_receiver.public_key}:{secret}".encode()).decode()
    for text in (caplog.text, repr(exporter), repr(exporter._route)):
        assert secret not in text
        assert encoded not in text


def test_retries_transient_errors_and_delivers_once(
    direct: Pipeline, langfuse_receiver: LangfuseReceiver
) -> None:
    langfuse_receiver.fail_next("traces", 503, Fault(status=502))
    conversation(direct, "retried", turns=1)
    direct.flush()
    assert [r.status for r in langfuse_receiver.requests()] == [503, 502, 200]
    assert len(langfuse_receiver.spans()) == 2


def test_429_is_retried_after_retry_after(
    direct: Pipeline, langfuse_receiver: LangfuseReceiver
) -> None:
    langfuse_receiver.fail_next("traces", Fault(status=429, retry_after=0))
    conversation(direct, "throttled", turns=1)
    direct.flush()
    assert [r.status for r in langfuse_receiver.requests()] == [429, 200]
    assert len(langfuse_receiver.spans()) == 2


def test_export_returns_failure_and_never_raises(langfuse_receiver: LangfuseReceiver) -> None:
    exporter = LangfuseSpanExporter(
        public_key=langfuse_receiver.public_key,
        secret_key=langfuse_receiver.secret_key,
        base_url=langfuse_receiver.url,
        timeout=1,
    )
    langfuse_receiver.fail_next("traces", 400)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("t").start_span("one").end()
    batch = memory.get_finished_spans()
    assert exporter.export(batch) is SpanExportResult.FAILURE
    langfuse_receiver.stop()
    assert exporter.export(batch) is SpanExportResult.FAILURE  # connection refused
    langfuse_receiver.start()
    assert exporter.export(batch) is SpanExportResult.SUCCESS  # a 200 with a non-OTLP body
    exporter.shutdown()
    exporter.shutdown()
    assert exporter.export(batch) is SpanExportResult.FAILURE
    assert exporter.force_flush() is True


def test_completeness_across_batches_for_a_server_span_started_before_the_session(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    exporter = LangfuseSpanExporter(
        public_key=langfuse_receiver.public_key,
        secret_key=langfuse_receiver.secret_key,
        base_url=langfuse_receiver.url,
    )
    pipeline = Pipeline(exporter, max_export_batch_size=1, schedule_delay_millis=60_000)
    tracer = pipeline.tracer
    with tracer.start_as_current_span("POST /chat"):  # like the ASGI server span
        tracer.start_span("auth").end()
        pipeline.flush()  # "auth" leaves in its own batch before the session is known
        with session("late-session"):
            tracer.start_span("llm").end()
            pipeline.flush()
    pipeline.flush()
    view = langfuse_receiver.sessions()["late-session"]
    assert {s.name for s in view.spans} == {"POST /chat", "auth", "llm"}  # the whole trace
    # "auth" left before anyone knew the session: it is sent as it is; the server span,
    # exported last, gets it from what the exporter saw of its request.
    assert view.observations_in_session == 2
    (trace,) = view.traces
    assert trace.span("POST /chat").attributes["langfuse.session.id"] == "late-session"


def test_root_trace_io_shows_as_the_root_observation_s(
    direct: Pipeline, langfuse_receiver: LangfuseReceiver
) -> None:
    with direct.tracer.start_as_current_span("root") as root:
        root.set_attribute("langfuse.trace.input", "question")
        root.set_attribute("langfuse.trace.output", "answer")
    direct.flush()
    (trace,) = langfuse_receiver.traces().values()
    assert (trace.input, trace.output) == ("question", "answer")
