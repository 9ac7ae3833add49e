"""What counts as delivered, and how long a call may take, against faults a hand-written client
got wrong: a slow DNS lookup, a 2xx whose body breaks off, an interim answer before the final
one. Real loopback servers; the slow resolver is the only stand-in (the system's cannot be
slowed from a test)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from langfuse_otel_sessions import LangfuseSpanExporter

from .fault_server import Answer, fault_server
from .test_destinations import KEYS, some_spans

SLOW_HOST = "slow-dns.langfuse.test"


@pytest.fixture
def slow_resolver(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """``SLOW_HOST`` resolves to 127.0.0.1 after 3 s, or as soon as the event is set."""
    release = threading.Event()
    resolve = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == SLOW_HOST:
            release.wait(3)
            host = "127.0.0.1"
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return release


def test_a_slow_lookup_counts_against_the_deadline_and_sends_nothing_late(
    slow_resolver: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    with fault_server() as server:
        port = server.url.rpartition(":")[2]
        exporter = LangfuseSpanExporter(base_url=f"http://{SLOW_HOST}:{port}", timeout=1, **KEYS)
        started = time.monotonic()
        result = exporter.export(some_spans(2))
        elapsed = time.monotonic() - started
        slow_resolver.set()  # the lookup ends now, after the deadline
        server.wait_for(1, timeout=5)
        assert all(seen.body == b"" for seen in server.seen)  # no batch went out late
    assert result is SpanExportResult.FAILURE
    assert elapsed < 2.5
    assert exporter.stats.failed_spans == 2
    assert "no answer within 1 s (nothing was sent)" in caplog.text


def test_a_timeout_says_the_request_went_out(caplog: pytest.LogCaptureFixture) -> None:
    with fault_server(default=Answer(trickle=60)) as server:
        exporter = LangfuseSpanExporter(base_url=server.url, timeout=1, **KEYS)
        assert exporter.export(some_spans(1)) is SpanExportResult.FAILURE
        assert server.seen[0].body  # it did arrive
    assert "no answer within 1 s (it was sent and may still arrive)" in caplog.text


def test_a_2xx_whose_body_breaks_off_is_delivered_once() -> None:
    broken = Answer(raw=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    with fault_server(broken) as server:
        exporter = LangfuseSpanExporter(base_url=server.url, timeout=5, **KEYS)
        assert exporter.export(some_spans(2)) is SpanExportResult.SUCCESS
        assert len(server.seen) == 1
    assert exporter.stats.exported_spans == 2


def test_an_interim_answer_before_the_final_one_is_skipped() -> None:
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    with fault_server(Answer(raw=hints + final), Answer(raw=hints + final)) as server:
        exporter = LangfuseSpanExporter(base_url=server.url, timeout=5, **KEYS)
        assert exporter.export(some_spans(1)) is SpanExportResult.SUCCESS
        assert exporter.export(some_spans(1)) is SpanExportResult.SUCCESS  # same connection
        assert len(server.seen) == 2
    assert exporter.stats.exported_spans == 2
