"""The rules under session coverage and the export filter: the LLM-span rule against the
Langfuse SDK's own, token counting as Langfuse reads usage, the rate-limited warning, metrics."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

from langfuse_otel_sessions.export.coverage import (
    SPANS_METRIC,
    TOKENS_METRIC,
    WINDOW_SECONDS,
    CoverageMonitor,
)
from langfuse_otel_sessions.export.langfuse_rules import usage_tokens
from langfuse_otel_sessions.export.span_filter import is_llm_span

pytest.importorskip("hypothesis", reason="hypothesis is in requirements/test.txt")
pytest.importorskip("langfuse", reason="the Langfuse SDK (the reference) is a test pin")
from hypothesis import given
from hypothesis import strategies as st
from langfuse._client.span_filter import is_default_export_span  # the reference rule

PARENT = SpanContext(1, 2, False)


def span(
    scope: str = "app", parent: SpanContext | None = PARENT, **attributes: Any
) -> ReadableSpan:
    return ReadableSpan(
        name="s",
        context=SpanContext(1, 3, False),
        parent=parent,
        attributes=attributes,
        instrumentation_scope=InstrumentationScope(scope),
    )


SCOPES = st.sampled_from(
    [
        "langfuse-sdk",
        "openinference",
        "openinference.instrumentation.langchain",
        "openinferencex",
        "opentelemetry.instrumentation.openai_v2",
        "opentelemetry.instrumentation.openai_v2x",
        "opentelemetry.instrumentation.fastapi",
        "opentelemetry.util.genai.handler",
        "ai",
        "ai.x",
        "aix",
        "",
    ]
)
KEYS = st.sampled_from(["gen_ai.request.model", "gen_ai", "gen_ai.", "http.method", "llm.x"])


@given(SCOPES, st.lists(KEYS, max_size=3))
def test_the_llm_rule_is_the_langfuse_sdks(scope: str, keys: list[str]) -> None:
    candidate = span(scope, **dict.fromkeys(keys, 1))
    assert is_llm_span(candidate) == is_default_export_span(candidate)


@pytest.mark.parametrize(
    ("attributes", "tokens"),
    [
        ({}, 0),
        ({"gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 8}, 20),
        ({"gen_ai.usage.prompt_tokens": 5, "gen_ai.usage.input_tokens": 99}, 5),  # Langfuse's order
        ({"llm.token_count.prompt": 3, "llm.token_count.completion": 4}, 7),
        ({"llm.token_count.total": 9}, 9),
        ({"gen_ai.usage.output_tokens": "6"}, 6),
        ({"langfuse.observation.usage_details": '{"input": 2, "output": 3}'}, 5),
        ({"langfuse.observation.usage_details": '{"input": 2, "total": 10}'}, 10),
        ({"gen_ai.usage.input_tokens": "many"}, 0),
    ],
)
def test_tokens_as_langfuse_reads_usage(attributes: dict[str, Any], tokens: int) -> None:
    assert usage_tokens(attributes) == tokens


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


USAGE = {"gen_ai.usage.input_tokens": 30, "gen_ai.usage.output_tokens": 10}


def count(monitor: CoverageMonitor, spans: list[ReadableSpan]) -> None:
    monitor.count(spans, [span.attributes or {} for span in spans])


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "had no session" in r.getMessage()]


def test_the_warning_comes_once_per_window_naming_the_scope(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    monitor = CoverageMonitor(clock)
    caplog.set_level(logging.WARNING, logger="langfuse_otel_sessions")
    batch = [
        span("app", **{"langfuse.session.id": "s", **USAGE}),
        span("llm", parent=None, **USAGE),
        span("app"),
    ]
    count(monitor, batch)
    assert warnings(caplog) == []  # the window is not over
    clock.now = WINDOW_SECONDS
    count(monitor, [])
    (message,) = warnings(caplog)
    assert message.startswith(
        "67% of spans and 50% of tokens exported in the last 10 minutes had no session; "
        "most from llm, app"
    )
    clock.now = WINDOW_SECONDS * 1.5
    count(monitor, batch)
    assert len(warnings(caplog)) == 1
    clock.now = WINDOW_SECONDS * 2
    count(monitor, [span("app", **{"langfuse.session.id": "s", **USAGE})])  # a good window
    assert len(warnings(caplog)) == 2  # the window with the gap, said when it ended
    assert monitor.coverage.spans == 7


def test_no_warning_below_the_threshold_or_without_any_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    caplog.set_level(logging.WARNING, logger="langfuse_otel_sessions")
    without_sessions = CoverageMonitor(clock)
    count(without_sessions, [span("llm", **USAGE)])
    covered = CoverageMonitor(clock)
    count(covered, [span("llm", **{"session.id": 7, **USAGE}), span("http")])  # tokens all in
    clock.now = WINDOW_SECONDS
    for monitor in (without_sessions, covered):
        count(monitor, [])
        monitor.close()
    assert warnings(caplog) == []


def test_metrics_on_the_meter_provider() -> None:
    reader = InMemoryMetricReader()
    monitor = CoverageMonitor(meter_provider=MeterProvider(metric_readers=[reader]))
    count(monitor, [span("llm", **{"langfuse.session.id": "s", **USAGE}), span("llm", **USAGE)])
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        (metric.name, metric.unit, point.attributes["langfuse_otel_sessions.has_session"]): (
            point.value,
            point.attributes["otel.scope.name"],
        )
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points  # type: ignore[union-attr]
        if point.attributes
    }
    assert points == {
        (SPANS_METRIC, "{span}", True): (1, "llm"),
        (SPANS_METRIC, "{span}", False): (1, "llm"),
        (TOKENS_METRIC, "{token}", True): (40, "llm"),
        (TOKENS_METRIC, "{token}", False): (40, "llm"),
    }
