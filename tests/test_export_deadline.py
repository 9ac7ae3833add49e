"""The export deadline bounds flush, shutdown and exit against a server that never answers:
after one export got no answer in time, the next ones fail at once (counted, logged)."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from langfuse_otel_sessions.export.exporter import LangfuseSpanExporter

from .fault_server import Answer, fault_server
from .servers import run_python

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


EXIT_SCRIPT = """
import sys, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
import langfuse_otel_sessions as lf
keys = dict(public_key="pk-lf-x", secret_key="sk-lf-x", base_url=sys.argv[1])
scores = lf.ScoreClient(**keys)  # retries for 60 s; at exit, 5 s
scores.score_session("s", name="n", value=1.0)  # the score sender starts first
if sys.argv[2] == "exporter first":  # built before its provider, then configure()
    exporter = lf.LangfuseSpanExporter(**keys, timeout=4)
    provider = TracerProvider()
else:
    provider = TracerProvider()
    exporter = lf.LangfuseSpanExporter(**keys, timeout=4)
if sys.argv[2] != "hand-built":
    lf.configure(provider, exporter=exporter)
else:
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
provider.get_tracer("t").start_span("s").end()
print(time.time(), flush=True)  # interpreter exit flushes both from here
"""


@pytest.mark.parametrize("setup", ["configure", "exporter first", "hand-built"])
def test_interpreter_exit_flushes_spans_and_scores_side_by_side(setup: str) -> None:
    with fault_server(default=SILENT) as server:
        out = run_python("-c", EXIT_SCRIPT, server.url, setup, timeout=60)
        took = time.time() - float(out.split()[-1])
    assert took < 7.5  # the span deadline (4 s) and the score deadline (5 s) do not add up
