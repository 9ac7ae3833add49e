"""Where spans go, what is said about it, and what a misbehaving server can do to an export.

Langfuse credentials go only to Langfuse; Collector mode is explicit; one INFO line names the
mode, URL and its source; userinfo never shows; 3xx, trickled and huge answers are bounded
failures with useful messages (the fault server is scripted per request, on loopback)."""

from __future__ import annotations

import logging
import time

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langfuse_otel_sessions import LangfuseSpanExporter
from langfuse_otel_sessions.export.http import MAX_RESPONSE_BYTES
from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

from .fault_server import Answer, fault_server

__all__ = ["langfuse_receiver"]
KEYS = {"public_key": "pk-lf-test", "secret_key": "sk-lf-test-secret"}


def some_spans(count: int = 2) -> tuple[ReadableSpan, ...]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for i in range(count):
        provider.get_tracer("t").start_span(f"span {i}", attributes={"session.id": "s"}).end()
    return memory.get_finished_spans()


# -- which destination, with which headers ------------------------------------------------------


@pytest.mark.parametrize(("asked", "auth_sent"), [(None, False), (False, False), (True, True)])
def test_langfuse_auth_reaches_a_collector_only_when_asked(
    monkeypatch: pytest.MonkeyPatch,
    langfuse_receiver: LangfuseReceiver,
    asked: bool | None,
    auth_sent: bool,
) -> None:
    collector = LangfuseReceiver(require_auth=False)
    with collector:
        for name, value in langfuse_receiver.env().items():  # keys set, e.g. for the scores
            monkeypatch.setenv(name, value)
        exporter = LangfuseSpanExporter(endpoint=collector.traces_endpoint, collector_auth=asked)
        assert exporter.export(some_spans()) is SpanExportResult.SUCCESS
        (request,) = collector.requests("traces")
    assert ("authorization" in request.headers) is auth_sent
    assert ("x-langfuse-ingestion-version" in request.headers) is auth_sent
    assert langfuse_receiver.requests() == []


def test_collector_auth_from_our_variable(
    monkeypatch: pytest.MonkeyPatch, langfuse_receiver: LangfuseReceiver
) -> None:
    for name, value in langfuse_receiver.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LANGFUSE_OTEL_COLLECTOR_ENDPOINT", langfuse_receiver.traces_endpoint)
    monkeypatch.setenv("LANGFUSE_OTEL_COLLECTOR_AUTH", "true")
    exporter = LangfuseSpanExporter()
    assert exporter.export(some_spans()) is SpanExportResult.SUCCESS
    (request,) = langfuse_receiver.requests("traces")
    assert request.headers["authorization"] == langfuse_receiver.authorization


def test_collector_auth_without_keys_sends_nothing_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with fault_server() as collector:
        exporter = LangfuseSpanExporter(endpoint=collector.url, collector_auth=True)
        assert exporter.export(some_spans()) is SpanExportResult.FAILURE
        assert collector.seen == []
    assert "set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY" in caplog.text
    assert "nothing was sent" in caplog.text


# -- saying where it goes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "kwargs", "expected"),
    [
        (
            {},
            KEYS,
            "LangfuseSpanExporter: direct mode, spans to "
            "https://cloud.langfuse.com/api/public/otel/v1/traces "
            "(from the default (Langfuse Cloud))",
        ),
        (
            {"LANGFUSE_HOST": "https://lf.example"},
            KEYS,
            "direct mode, spans to https://lf.example/api/public/otel/v1/traces "
            "(from LANGFUSE_HOST)",
        ),
        (
            {},
            {**KEYS, "base_url": "https://arg.example"},
            "direct mode, spans to https://arg.example/api/public/otel/v1/traces "
            "(from the base_url argument)",
        ),
        (
            {"LANGFUSE_OTEL_COLLECTOR_ENDPOINT": "https://collector.example:4318"},
            {},
            "collector mode, spans to https://collector.example:4318/v1/traces "
            "(from LANGFUSE_OTEL_COLLECTOR_ENDPOINT), no Langfuse keys sent",
        ),
        (
            {},
            {"endpoint": "https://collector.example/v1/traces"},
            "collector mode, spans to https://collector.example/v1/traces "
            "(from the endpoint argument), no Langfuse keys sent",
        ),
    ],
)
def test_one_info_line_names_mode_destination_and_source(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    env: dict[str, str],
    kwargs: dict[str, str],
    expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.INFO, "langfuse_otel_sessions")
    LangfuseSpanExporter(**kwargs)  # type: ignore[arg-type]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert expected in lines[0]
    assert caplog.records[0].levelno == logging.INFO


def test_userinfo_is_scrubbed_from_repr_logs_and_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with fault_server(default=Answer.json(401, {"message": "Invalid credentials"})) as server:
        url = server.url.replace("http://", "https://user:tok3n-secret@") + "/v1/traces"
        exporter = LangfuseSpanExporter(endpoint=url.replace("https://", "http://"))
        assert exporter.export(some_spans()) is SpanExportResult.FAILURE
        assert server.seen[0].headers["authorization"].startswith("Basic ")
    assert "answered 401: Invalid credentials" in caplog.text
    for text in (caplog.text, repr(exporter), exporter.endpoint):
        assert "tok3n-secret" not in text
    assert "***@127.0.0.1" in exporter.endpoint


