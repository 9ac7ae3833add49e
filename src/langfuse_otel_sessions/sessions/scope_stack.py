"""Entering and leaving `session()` scopes safely, wherever Python resumes the code.

A ``with`` block in a generator leaves and re-enters the consumer's context at every ``yield``:
generators interleaved by one consumer exit their scopes out of order, and a generator the
consumer abandons is closed later, possibly in another task or thread. A plain
``attach``/``detach`` pair then restores the wrong context (an earlier scope's session stays
active in the consumer) or fails ("Failed to detach context"). So:

* each context keeps a stack of the scopes entered in it; leaving the innermost one restores the
  context from before it; leaving another one (out of order) only unlinks it, so that the
  scopes above it restore what was there before *it*;
* leaving a scope that was not entered in the current context (a generator closed elsewhere)
  changes nothing there and logs nothing;
* decorated generators and coroutines run each step inside the scope and hand the consumer
  back its own context between steps: nothing of the scope is ever left in the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context, attach, detach, get_current
from opentelemetry.trace import INVALID_SPAN, Link, Span, Status, StatusCode

#: Name of the tracer that starts the root span of a ``session(..., new_trace=True)`` scope.
TRACER_NAME = "langfuse_otel_sessions"

Build = Callable[[Context], Context]
#: ``session(..., new_trace=True)``: the name of the scope's root span and its tracer provider.
Root = tuple[str, "trace.TracerProvider | None"] | None


class ScopeContext(Context):
    """The context a scope makes current. If the scope is left in another thread or task than
    the one that entered it (a generator closed elsewhere), it is *released*: from then on it
    reads as the context from before the scope, so the consumer it was left in (which Python
    gives no way to reach) sees no trace of it."""

    __slots__ = ("released_to",)

    def __init__(self, values: Context) -> None:
        super().__init__(values)
        self.released_to: Context | None = None

    def get(self, key: str, default: object = None) -> object:
        released = self.released_to
        if released is None:
            return dict.get(self, key, default)
        return released.get(key, default)

    def __getitem__(self, key: str) -> object:
        released = self.released_to
        return dict.__getitem__(self, key) if released is None else released[key]

    def __contains__(self, key: object) -> bool:
        released = self.released_to
        return dict.__contains__(self, key) if released is None else key in released

    def copy(self) -> dict[str, object]:
        released = self.released_to
        return dict.copy(self) if released is None else released.copy()


class _Entry:
    """One entering of a scope in one context: what to restore, and its own root span."""

    __slots__ = ("attached", "owner", "previous", "span", "task", "thread")

    def __init__(
        self, owner: object, previous: Context, attached: ScopeContext, span: Span | None
    ) -> None:
        self.owner = owner
        self.previous = previous
        self.attached = attached
        self.span = span
        self.thread = threading.get_ident()
        self.task = _current_task()

    def relinked(self, previous: Context) -> _Entry:
        entry = _Entry(self.owner, previous, self.attached, self.span)
        entry.thread, entry.task = self.thread, self.task
        return entry

    def end(self, error: BaseException | None) -> None:
        if self.span is not None:
            if error is not None:
                self.span.record_exception(error)
                self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            self.span.end()
            self.span = None


def _current_task() -> object:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop
        return None


# The entries of every scope object still open somewhere, so that a scope left in another thread
# (where the context's stack does not hold it) can still be released.
_OPEN: weakref.WeakKeyDictionary[Any, list[_Entry]] = weakref.WeakKeyDictionary()
_OPEN_LOCK = threading.Lock()


# Kept per context (not on the scope object) so one scope object may be entered concurrently by
# many tasks and threads; innermost last.
_ENTERED: ContextVar[tuple[_Entry, ...]] = ContextVar("langfuse_otel_sessions_scopes", default=())


def start_root(
    context: Context, root: tuple[str, trace.TracerProvider | None], previous: Context
) -> tuple[Span, Context]:
    """Start a span in a trace of its own under ``context`` (whose baggage it gets), linked to
    the span current in ``previous``; returns it and the context with it current."""
    name, provider = root
    current = trace.get_current_span(previous).get_span_context()
    links = (
        [Link(current, {"langfuse_otel_sessions.link": "session scope"})]
        if current.is_valid
        else []
    )
    no_parent = trace.set_span_in_context(INVALID_SPAN, context)
    tracer = trace.get_tracer(TRACER_NAME, tracer_provider=provider)
    span = tracer.start_span(name, context=no_parent, links=links)
    return span, trace.set_span_in_context(span, context)


def enter(owner: object, build: Build, root: Root) -> None:
    """Make ``build(current context)`` current, remembering how to undo it."""
    previous = get_current()
    context = build(previous)
    span = None
    if root is not None:
        span, context = start_root(context, root, previous)
    attached = ScopeContext(context)
    entry = _Entry(owner, previous, attached, span)
    with _OPEN_LOCK:
        _OPEN.setdefault(owner, []).append(entry)
    attach(attached)
    entered = _ENTERED.get()
    while entered and entered[-1].attached.released_to is not None:  # left elsewhere
        entered = entered[:-1]
    _ENTERED.set((*entered, entry))


def _forget(owner: object, entry: _Entry | None) -> _Entry | None:
    """Remove ``entry`` (default: the latest) from ``owner``'s open entries; returns it."""
    with _OPEN_LOCK:
        entries = _OPEN.get(owner)
        if not entries:
            return None
        if entry is None:
            entry = entries[-1]
        for index in range(len(entries) - 1, -1, -1):
            if entries[index].attached is entry.attached:
                del entries[index]
                break
        if not entries:
            del _OPEN[owner]
        return entry


