"""Entering and leaving `session()` scopes, wherever Python resumes the code: each context
keeps a stack of its scopes; one left elsewhere is *released* (``docs/sessions.md``)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import inspect
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context, attach, detach, get_current
from opentelemetry.trace import INVALID_SPAN, Link, Span, Status, StatusCode

Build = Callable[[Context], Context]
Root = tuple[str, "trace.TracerProvider | None"] | None  # new_trace: root span name, provider


class ScopeContext(Context):
    """The context a scope makes current; once *released* it reads as the one before it."""

    __slots__ = ("released_to",)

    def __init__(self, values: Context) -> None:
        super().__init__(values)
        self.released_to: Context | None = None

    def get(self, key: str, default: object = None) -> object:
        released = self.released_to
        return dict.get(self, key, default) if released is None else released.get(key, default)

    def copy(self) -> dict[str, object]:
        released = self.released_to
        return dict.copy(self) if released is None else released.copy()


def _end(span: Span | None, error: BaseException | None) -> None:
    """End a scope's root span, recording ``error`` (``GeneratorExit`` is none)."""
    if span is None:
        return
    if error is not None and not isinstance(error, GeneratorExit):
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end()


class _Entry:
    """One entering of a scope in one context: what to restore, and its root span."""

    __slots__ = ("attached", "owner", "previous", "span", "task", "thread")

    def __init__(
        self, owner: list[_Entry], previous: Context, attached: ScopeContext, span: Span | None
    ) -> None:
        self.owner, self.previous, self.attached, self.span = owner, previous, attached, span
        self.thread, self.task = threading.get_ident(), _current_task()


def _current_task() -> object:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop
        return None


_OPEN_LOCK = threading.Lock()  # for the lists of open entries each scope keeps (its owner)
# Per context (not on the scope: one scope may be entered by many tasks at once); innermost last.
_ENTERED: ContextVar[tuple[_Entry, ...]] = ContextVar("langfuse_otel_sessions_scopes", default=())


def start_root(
    context: Context, root: tuple[str, trace.TracerProvider | None], previous: Context
) -> tuple[Span, Context]:
    """A root span under ``context``, linked to the span current in ``previous``, made current."""
    name, provider = root
    current = trace.get_current_span(previous).get_span_context()
    links = [Link(current, {"langfuse_otel_sessions.link": "session scope"})]
    no_parent = trace.set_span_in_context(INVALID_SPAN, context)
    tracer = trace.get_tracer("langfuse_otel_sessions", tracer_provider=provider)
    span = tracer.start_span(name, context=no_parent, links=links if current.is_valid else [])
    return span, trace.set_span_in_context(span, context)


def enter(owner: list[_Entry], build: Build, root: Root) -> None:
    """Make ``build(current context)`` current, remembering in ``owner`` (the scope's list of
    its open entries, so one left in another thread can still be released) how to undo it."""
    previous = get_current()
    span, context = start_root(build(previous), root, previous) if root else (None, build(previous))
    entry = _Entry(owner, previous, ScopeContext(context), span)
    with _OPEN_LOCK:
        owner.append(entry)
    attach(entry.attached)
    entered = _ENTERED.get()
    while entered and entered[-1].attached.released_to is not None:  # left elsewhere
        entered = entered[:-1]
    _ENTERED.set((*entered, entry))


def _forget(owner: list[_Entry], entry: _Entry | None) -> _Entry | None:
    """Remove ``entry`` (default: the latest) from ``owner``'s open entries; returns it."""
    with _OPEN_LOCK:
        match = (e for e in reversed(owner) if entry is None or e.attached is entry.attached)
        found = owner[-1] if owner and entry in (None, owner[-1]) else next(match, None)
        if found is not None:
            owner.remove(found)
        return found


