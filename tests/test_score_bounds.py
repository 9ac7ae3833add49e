"""flush(), shutdown() and interpreter exit are bounded as a whole against a server that takes
requests and never answers; shutdown() says when scores were not delivered."""

from __future__ import annotations

import logging
import re
import textwrap
import time
from pathlib import Path

import pytest

import langfuse_otel_sessions
from langfuse_otel_sessions import ScoreClient

from .fault_server import Answer, fault_server
from .servers import run_python

KEYS = {"public_key": "pk-lf-test", "secret_key": "sk-lf-test-secret"}
SILENT = Answer(trickle=60)  # takes the request, never completes an answer
SCORES = 5


def silent_client(url: str) -> ScoreClient:
    return ScoreClient(
        base_url=url,
        **KEYS,
        timeout=1.5,
    )


def test_flush_and_shutdown_without_a_timeout_take_one_deadline_not_one_per_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with fault_server(default=SILENT) as server:
        client = silent_client(server.url)
        for i in range(SCORES):
            client.score_session("s", name=f"n{i}", value=1)
        started = time.monotonic()
        assert client.flush() is False
        flushed = time.monotonic() - started
        started = time.monotonic()
        client.shutdown()  # False, unless the sender gave up just before flush() returned
        shut = time.monotonic() - started
    assert flushed < 4  # one retry_deadline (1.5 s), with room; 7.5 s before
    assert shut < 4
    assert client.stats.failed == SCORES
    assert re.search("Gave up on|scores not delivered", caplog.text)


def test_shutdown_says_false_when_every_score_failed(caplog: pytest.LogCaptureFixture) -> None:
    with fault_server(default=Answer.json(401, {"message": "Invalid credentials"})) as server:
        client = silent_client(server.url)
        for i in range(SCORES):
            client.score_session("s", name=f"n{i}", value=1)
        with caplog.at_level(logging.ERROR):
            assert client.shutdown(10) is False
    assert client.stats.failed == SCORES
    # the sender may have sent (and lost) the first score before shutdown(): the counts the
    # log lines give add up to every score
    counts = re.findall(r"(\d+) scores? not delivered", caplog.text)
    assert sum(map(int, counts)) == SCORES, caplog.text


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from langfuse_otel_sessions import LangfuseSpanExporter, ScoreClient

    url, keys = sys.argv[1], ("pk-lf-x", "sk-lf-x")
    exporter = LangfuseSpanExporter(public_key=keys[0], secret_key=keys[1], base_url=url, timeout=3)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    client = ScoreClient(*keys, url, timeout=3)
    provider.get_tracer("t").start_span("s").end()
    client.score_session("s", name="n", value=1)
    print(time.time(), flush=True)
    """
)


def test_exit_does_not_add_the_span_and_score_deadlines() -> None:
    with fault_server(default=SILENT) as server:
        source = str(Path(langfuse_otel_sessions.__file__).parents[1])  # this tree, not another
        output = run_python("-c", EXIT_SCRIPT, server.url, env={"PYTHONPATH": source}, timeout=60)
        exited = time.time()
    elapsed = exited - float(output.strip().splitlines()[-1])
    assert elapsed < 5  # the longer of 3 s and 3 s, with room; 6 s and more before