def leave(owner: object, error: BaseException | None) -> None:
    """Undo the innermost entering of ``owner`` in the current context (see module docs)."""
    entered = _ENTERED.get()
    for index in range(len(entered) - 1, -1, -1):
        entry = entered[index]
        if entry.owner is owner:
            break
    else:  # entered in another thread (a generator closed elsewhere): release it there
        left = _forget(owner, None)
        if left is not None:
            left.attached.released_to = left.previous
            left.end(error)
        return
    _forget(owner, entry)
    if entry.thread != threading.get_ident() or entry.task is not _current_task():
        entry.attached.released_to = entry.previous  # entered by a consumer we cannot reach
    rest = entered[:index] + entered[index + 1 :]
    if index == len(entered) - 1:
        _ENTERED.set(rest)
        attach(entry.previous)
    else:  # left out of order: the scope above now restores what was there before this one
        rest = (*rest[:index], rest[index].relinked(entry.previous), *rest[index + 1 :])
        _ENTERED.set(rest)
    entry.end(error)


def decorate(
    owner: object, build: Build, root: Root, func: Callable[..., Any]
) -> Callable[..., Any]:
    """Wrap ``func`` so that each call runs inside the scope, whatever it returns."""
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
            return await _scoped_await(owner, build, root, func(*args, **kwargs))

        return run_async

    @functools.wraps(func)
    def run(*args: object, **kwargs: object) -> object:
        enter(owner, build, root)
        try:
            result = func(*args, **kwargs)
        except BaseException as error:
            leave(owner, error)
            raise
        leave(owner, None)
        # A plain function may return work that runs later (an async function under a plain
        # decorator, a generator): that work runs inside the scope too.
        if inspect.isgenerator(result):
            return _scoped_gen(build, root, result)
        if inspect.isasyncgen(result):
            return _async_gen_function(build, root, lambda: result)()
        if inspect.isawaitable(result) and not isinstance(result, asyncio.Future):
            return _scoped_await(owner, build, root, result)
        return result

    return run


async def _scoped_await(
    owner: object, build: Build, root: Root, awaitable: Awaitable[Any]
) -> object:
    enter(owner, build, root)
    try:
        result = await awaitable
    except BaseException as error:
        leave(owner, error)
        raise
    leave(owner, None)
    return result


class _Steps:
    """The context a decorated generator's steps run in; its root span spans all of them."""

    __slots__ = ("build", "root", "span")

    def __init__(self, build: Build, root: Root) -> None:
        self.build = build
        self.root = root
        self.span: Span | None = None

    def context(self) -> Context:
        previous = get_current()
        context = self.build(previous)
        if self.root is None:
            return context
        if self.span is None:
            self.span, context = start_root(context, self.root, previous)
            return context
        return trace.set_span_in_context(self.span, context)

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """One step of the generator runs inside the scope, and leaves nothing of it behind."""
        token = attach(self.context())
        try:
            yield
        finally:
            detach(token)

    def end(self, error: BaseException | None = None) -> None:
        if self.span is not None:
            if error is not None and not isinstance(error, GeneratorExit):
                self.span.record_exception(error)
                self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            self.span.end()
            self.span = None


def _scoped_gen(
    build: Build, root: Root, inner: Generator[Any, Any, Any]
) -> Generator[Any, Any, Any]:
    steps = _Steps(build, root)
    step: Callable[[], Any] = functools.partial(next, inner)
    try:
        while True:
            with steps.attached():
                try:
                    item = step()
                except StopIteration as stop:
                    steps.end()
                    return stop.value
            try:
                sent = yield item
            except GeneratorExit:
                with steps.attached():
                    inner.close()
                raise
            except BaseException as error:  # noqa: BLE001 - thrown in by the consumer: handed on
                step = functools.partial(inner.throw, error)
            else:
                step = functools.partial(inner.send, sent)
    except BaseException as error:
        steps.end(error)
        raise


def _async_gen_function(
    build: Build, root: Root, func: Callable[..., AsyncGenerator[Any, Any]]
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """An async generator function (frameworks inspect it) running ``func``'s generator one
    step at a time inside the scope."""

    @functools.wraps(func)
    async def run(*args: object, **kwargs: object) -> AsyncGenerator[Any, Any]:
        inner = func(*args, **kwargs)
        steps = _Steps(build, root)
        step: Callable[[], Awaitable[Any]] = inner.__anext__
        try:
            while True:
                with steps.attached():
                    try:
                        item = await step()
                    except StopAsyncIteration:
                        steps.end()
                        return
                try:
                    sent = yield item
                except GeneratorExit:
                    with steps.attached():
                        await inner.aclose()
                    raise
                except BaseException as error:  # noqa: BLE001 - thrown in by the consumer: handed on
                    step = functools.partial(inner.athrow, error)
                else:
                    step = functools.partial(inner.asend, sent)
        except BaseException as error:
            steps.end(error)
            raise

    return run
