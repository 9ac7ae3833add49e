"""What a destination URL and its headers may be, attacked through the public setups.

A bad explicit argument raises :class:`ConfigurationError` naming it; a bad environment value
disables sending with an error naming the variable and never raises into the app. Headers are
checked when the exporter is made (names and never values in messages) and merged
case-insensitively; any credential over plain http to a host that is not loopback warns."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from langfuse_otel_sessions import ConfigurationError, LangfuseSpanExporter, ScoreClient, configure
from langfuse_otel_sessions.testing import LangfuseReceiver

from .fault_server import fault_server
from .servers import run_zero_code_app
from .test_destinations import some_spans

KEYS = {"public_key": "pk-lf-test", "secret_key": "sk-lf-test-secret"}

BAD_URLS = [
    "http://127.0.0.1:99999",
    "http://127.0.0.1:abc",
    "http://127.0.0.1:-1",
    "http://127.0.0.1:0",
    "http://[::1",
    "http://[zz]",
    "http://:80",
    "http://[::1]:70000",
]
URLS_WITH_EXTRAS = [
    "https://lf.example/?tenant=1",
    "https://lf.example/?",
    "https://lf.example#part",
    "https://lf.example/base;v=1",
]


# -- URLs ------------------------------------------------------------------------------------


def _exporter_with_base_url(url: str) -> object:
    return LangfuseSpanExporter(base_url=url, **KEYS)


def _exporter_with_endpoint(url: str) -> object:
    return LangfuseSpanExporter(endpoint=url)


def _score_client(url: str) -> object:
    client = ScoreClient(base_url=url, **KEYS)
    client.shutdown()
    return client


@pytest.mark.parametrize("url", BAD_URLS + URLS_WITH_EXTRAS)
@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (_exporter_with_base_url, "base_url"),
        (_exporter_with_endpoint, "endpoint"),
        (_score_client, "base_url"),
    ],
)
def test_a_bad_url_argument_is_a_configuration_error_naming_it(
    make: object, argument: str, url: str
) -> None:
    with pytest.raises(ConfigurationError, match=argument) as raised:
        make(url)  # type: ignore[operator]
    assert url not in str(raised.value)


def test_a_url_with_a_token_is_not_repeated_in_the_error() -> None:
    with pytest.raises(ConfigurationError) as raised:
        LangfuseSpanExporter(base_url="https://user:s3cret-token@lf.example:99999", **KEYS)
    assert "s3cret-token" not in str(raised.value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=40),
        st.builds(lambda rest: "http://" + rest, st.text(max_size=30)),
        st.builds(lambda rest: "https://[" + rest, st.text(max_size=30)),
    )
)
def test_any_base_url_makes_an_exporter_or_a_configuration_error(url: str) -> None:
    try:
        exporter = LangfuseSpanExporter(base_url=url, **KEYS)
    except ConfigurationError:
        return
    exporter.shutdown()


@pytest.mark.parametrize("variable", ["LANGFUSE_BASE_URL", "LANGFUSE_HOST"])
@pytest.mark.parametrize("url", BAD_URLS + URLS_WITH_EXTRAS)
def test_a_bad_url_variable_disables_export_and_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str, url: str
) -> None:
    monkeypatch.setenv(variable, url)
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", KEYS["public_key"])
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", KEYS["secret_key"])
    exporter = LangfuseSpanExporter()
    assert exporter.export(some_spans()) is SpanExportResult.FAILURE
    client = ScoreClient()
    client.score_session("session-1", name="quality", value=1)
    assert client.flush(1.0) is False
    client.shutdown()
    provider = configure(TracerProvider())  # the zero-code path: never an exception either
    provider.shutdown()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(variable in line and "nothing will be sent" in line for line in errors)


@pytest.mark.parametrize("url", BAD_URLS + URLS_WITH_EXTRAS)
def test_a_bad_collector_variable_disables_export_and_names_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    monkeypatch.setenv("LANGFUSE_OTEL_COLLECTOR_ENDPOINT", url)
    exporter = LangfuseSpanExporter()
    assert exporter.mode == "collector"
    assert exporter.export(some_spans()) is SpanExportResult.FAILURE
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("LANGFUSE_OTEL_COLLECTOR_ENDPOINT" in line for line in errors)


def test_a_bad_port_in_our_variable_leaves_the_otlp_exporter_working() -> None:
    with LangfuseReceiver(require_auth=False) as other:
        run_zero_code_app(
            {
                "OTEL_TRACES_EXPORTER": "langfuse,otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": other.url,
                "LANGFUSE_PUBLIC_KEY": KEYS["public_key"],
                "LANGFUSE_SECRET_KEY": KEYS["secret_key"],
                "LANGFUSE_BASE_URL": "http://127.0.0.1:99999",
            }
        )
        names = sorted(span.name for span in other.spans())
    assert names == ["answer", "chat gpt-4o"]  # the otlp exporter was set up and ran


# -- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"x-api-key": "TOKEN-123\r\n"}, "x-api-key"),
        ({"x-api-key": "TOKEN-123\nX-Injected: 1"}, "x-api-key"),
        ({"x-api-key": "TOKEN-123\x00"}, "x-api-key"),
        ({"x-api-key": "TOKEN-123\u2603"}, "x-api-key"),
        ({"x-api key": "TOKEN-123"}, "x-api"),
        ({"x-api-key: TOKEN-123": "v"}, "x-api-key"),
        ({"x-api-key\r\nX-Injected": "TOKEN-123"}, "x-api-key"),
        ({"": "TOKEN-123"}, "header name"),
    ],
)
def test_a_header_that_cannot_be_sent_is_a_configuration_error_naming_it(
    headers: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigurationError, match="headers") as raised:
        LangfuseSpanExporter(endpoint="http://127.0.0.1:4318", headers=headers)
    assert named in str(raised.value)
    assert "TOKEN-123" not in str(raised.value)


def test_a_header_variable_entry_that_cannot_be_sent_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(
        "LANGFUSE_OTEL_COLLECTOR_HEADERS",
        "x-api-key=TOKEN-123%0d%0aX-Injected:%201,x%20bad=TOKEN-123,x-good=fine",
    )
    with fault_server() as collector:
        exporter = LangfuseSpanExporter(endpoint=collector.url)
        assert exporter.export(some_spans()) is SpanExportResult.SUCCESS
        (request,) = collector.seen
    assert request.headers["x-good"] == "fine"
    assert "x-api-key" not in request.headers
    assert "x-injected" not in request.headers
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("LANGFUSE_OTEL_COLLECTOR_HEADERS" in w and "x-api-key" in w for w in warnings)
    assert "TOKEN-123" not in caplog.text


@pytest.mark.parametrize("spelling", ["authorization", "AUTHORIZATION", "Authorization"])
@pytest.mark.parametrize("from_variable", [False, True])
def test_a_users_authorization_header_is_sent_once_and_wins(
    monkeypatch: pytest.MonkeyPatch, spelling: str, from_variable: bool
) -> None:
    headers = None
    if from_variable:
        monkeypatch.setenv("LANGFUSE_OTEL_COLLECTOR_HEADERS", f"{spelling}=Bearer%20collector")
    else:
        headers = {spelling: "Bearer collector", "content-type": "application/x-protobuf"}
    with fault_server() as collector:
        exporter = LangfuseSpanExporter(
            endpoint=collector.url, headers=headers, collector_auth=True, **KEYS
        )
        assert exporter.export(some_spans()) is SpanExportResult.SUCCESS
        (request,) = collector.seen
    assert request.names.count("authorization") == 1
    assert request.headers["authorization"] == "Bearer collector"
    assert len(request.names) == len(set(request.names))  # no header twice, in any spelling


# -- clear text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "env", "warned"),
    [
        ({"endpoint": "http://c1.example:4318", "headers": {"x-api-key": "k"}}, {}, True),
        (
            {"endpoint": "http://c2.example:4318"},
            {"LANGFUSE_OTEL_COLLECTOR_HEADERS": "x-honeycomb-team=k"},
            True,
        ),
        ({"endpoint": "http://c3.example:4318"}, {}, False),  # nothing secret sent
        (
            {"endpoint": "http://c4.example:4318", "headers": {"Authorization": "Bearer x"}},
            {},
            True,
        ),
        ({**KEYS, "base_url": "http://langfuse.example:3000"}, {}, True),
        ({**KEYS, "base_url": "https://langfuse.example"}, {}, False),
        ({**KEYS, "base_url": "http://localhost:3000"}, {}, False),
        ({**KEYS, "base_url": "http://localhost.:3002"}, {}, False),
        ({**KEYS, "base_url": "http://[::ffff:127.0.0.1]:3003"}, {}, False),
        ({**KEYS, "base_url": "http://127.0.0.1.nip.io:3005"}, {}, True),
        ({**KEYS, "base_url": "http://localhost.evil.example:3006"}, {}, True),
    ],
)
def test_any_credential_in_clear_text_to_a_host_not_loopback_warns(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kwargs: dict[str, object],
    env: dict[str, str],
    warned: bool,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for _ in range(2):
        LangfuseSpanExporter(**kwargs)  # type: ignore[arg-type]
    warnings = [r for r in caplog.records if "unencrypted" in r.getMessage()]
    assert len(warnings) == (1 if warned else 0)  # once
    assert "Bearer" not in caplog.text