def leave(owner: list[_Entry], error: BaseException | None) -> None:
    """Undo the innermost entering of ``owner`` in the current context (see module docs)."""
    entered = _ENTERED.get()
    index = len(entered) - 1
    while index >= 0 and entered[index].owner is not owner:
        index -= 1
    # Not entered here (a generator closed in another thread): the latest entering, released.
    found = _forget(owner, None if index < 0 else entered[index])
    entry = found if index < 0 else entered[index]
    if entry is None:
        return
    if index < 0 or entry.thread != threading.get_ident() or entry.task is not _current_task():
        entry.attached.released_to = entry.previous  # or entered by a consumer we cannot reach
    if 0 <= index == len(entered) - 1:
        _ENTERED.set(entered[:index])
        attach(entry.previous)
    elif index >= 0:  # left out of order: the scope above now restores what was there before
        rest = [*entered[:index], *entered[index + 1 :]]
        above = rest[index] = copy.copy(rest[index])
        above.previous = entry.previous
        _ENTERED.set(tuple(rest))
    _end(entry.span, error)


def decorate(
    scope: AbstractContextManager[object], build: Build, root: Root, func: Callable[..., Any]
) -> Callable[..., Any]:
    """Wrap ``func`` so that each call runs inside ``scope``, whatever it returns."""
    if inspect.isasyncgenfunction(func):
        return _async_gen_function(build, root, func)
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def run_gen(*args: object, **kwargs: object) -> Generator[Any, Any, Any]:
            return (yield from _scoped_gen(build, root, func(*args, **kwargs)))

        return run_gen
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(*args: object, **kwargs: object) -> object:
            return await _scoped_await(scope, func(*args, **kwargs))

        return run_async

    @functools.wraps(func)
    def run(*args: object, **kwargs: object) -> object:
        with scope:
            result = func(*args, **kwargs)
        # What a plain function returns to run later runs inside the scope too.
        if inspect.isgenerator(result):
            return _scoped_gen(build, root, result)
        if inspect.isasyncgen(result):
            return _async_gen_function(build, root, lambda: result)()
        if inspect.isawaitable(result) and not isinstance(result, asyncio.Future):
            return _scoped_await(scope, result)
        return result

    return run


async def _scoped_await(scope: AbstractContextManager[object], awaitable: Awaitable[Any]) -> object:
    with scope:
        return await awaitable


class _Steps:
    """The scope a decorated generator's steps run in; its root span covers all of them."""

    __slots__ = ("build", "root", "span")

    def __init__(self, build: Build, root: Root) -> None:
        self.build, self.root = build, root
        self.span: Span | None = None

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """One step runs inside the scope and leaves nothing of it behind."""
        previous = get_current()
        context = self.build(previous)
        if self.root is not None and self.span is None:
            self.span, context = start_root(context, self.root, previous)
        elif self.span is not None:
            context = trace.set_span_in_context(self.span, context)
        token = attach(context)
        try:
            yield
        finally:
            detach(token)

    def __enter__(self) -> _Steps:
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        _end(self.span, error)


def _scoped_gen(
    build: Build, root: Root, inner: Generator[Any, Any, Any]
) -> Generator[Any, Any, Any]:
    with _Steps(build, root) as steps:
        step: Callable[[Any], Any] = inner.send
        value: Any = None
        while True:
            with steps.attached():
                try:
                    item = step(value)
                except StopIteration as stop:
                    return stop.value
            try:
                value, step = (yield item), inner.send
            except GeneratorExit:
                with steps.attached():
                    inner.close()
                raise
            except BaseException as error:  # noqa: BLE001 - thrown in by the consumer: handed on
                step, value = inner.throw, error


def _async_gen_function(
    build: Build, root: Root, func: Callable[..., AsyncGenerator[Any, Any]]
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """An async generator function running ``func``'s generator step by step in the scope."""

    @functools.wraps(func)
    async def run(*args: object, **kwargs: object) -> AsyncGenerator[Any, Any]:
        inner = func(*args, **kwargs)
        with _Steps(build, root) as steps:
            step: Callable[[Any], Awaitable[Any]] = inner.asend
            value: Any = None
            while True:
                with steps.attached():
                    try:
                        item = await step(value)
                    except StopAsyncIteration:
                        return
                try:
                    value, step = (yield item), inner.asend
                except GeneratorExit:
                    with steps.attached():
                        await inner.aclose()
                    raise
                except BaseException as error:  # noqa: BLE001 - thrown in by the consumer
                    step, value = inner.athrow, error

    return run