def test_missing_keys_say_nothing_was_sent_and_name_no_destination_in_vain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = LangfuseSpanExporter()
    assert exporter.export(some_spans()) is SpanExportResult.FAILURE
    failures = [r.getMessage() for r in caplog.records if "spans not delivered" in r.getMessage()]
    assert failures
    assert "nothing was sent" in failures[0]
    assert "cloud.langfuse.com" not in failures[0]


# -- a misbehaving server -------------------------------------------------------------------


def exporter_for(url: str, timeout: float = 5.0) -> LangfuseSpanExporter:
    return LangfuseSpanExporter(base_url=url, timeout=timeout, **KEYS)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_fails_the_spans_and_names_where_it_pointed(
    caplog: pytest.LogCaptureFixture, status: int
) -> None:
    with fault_server() as elsewhere:
        moved = Answer(status, b"", {"Location": f"{elsewhere.url}/api/public/otel/v1/traces"})
        with fault_server(default=moved) as server:
            exporter = exporter_for(server.url)
            assert exporter.export(some_spans(3)) is SpanExportResult.FAILURE
        assert elsewhere.seen == []  # neither spans nor credentials followed
    assert exporter.stats.failed_spans == 3
    assert exporter.stats.exported_spans == 0
    assert (
        f"answered {status} to {elsewhere.url}/api/public/otel/v1/traces (not followed): "
        "check base_url"
    ) in caplog.text


@pytest.mark.parametrize("body_only", [False, True])
def test_a_trickling_server_holds_an_export_no_longer_than_its_timeout(body_only: bool) -> None:
    trickle = Answer(200, b"{}" * 500, trickle=0.05, trickle_body=body_only)
    with fault_server(default=trickle) as server:
        exporter = exporter_for(server.url, timeout=1.0)
        started = time.monotonic()
        result = exporter.export(some_spans())
        elapsed = time.monotonic() - started
    assert result is SpanExportResult.FAILURE
    assert elapsed < 3.0  # 1 s, with room for a loaded machine; 25 s without the deadline


def test_a_huge_answer_is_read_only_up_to_the_cap() -> None:
    with fault_server(default=Answer(200, body_size=100 * MAX_RESPONSE_BYTES)) as server:
        exporter = exporter_for(server.url)
        assert exporter.export(some_spans()) is SpanExportResult.SUCCESS
        assert server.sent_bytes < 100 * MAX_RESPONSE_BYTES


def test_a_refusal_logs_langfuses_own_message(caplog: pytest.LogCaptureFixture) -> None:
    refusal = Answer.json(400, {"message": "Invalid OTLP payload: resourceSpans missing"})
    with fault_server(refusal) as server:
        exporter = exporter_for(server.url)
        assert exporter.export(some_spans()) is SpanExportResult.FAILURE
        assert len(server.seen) == 1  # a 4xx is not retried
    assert (
        f"Langfuse at {server.url}/api/public/otel/v1/traces answered 400: "
        "Invalid OTLP payload: resourceSpans missing"
    ) in caplog.text


# -- both exporters under opentelemetry-instrument ---------------------------------------------


def test_otlp_and_langfuse_exporters_each_get_every_span_with_only_their_own_headers() -> None:
    from .servers import run_zero_code_app

    with (
        LangfuseReceiver(secret_key="sk-lf-only-for-langfuse") as langfuse,
        LangfuseReceiver(require_auth=False) as other,
    ):
        run_zero_code_app(
            {
                "OTEL_TRACES_EXPORTER": "otlp,langfuse",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": other.url,
                "OTEL_EXPORTER_OTLP_HEADERS": "x-other-api-key=other-secret",
                **langfuse.env(),
            }
        )
        to_langfuse = langfuse.requests("traces")
        to_other = other.requests()
        langfuse_spans = sorted(span.name for span in langfuse.spans())
        other_spans = sorted(span.name for span in other.spans())
    assert langfuse_spans == other_spans == ["answer", "chat gpt-4o"]
    assert to_langfuse
    assert to_other
    assert all(r.path == "/v1/traces" for r in to_other)
    for request in to_other:  # the other backend: its key, never Langfuse's
        assert request.headers["x-other-api-key"] == "other-secret"
        assert "authorization" not in request.headers
        assert not any("sk-lf-only-for-langfuse" in value for value in request.headers.values())
    for request in to_langfuse:  # Langfuse: its key, never the other backend's
        assert request.headers["authorization"] == langfuse.authorization
        assert "x-other-api-key" not in request.headers


def test_force_flush_and_shutdown_keep_their_bounds_under_a_trickling_server() -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    trickle = Answer(200, b"{}" * 500, trickle=0.05)
    with fault_server(default=trickle) as server:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter_for(server.url, timeout=1.0)))
        provider.get_tracer("t").start_span("one").end()
        started = time.monotonic()
        provider.force_flush(10_000)
        assert time.monotonic() - started < 3.0  # the export's own deadline, not the server's
        provider.get_tracer("t").start_span("two").end()
        started = time.monotonic()
        provider.shutdown()
        assert time.monotonic() - started < 3.0
