"""Reliability: faults, shutdown, fork, bad input, secrets and isolation, against the testing
receiver and the real SDK. Runs with the suite, or alone: ``pytest -m reliability``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import textwrap
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langfuse_otel_sessions import (
    ASGISessionMiddleware,
    InvalidIdError,
    LangfuseSpanExporter,
    ScoreClient,
    SessionSpanProcessor,
    WSGISessionMiddleware,
    current_session_id,
    install_baggage_guard,
    session,
)
from langfuse_otel_sessions.testing import Fault, LangfuseReceiver, langfuse_receiver

from .servers import run_python

SDK_VERSION = tuple(int(part) for part in version("opentelemetry-sdk").split(".")[:2])

__all__ = ["langfuse_receiver"]
pytestmark = pytest.mark.reliability


class Spans:
    """An app's pipeline: our processor, a batch processor, our exporter to the receiver."""

    def __init__(self, receiver: LangfuseReceiver, *, timeout: float = 5.0, **batch: Any) -> None:
        self.exporter = LangfuseSpanExporter(
            public_key=receiver.public_key,
            secret_key=receiver.secret_key,
            base_url=receiver.url,
            timeout=timeout,
        )
        self.provider = TracerProvider()
        self.provider.add_span_processor(SessionSpanProcessor())
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter, **batch))
        self.tracer = self.provider.get_tracer("app")

    def make(self, count: int, session_id: str = "s") -> None:
        with session(session_id):
            for i in range(count):
                self.tracer.start_span(f"span {i}").end()


def unique_spans(receiver: LangfuseReceiver) -> int:
    return len({(s.trace_id, s.span_id) for s in receiver.spans()})


class LogSignal(logging.Handler):
    """An event set when a log record containing ``text`` is emitted: a real signal to wait on."""

    def __init__(self, logger: str, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()
        self._logger = logging.getLogger(logger)

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()

    def __enter__(self) -> LogSignal:
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)


# -- faults: spans ----------------------------------------------------------------------------


def test_spans_429_with_retry_after_are_delivered_once(langfuse_receiver: LangfuseReceiver) -> None:
    app = Spans(langfuse_receiver)
    langfuse_receiver.fail_next("traces", Fault(status=429, retry_after="0.2"))
    app.make(20)
    assert app.provider.force_flush(10_000)
    assert [r.status for r in langfuse_receiver.requests()] == [429, 200]
    assert unique_spans(langfuse_receiver) == len(langfuse_receiver.spans()) == 20
    assert app.exporter.stats.exported_spans == 20


