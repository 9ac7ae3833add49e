"""`session()` scopes in generators, under plain decorators, and with ``new_trace``.

Issue 10 items 7 and 10: nothing of a scope is ever left in the consumer, and no "Failed to
detach context" is logged, however generators are interleaved or abandoned.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from opentelemetry import trace

from langfuse_otel_sessions import current_session_id, current_user_id, session

from .conftest import Traced

T = TypeVar("T")


@pytest.fixture
def detach_errors(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.ERROR, logger="opentelemetry.context")
    yield caplog
    assert not [r for r in caplog.records if "detach" in r.getMessage()]


def _conversation(session_id: str) -> Iterator[str | None]:
    with session(session_id, user_id=f"user-{session_id}"):
        yield current_session_id()
        yield current_session_id()


def test_interleaved_generators_leave_nothing_in_the_consumer(
    detach_errors: pytest.LogCaptureFixture,
) -> None:
    # A `with` block in a generator sees the consumer's context at each step (Python resumes it
    # there): what must hold is that the consumer is left with its own context at the end.
    first, second = _conversation("a"), _conversation("b")
    for generator in (first, second, first, second):
        next(generator)
    for generator in (first, second):  # "a" exits while "b" is still open: out of order
        with pytest.raises(StopIteration):
            next(generator)
    assert current_session_id() is None
    assert current_user_id() is None


def test_interleaved_generators_closed_in_any_order(
    detach_errors: pytest.LogCaptureFixture,
) -> None:
    with session("outer"):
        first, second, third = (_conversation(s) for s in ("a", "b", "c"))
        for generator in (first, second, third):
            next(generator)
        second.close()
        first.close()
        assert current_session_id() == "c"  # still inside "c"'s scope, as Python left it
        third.close()
        assert current_session_id() == "outer"
    assert current_session_id() is None


def test_an_abandoned_generator_leaves_nothing_in_the_consumer(
    detach_errors: pytest.LogCaptureFixture,
) -> None:
    for seen in _conversation("abandoned"):
        assert seen == "abandoned"
        break
    gc.collect()
    assert current_session_id() is None


def test_a_generator_closed_in_another_thread_logs_nothing(
    detach_errors: pytest.LogCaptureFixture,
) -> None:
    generator = _conversation("elsewhere")
    next(generator)
    assert current_session_id() == "elsewhere"
    closer = threading.Thread(target=generator.close)
    closer.start()
    closer.join(10)
    assert not closer.is_alive()
    assert current_session_id() is None  # the scope left elsewhere is released here too
    assert current_user_id() is None


async def _async_conversation(session_id: str) -> AsyncIterator[str | None]:
    async with session(session_id):
        yield current_session_id()
        yield current_session_id()


def test_interleaved_async_generators_leave_nothing_in_the_consumer(
    detach_errors: pytest.LogCaptureFixture,
) -> None:
    async def consume() -> str | None:
        first, second = _async_conversation("a"), _async_conversation("b")
        for generator in (first, second, first, second):
            await generator.__anext__()
        for generator in (first, second):
            with pytest.raises(StopAsyncIteration):
                await generator.__anext__()
        return current_session_id()

    assert asyncio.run(consume()) is None


def test_an_abandoned_async_generator_closed_by_asyncio_logs_nothing(
    detach_errors: pytest.LogCaptureFixture,
) -> None:
    closed = asyncio.Event

    async def consume() -> None:
        done = closed()

        async def conversation() -> AsyncIterator[str | None]:
            try:
                async with session("abandoned"):
                    yield current_session_id()
                    yield current_session_id()
            finally:
                done.set()

        async for seen in conversation():
            assert seen == "abandoned"
            break
        gc.collect()  # asyncio's finalizer closes it in a task of its own
        await asyncio.wait_for(done.wait(), 10)
        assert current_session_id() is None

    asyncio.run(consume())


@session("decorated", user_id="u")
def _decorated_conversation() -> Iterator[str | None]:
    yield current_session_id()
    yield current_session_id()


@session("decorated-async")
async def _decorated_async_conversation() -> AsyncIterator[str | None]:
    yield current_session_id()
    yield current_session_id()


def test_a_decorated_generator_runs_each_step_in_the_scope_and_none_outside() -> None:
    generator = _decorated_conversation()
    assert next(generator) == "decorated"
    assert current_session_id() is None  # between steps the consumer has its own context
    assert next(generator) == "decorated"
    generator.close()  # abandoned mid-way
    assert current_session_id() is None
    assert list(_decorated_conversation()) == ["decorated", "decorated"]


def test_a_decorated_generator_receives_sent_and_thrown_values() -> None:
    @session("s")
    def echo() -> Iterator[object]:
        received: object = None
        while True:
            try:
                received = yield (received, current_session_id())
            except KeyError as error:
                received = f"caught {error.args[0]}"

    generator = echo()
    assert next(generator) == (None, "s")
    assert generator.send("hi") == ("hi", "s")
    assert generator.throw(KeyError("k")) == ("caught k", "s")


def test_a_decorated_async_generator_leaves_nothing_between_steps() -> None:
    async def consume() -> list[tuple[str | None, str | None]]:
        seen = []
        async for inside in _decorated_async_conversation():
            seen.append((inside, current_session_id()))
        async for _ in _decorated_async_conversation():
            break  # abandoned
        return seen

    assert asyncio.run(consume()) == [("decorated-async", None), ("decorated-async", None)]


def test_decorated_generator_functions_stay_generator_functions() -> None:
    import inspect

    assert inspect.isgeneratorfunction(_decorated_conversation)
    assert inspect.isasyncgenfunction(_decorated_async_conversation)


def _plain_decorator(func: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return func(*args, **kwargs)

    return wrapper


def test_an_async_function_under_a_plain_decorator_runs_in_the_scope() -> None:
    @session("wrapped")
    @_plain_decorator
    async def answer() -> str | None:
        await asyncio.sleep(0)
        return current_session_id()

    async def call() -> tuple[str | None, str | None]:
        result = await answer()
        return result, current_session_id()

    assert asyncio.run(call()) == ("wrapped", None)


def test_a_task_returned_by_a_decorated_function_keeps_its_type() -> None:
    async def work() -> str | None:
        return current_session_id()

    @session("scheduled")
    def schedule() -> Awaitable[str | None]:
        return asyncio.ensure_future(work())  # created inside the scope: it copied the context

    async def call() -> str | None:
        task = schedule()
        assert isinstance(task, asyncio.Task)
        return await task

    assert asyncio.run(call()) == "scheduled"


def test_decorating_something_that_is_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="callable"):
        session("s")(42)  # type: ignore[call-overload]


def test_new_trace_gives_each_conversation_of_a_batch_job_a_trace_of_its_own(
    traced: Traced,
) -> None:
    tracer = traced.tracer
    with tracer.start_as_current_span("nightly job") as job:
        for conversation in ("c1", "c2"):
            with session(
                conversation,
                new_trace=True,
                trace_name=f"summarise {conversation}",
                tracer_provider=traced.provider,
            ):
                tracer.start_span(f"llm {conversation}").end()
        assert trace.get_current_span() is job
    job_context = traced.span("nightly job").context
    assert job_context is not None
    trace_ids = set()
    for conversation in ("c1", "c2"):
        root = traced.span(f"summarise {conversation}")
        child = traced.span(f"llm {conversation}")
        assert root.parent is None
        assert child.parent is not None
        assert child.parent.span_id == root.context.span_id  # type: ignore[union-attr]
        assert traced.session_of(f"summarise {conversation}") == conversation
        assert traced.session_of(f"llm {conversation}") == conversation
        assert [link.context.span_id for link in root.links] == [job_context.span_id]
        trace_ids.add(root.context.trace_id)  # type: ignore[union-attr]
    assert job_context.trace_id not in trace_ids
    assert len(trace_ids) == 2
    assert traced.session_of("nightly job") is None


def test_new_trace_records_an_error_and_works_as_decorator_and_generator(traced: Traced) -> None:
    @session("s", new_trace=True, trace_name="failing", tracer_provider=traced.provider)
    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        fail()
    assert traced.span("failing").status.status_code is trace.StatusCode.ERROR

    @session("g", new_trace=True, trace_name="streamed", tracer_provider=traced.provider)
    def stream() -> Iterator[int]:
        for index in range(3):
            traced.tracer.start_span(f"chunk {index}").end()
            yield index

    assert list(stream()) == [0, 1, 2]
    root = traced.span("streamed")
    for index in range(3):
        chunk = traced.span(f"chunk {index}")
        assert chunk.context.trace_id == root.context.trace_id  # type: ignore[union-attr]
        assert traced.session_of(f"chunk {index}") == "g"
