"""The export deadline bounds flush, shutdown and exit against a server that never answers:
after one export got no answer in time, the next ones fail at once (counted, logged)."""

from __future__ import annotations

import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from langfuse_otel_sessions.export.exporter import LangfuseSpanExporter

from .fault_server import Answer, fault_server

TIMEOUT = 1.0
SPANS, BATCH = 300, 20  # fifteen batches: fifteen timeouts before the fix
SILENT = Answer(trickle=60)  # takes the request, never completes an answer


def provider_with(url: str) -> tuple[TracerProvider, LangfuseSpanExporter]:
    exporter = LangfuseSpanExporter(
        public_key="pk-lf-x", secret_key="sk-lf-x", base_url=url, timeout=TIMEOUT
    )
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            max_export_batch_size=BATCH,
            max_queue_size=SPANS,
            schedule_delay_millis=60_000,
        )
    )
    tracer = provider.get_tracer("t")
    for _ in range(SPANS):
        tracer.start_span("s").end()
    return provider, exporter


def test_force_flush_against_a_silent_server_takes_about_one_timeout() -> None:
    with fault_server(default=SILENT) as server:
        provider, exporter = provider_with(server.url)
        started = time.monotonic()
        provider.force_flush(30_000)
        elapsed = time.monotonic() - started
        provider.shutdown()
    assert elapsed < 5 * TIMEOUT  # documented: one timeout (two at worst), not batches x timeout
    assert exporter.stats.failed_spans == SPANS  # nothing dropped silently


def test_shutdown_against_a_silent_server_takes_about_one_timeout() -> None:
    with fault_server(default=SILENT) as server:
        provider, exporter = provider_with(server.url)
        started = time.monotonic()
        provider.shutdown()
        elapsed = time.monotonic() - started
    assert elapsed < 5 * TIMEOUT
    assert exporter.stats.failed_spans == SPANS