def test_spans_burst_of_503_is_retried_with_bounded_attempts(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    app = Spans(langfuse_receiver, timeout=20)
    langfuse_receiver.fail_next("traces", 503, 503, 503)
    app.make(10)
    assert app.provider.force_flush(30_000)
    assert [r.status for r in langfuse_receiver.requests()] == [503, 503, 503, 200]
    assert len(langfuse_receiver.spans()) == 10


def test_spans_slow_response_within_timeout_is_delivered_once(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    app = Spans(langfuse_receiver, timeout=5)
    langfuse_receiver.fail_next("traces", Fault(delay=1.0))
    app.make(10)
    assert app.provider.force_flush(10_000)
    assert len(langfuse_receiver.requests()) == 1
    assert len(langfuse_receiver.spans()) == 10


def test_spans_slower_than_the_timeout_are_counted_as_lost_not_duplicated(
    langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    app = Spans(langfuse_receiver, timeout=0.5)
    langfuse_receiver.fail_next("traces", Fault(delay=1.5))
    app.make(10)
    app.provider.force_flush(10_000)
    assert app.exporter.stats.failed_spans == 10
    assert "10 spans not delivered" in caplog.text
    assert langfuse_receiver.wait_for(lambda: len(langfuse_receiver.requests()) == 1)
    assert unique_spans(langfuse_receiver) == len(langfuse_receiver.spans())  # never twice


def test_spans_connection_reset_mid_request_is_retried_once(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    app = Spans(langfuse_receiver)
    langfuse_receiver.fail_next("traces", Fault(drop=True))
    app.make(10)
    assert app.provider.force_flush(10_000)
    assert [r.status for r in langfuse_receiver.requests()] == [0, 200]
    assert len(langfuse_receiver.spans()) == 10


def test_spans_connection_refused_is_counted_and_logged(
    langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    app = Spans(langfuse_receiver, timeout=1)
    langfuse_receiver.stop()
    app.make(7)
    app.provider.force_flush(10_000)
    assert app.exporter.stats.failed_spans == 7
    assert "7 spans not delivered" in caplog.text


def test_spans_receiver_down_then_up_is_delivered(langfuse_receiver: LangfuseReceiver) -> None:
    app = Spans(langfuse_receiver, timeout=20)
    langfuse_receiver.stop()
    app.make(10)
    with LogSignal("langfuse_otel_sessions", "retrying in") as retrying:
        flushing = threading.Thread(target=app.provider.force_flush, args=(30_000,))
        flushing.start()
        assert retrying.seen.wait(10)  # an attempt failed while the receiver was down
        langfuse_receiver.start()
        flushing.join(30)
    assert len(langfuse_receiver.spans()) == 10
    assert app.exporter.stats.exported_spans == 10


def test_spans_beyond_the_queue_bound_are_dropped_and_logged(
    langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    app = Spans(
        langfuse_receiver, max_queue_size=8, max_export_batch_size=8, schedule_delay_millis=10
    )
    hold = threading.Event()
    langfuse_receiver.fail_next("traces", Fault(release=hold))
    app.make(1)
    assert langfuse_receiver.wait_for(lambda: langfuse_receiver.arrivals >= 1)
    app.make(100)  # the exporter is busy: the queue holds 8
    hold.set()
    assert app.provider.force_flush(10_000)
    received = len(langfuse_receiver.spans())
    assert received < 101
    if not (1, 34) <= SDK_VERSION < (1, 40):  # those SDKs drop the oldest queued span silently
        assert "queue" in caplog.text.lower()  # the SDK's batch processor says its queue is full
        assert "full" in caplog.text


# -- faults: scores ---------------------------------------------------------------------------


@pytest.fixture
def scores(langfuse_receiver: LangfuseReceiver) -> Iterator[ScoreClient]:
    client = ScoreClient(
        langfuse_receiver.public_key,
        langfuse_receiver.secret_key,
        langfuse_receiver.url,
        timeout=3,
    )
    yield client
    client.shutdown(5)


def test_scores_a_slow_answer_within_the_timeout_is_waited_for_once(
    scores: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    langfuse_receiver.fail_next("ingestion", Fault(delay=2.0))
    scores.score_session("s", name="n", value=1, id="slow-1")
    assert scores.flush(10)
    assert (scores.stats.delivered, scores.stats.retries) == (1, 0)
    assert [s["id"] for s in langfuse_receiver.scores()] == ["slow-1"]
    assert len(langfuse_receiver.requests()) == 1


def test_scores_connection_reset_is_retried(
    scores: ScoreClient, langfuse_receiver: LangfuseReceiver
) -> None:
    langfuse_receiver.fail_next("ingestion", Fault(drop=True), Fault(drop=True))
    for i in range(5):
        scores.score_session("s", name=f"n{i}", value=i)
    assert scores.flush(10)
    assert len(langfuse_receiver.scores()) == 5
    assert scores.stats.retries == 2


def test_scores_attempts_are_bounded_under_a_503_storm(langfuse_receiver: LangfuseReceiver) -> None:
    client = ScoreClient(
        langfuse_receiver.public_key,
        langfuse_receiver.secret_key,
        langfuse_receiver.url,
    )
    langfuse_receiver.fail_next("ingestion", *[Fault(503, retry_after=0)] * 100)
    client.score_session("s", name="n", value=1)
    assert client.flush(30) is False  # not every score was delivered, and flush says so
    assert len(langfuse_receiver.requests()) == 8  # max attempts per batch
    assert client.stats.failed == 1
    client.shutdown(1)


# -- shutdown ---------------------------------------------------------------------------------


def test_provider_shutdown_delivers_what_is_queued(langfuse_receiver: LangfuseReceiver) -> None:
    app = Spans(langfuse_receiver, schedule_delay_millis=60_000)
    app.make(50)
    app.provider.shutdown()
    assert len(langfuse_receiver.spans()) == 50


def test_provider_shutdown_returns_promptly_when_langfuse_is_unreachable(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    app = Spans(langfuse_receiver, timeout=1, schedule_delay_millis=60_000)
    langfuse_receiver.stop()
    app.make(50)
    started = time.monotonic()
    app.provider.shutdown()
    assert time.monotonic() - started < 5
    assert app.exporter.stats.failed_spans == 50


def test_provider_shutdown_returns_promptly_when_langfuse_hangs(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    app = Spans(langfuse_receiver, timeout=1, schedule_delay_millis=60_000)
    hold = threading.Event()
    langfuse_receiver.fail_next("traces", *[Fault(release=hold)] * 10)
    app.make(5)
    started = time.monotonic()
    app.provider.shutdown()
    assert time.monotonic() - started < 5
    hold.set()


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys
    from opentelemetry import trace
    import langfuse_otel_sessions as lf
    lf.configure(exporter=lf.LangfuseSpanExporter(timeout=1))
    client = lf.ScoreClient(timeout=2)
    with lf.session("at-exit"):
        for i in range(20):
            trace.get_tracer("t").start_span(f"s{i}").end()
        for i in range(20):
            client.score_session("at-exit", name=f"n{i}", value=i)
    # no flush, no shutdown: interpreter exit does it
    """
)


def run_exit_script(env: dict[str, str]) -> float:
    started = time.monotonic()
    run_python("-c", EXIT_SCRIPT, env=env, timeout=60)
    return time.monotonic() - started


def test_interpreter_exit_delivers_spans_and_scores(langfuse_receiver: LangfuseReceiver) -> None:
    run_exit_script(langfuse_receiver.env())
    view = langfuse_receiver.sessions()["at-exit"]
    assert len(view.spans) == 20
    assert len(view.scores) == 20


def test_interpreter_exit_is_prompt_when_langfuse_is_unreachable(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    env = langfuse_receiver.env()
    langfuse_receiver.stop()
    assert run_exit_script(env) < 15


# -- fork -------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_parent_and_forked_children_each_deliver_their_own_once(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    app = Spans(langfuse_receiver, schedule_delay_millis=50)
    client = ScoreClient(
        langfuse_receiver.public_key, langfuse_receiver.secret_key, langfuse_receiver.url
    )
    app.make(5, "parent")  # the pipeline is warm (threads, pooled connections) before forking
    client.score_session("parent", name="before-fork", value=1)
    assert app.provider.force_flush(10_000)
    assert client.flush(10)
    children = []
    for child in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                app.make(5, f"child-{child}")
                client.score_session(f"child-{child}", name="from-child", value=1)
                ok = app.provider.force_flush(10_000) and client.flush(10)
                code = 0 if ok else 2
            finally:
                os._exit(code)
        children.append(pid)
    app.make(5, "parent")
    client.score_session("parent", name="after-fork", value=1)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert app.provider.force_flush(10_000)
    assert client.flush(10)
    sessions = langfuse_receiver.sessions()
    assert {k: len(v.spans) for k, v in sessions.items()} == {
        "parent": 10,
        "child-0": 5,
        "child-1": 5,
    }
    assert {k: len(v.scores) for k, v in sessions.items()} == {
        "parent": 2,
        "child-0": 1,
        "child-1": 1,
    }
    assert unique_spans(langfuse_receiver) == len(langfuse_receiver.spans()) == 20
    assert all(r.status in (200, 207) for r in langfuse_receiver.requests())
    client.shutdown(5)


# -- bad input (property-based) ---------------------------------------------------------------

baggage_members = st.one_of(
    st.tuples(
        st.sampled_from(
            ["langfuse.session.id", "session.id", "langfuse_session_id", "user.id", "k"]
        ),
        st.text(max_size=300),
    ).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.text(max_size=50),
    st.just("session.id=%E2%82%AC%20euro"),
    st.just("langfuse_session_id=" + "x" * 5000),
)
baggage_headers = st.one_of(
    st.lists(baggage_members, max_size=300).map(",".join),
    st.text(max_size=2000),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=baggage_headers, traceparent=st.booleans())
def test_any_baggage_header_never_raises_nor_stamps_remote_ids(
    header: str, traceparent: bool
) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    install_baggage_guard()
    carrier = {"baggage": header}
    if traceparent:
        carrier["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    context = propagate.extract(carrier)
    provider.get_tracer("t").start_span("server", context=context).end()
    (span,) = memory.get_finished_spans()
    assert "langfuse.session.id" not in (span.attributes or {})
    assert "langfuse.user.id" not in (span.attributes or {})


@settings(max_examples=150, deadline=None)
@given(value=st.one_of(st.text(max_size=400), st.binary(max_size=20), st.integers(), st.none()))
def test_any_session_id_is_refused_cleanly_or_stamped_validly(value: Any) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    try:
        scope = session(value)
    except (InvalidIdError, TypeError):
        return
    with scope:
        provider.get_tracer("t").start_span("op").end()
    (span,) = memory.get_finished_spans()
    stamped = (span.attributes or {})["langfuse.session.id"]
    assert stamped == value
    assert 0 < len(stamped) <= 200
    assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in stamped)


score_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.text(max_size=600),
    st.none(),
    st.lists(st.integers(), max_size=3),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=score_values,
    string_value=st.one_of(st.none(), st.text(max_size=600)),
    data_type=st.one_of(
        st.none(), st.sampled_from(["NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT", "x"])
    ),
    name=st.text(max_size=20),
    comment=st.one_of(st.none(), st.text(max_size=50), st.integers()),
)
def test_any_score_is_refused_at_call_time_or_accepted_by_langfuse(
    langfuse_receiver: LangfuseReceiver,
    value: Any,
    string_value: str | None,
    data_type: str | None,
    name: str,
    comment: Any,
) -> None:
    client = ScoreClient(
        langfuse_receiver.public_key, langfuse_receiver.secret_key, langfuse_receiver.url
    )
    with contextlib.suppress(ValueError, TypeError):
        client.score_session(
            "s",
            name=name,
            value=value,
            string_value=string_value,
            data_type=data_type,
            comment=comment,
        )
    assert client.flush(10)
    client.shutdown(5)
    assert client.stats.failed == 0  # what left the process, Langfuse took
    for request in langfuse_receiver.requests("ingestion"):
        assert json.loads(request.body)
        assert request.status == 207


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    attributes=st.dictionaries(
        st.text(min_size=1, max_size=30),
        st.one_of(
            st.text(max_size=3000),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.floats(),
            st.booleans(),
            st.lists(st.integers(min_value=0, max_value=9), max_size=5),
            st.lists(st.text(max_size=10), max_size=5),
        ),
        max_size=20,
    )
)
def test_odd_span_attributes_export_without_error(
    langfuse_receiver: LangfuseReceiver, attributes: dict[str, Any]
) -> None:
    exporter = LangfuseSpanExporter(
        public_key=langfuse_receiver.public_key,
        secret_key=langfuse_receiver.secret_key,
        base_url=langfuse_receiver.url,
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with session("odd"):
        provider.get_tracer("t").start_span("odd", attributes=attributes).end()
    assert exporter.stats.failed_spans == 0
    assert all(r.status == 200 for r in langfuse_receiver.requests("traces"))


# -- secrets ----------------------------------------------------------------------------------


def test_the_secret_key_appears_in_no_log_record_repr_or_error(
    langfuse_receiver: LangfuseReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    import base64

    caplog.set_level(logging.DEBUG)
    secret = "sk-lf-reliability-secret"
    encoded = base64.b64encode(f"{langfuse_receiver.public_key}:{secret}".encode()).decode()
    exporter = LangfuseSpanExporter(
        public_key=langfuse_receiver.public_key,
        secret_key=secret,
        base_url=langfuse_receiver.url,
        timeout=1,
    )
    client = ScoreClient(langfuse_receiver.public_key, secret, langfuse_receiver.url)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("t").start_span("401").end()  # wrong key for the receiver: 401
    client.score_session("s", name="n", value=1)
    assert client.flush(10) is False  # not every score was delivered, and flush says so
    langfuse_receiver.stop()  # and unreachable
    provider.get_tracer("t").start_span("refused").end()
    client.score_session("s", name="n", value=1)
    assert client.flush(10) is False  # not every score was delivered, and flush says so
    errors: list[str] = []
    for bad in ({"base_url": "ftp://" + secret}, {"timeout": -1}):
        try:
            LangfuseSpanExporter(public_key="pk", secret_key=secret, **bad)
        except ValueError as error:
            errors.append(str(error))
    texts = [
        caplog.text,
        *(record.getMessage() for record in caplog.records),
        *(str(record.exc_info) for record in caplog.records if record.exc_info),
        repr(exporter),
        repr(client),
        *errors,
    ]
    for text in texts:
        assert secret not in text
        assert encoded not in text
    client.shutdown(1)


# -- isolation --------------------------------------------------------------------------------


def test_1000_asyncio_requests_and_50_threads_never_share_a_session(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("app")
    client = ScoreClient(
        langfuse_receiver.public_key, langfuse_receiver.secret_key, langfuse_receiver.url
    )

    def handle(kind: str, request_id: str) -> None:
        with tracer.start_as_current_span(f"{kind} {request_id}"):
            client.score_session(current_session_id() or "none", name=request_id, value=1)

    async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        request_id = scope["query_string"].decode()
        await asyncio.sleep(0)
        handle("asgi", request_id)
        await asyncio.sleep(0)
        with tracer.start_as_current_span(f"asgi-after {request_id}"):
            pass

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        handle("wsgi", environ["QUERY_STRING"])
        start_response("200 OK", [])
        return [b""]

    asgi = ASGISessionMiddleware(asgi_app)
    wsgi = WSGISessionMiddleware(wsgi_app)

    async def asgi_requests() -> None:
        async def one(i: int) -> None:
            scope = {
                "type": "http",
                "query_string": f"a{i}".encode(),
                "headers": [(b"x-session-id", f"a{i}".encode())],
            }

            async def receive() -> dict[str, Any]:
                return {"type": "http.request"}

            async def send(message: dict[str, Any]) -> None:
                pass

            await asgi(scope, receive, send)

        await asyncio.gather(*(one(i) for i in range(1000)))

    def wsgi_requests(thread: int) -> None:
        for j in range(20):
            request_id = f"w{thread}-{j}"
            wsgi({"QUERY_STRING": request_id, "HTTP_X_SESSION_ID": request_id}, lambda *a: None)

    threads = [threading.Thread(target=wsgi_requests, args=(t,)) for t in range(50)]
    for thread in threads:
        thread.start()
    asyncio.run(asgi_requests())
    for thread in threads:
        thread.join()
    assert client.flush(60)
    spans = memory.get_finished_spans()
    assert len(spans) == 2000 + 1000
    for span in spans:
        assert (span.attributes or {})["langfuse.session.id"] == span.name.split()[1], span.name
    received = langfuse_receiver.scores()
    assert len(received) == 2000
    assert all(score["sessionId"] == score["name"] for score in received)
    client.shutdown(5)
