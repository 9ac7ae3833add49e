from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import baggage, context
from opentelemetry.baggage.propagation import W3CBaggagePropagator

from langfuse_otel_sessions import (
    InvalidIdError,
    Session,
    current_session_id,
    current_user_id,
    session,
)

from .conftest import Traced


def test_with_block_sets_and_restores_the_session(traced: Traced) -> None:
    assert current_session_id() is None
    with session("s1", user_id="u1"):
        assert current_session_id() == "s1"
        assert current_user_id() == "u1"
        with traced.third_party.start_as_current_span("inside"):
            pass
    assert current_session_id() is None
    with traced.tracer.start_as_current_span("outside"):
        pass
    assert traced.session_of("inside") == "s1"
    assert traced.user_of("inside") == "u1"
    assert traced.session_of("outside") is None


def test_accepts_a_session_object(traced: Traced) -> None:
    s = Session.start()
    with session(s), traced.tracer.start_as_current_span("op"):
        pass
    assert traced.session_of("op") == s.id


def test_nested_scopes_restore_the_outer_one() -> None:
    with session("outer", user_id="u-outer"):
        with session("inner"):
            assert current_session_id() == "inner"
            assert current_user_id() == "u-outer"  # no user given: the outer one stays
        assert current_session_id() == "outer"
    assert current_session_id() is None


def test_one_scope_object_can_be_reentered() -> None:
    scope = session("again")
    with scope:
        with scope:
            assert current_session_id() == "again"
        assert current_session_id() == "again"
    assert current_session_id() is None


def test_exceptions_pass_through_and_the_scope_is_restored() -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), session("s"):
        raise Boom
    assert current_session_id() is None


def test_decorates_sync_functions() -> None:
    @session("decorated", user_id="u")
    def work(x: int) -> tuple[int, str | None, str | None]:
        return x * 2, current_session_id(), current_user_id()

    assert work.__name__ == "work"
    assert work(21) == (42, "decorated", "u")
    assert current_session_id() is None


async def test_decorates_async_functions_and_async_with() -> None:
    @session("async-decorated")
    async def work() -> str | None:
        await asyncio.sleep(0)
        return current_session_id()

    assert await work() == "async-decorated"
    async with session("async-with"):
        await asyncio.sleep(0)
        assert current_session_id() == "async-with"
    assert current_session_id() is None


def test_a_decorated_function_shared_by_threads_keeps_each_call_apart() -> None:
    barrier = threading.Barrier(8)

    @session("shared")
    def work(i: int) -> tuple[str | None, str | None]:
        barrier.wait(timeout=10)
        with session(f"inner-{i}"):
            inner = current_session_id()
        return inner, current_session_id()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    assert results == [(f"inner-{i}", "shared") for i in range(8)]


async def test_asyncio_tasks_inherit_the_session() -> None:
    async def child() -> str | None:
        await asyncio.sleep(0)
        return current_session_id()

    with session("parent-task"):
        task = asyncio.create_task(child())
    assert await task == "parent-task"


def test_threads_that_copy_the_context_inherit_the_session() -> None:
    with session("threaded"):
        ctx = contextvars.copy_context()
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(ctx.run, current_session_id).result() == "threaded"
        assert pool.submit(current_session_id).result() is None


@pytest.mark.parametrize("bad", ["", "x" * 201, "line\nbreak", "\x7f"])
def test_invalid_ids_raise_before_anything_changes(bad: str) -> None:
    with pytest.raises(InvalidIdError):
        session(bad)
    with pytest.raises(InvalidIdError):
        session("fine", user_id=bad)
    assert current_session_id() is None


def test_non_string_ids_are_a_type_error() -> None:
    with pytest.raises(TypeError):
        session(123)  # type: ignore[arg-type]


def test_ids_are_limited_to_langfuses_200_characters() -> None:
    with pytest.raises(InvalidIdError):
        session("x" * 201)
    with session("x" * 200):
        assert current_session_id() == "x" * 200


def test_scope_writes_the_langfuse_sdk_key_and_overrides_other_session_keys() -> None:
    token = context.attach(baggage.set_baggage("session.id", "stale"))
    try:
        with session("fresh", user_id="u"):
            entries = dict(baggage.get_all())
            assert entries["langfuse_session_id"] == "fresh"
            assert entries["langfuse_user_id"] == "u"
            assert "session.id" not in entries
            assert current_session_id() == "fresh"
        assert current_session_id() == "stale"
    finally:
        context.detach(token)


def test_the_session_travels_in_the_w3c_baggage_header() -> None:
    carrier: dict[str, str] = {}
    with session("sess 1/é", user_id="u@example.com"):
        W3CBaggagePropagator().inject(carrier)
    header = carrier["baggage"]
    assert "langfuse_session_id=" in header
    extracted = W3CBaggagePropagator().extract(carrier)
    assert baggage.get_baggage("langfuse_session_id", extracted) == "sess 1/é"
    assert baggage.get_baggage("langfuse_user_id", extracted) == "u@example.com"
