"""`session()`: scope code to a session through OpenTelemetry baggage.

Inside the scope the baggage holds ``langfuse_session_id`` (and ``langfuse_user_id``): the key the
Langfuse Python SDK writes and reads, which :class:`SessionSpanProcessor` reads too, and which an
instrumented HTTP client sends downstream in the W3C ``baggage`` header. Other session/user keys
(``langfuse.session.id``, ``session.id``, ...) are removed inside the scope so that no stale or
remote value outranks the one set here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import baggage
from opentelemetry.context import Context, attach, detach, get_current

from ._processor_check import warn_once_without_processor
from .attributes import (
    BAGGAGE_LANGFUSE_SESSION_ID,
    BAGGAGE_LANGFUSE_USER_ID,
    DEFAULT_MAX_ID_LENGTH,
    DEFAULT_SESSION_BAGGAGE_KEYS,
    DEFAULT_USER_BAGGAGE_KEYS,
    ENV_MAX_ID_LENGTH,
    ENV_SESSION_BAGGAGE_KEYS,
    ENV_USER_BAGGAGE_KEYS,
)
from .environment import env_keys, env_positive_int
from .ids import check_id, id_problem
from .outbound import with_own_entries
from .session import Session

P = ParamSpec("P")
R = TypeVar("R")

# Tokens of the scopes entered in the current context, innermost last. Kept per context (not on
# the scope object) so one scope object may be entered concurrently by many tasks and threads.
_ENTERED: ContextVar[tuple[object, ...]] = ContextVar("langfuse_otel_sessions_scopes", default=())


def session_baggage_keys() -> tuple[str, ...]:
    """The baggage keys read for a session id (default and configured)."""
    return env_keys(ENV_SESSION_BAGGAGE_KEYS, DEFAULT_SESSION_BAGGAGE_KEYS)


def user_baggage_keys() -> tuple[str, ...]:
    """The baggage keys read for a user id (default and configured)."""
    return env_keys(ENV_USER_BAGGAGE_KEYS, DEFAULT_USER_BAGGAGE_KEYS)


def _with_entry(context: Context, key: str, value: str, rivals: tuple[str, ...]) -> Context:
    for rival in rivals:
        if rival != key and baggage.get_baggage(rival, context) is not None:
            context = baggage.remove_baggage(rival, context)
    return with_own_entries(context, {key: value})


class SessionScope:
    """What :func:`session` returns: a context manager (sync and async) and a decorator."""

    __slots__ = ("session_id", "user_id")

    def __init__(self, session_id: str, user_id: str | None) -> None:
        self.session_id = session_id
        self.user_id = user_id

    def __repr__(self) -> str:
        return f"SessionScope(session_id={self.session_id!r}, user_id={self.user_id!r})"

    def context(self, parent: Context | None = None) -> Context:
        """The OTel context of this scope, derived from ``parent`` (default: the current one)."""
        context = get_current() if parent is None else parent
        context = _with_entry(
            context, BAGGAGE_LANGFUSE_SESSION_ID, self.session_id, session_baggage_keys()
        )
        if self.user_id is not None:
            context = _with_entry(
                context, BAGGAGE_LANGFUSE_USER_ID, self.user_id, user_baggage_keys()
            )
        return context

    def __enter__(self) -> SessionScope:
        warn_once_without_processor()
        token = attach(self.context())
        _ENTERED.set((*_ENTERED.get(), token))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        entered = _ENTERED.get()
        if not entered:
            return
        _ENTERED.set(entered[:-1])
        detach(entered[-1])  # type: ignore[arg-type]  # the tokens stored are attach() tokens

    async def __aenter__(self) -> SessionScope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function: each call runs inside the scope."""
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                "session() cannot decorate a generator function; "
                "use `with session(...)` inside it instead"
            )
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:  # noqa: ANN401 - returns what func returns
                with self:
                    return await func(*args, **kwargs)

            return run_async

        @functools.wraps(func)
        def run(*args: P.args, **kwargs: P.kwargs) -> Any:  # noqa: ANN401 - returns what func returns
            with self:
                return func(*args, **kwargs)

        return run


def session(session_or_id: Session | str, *, user_id: str | None = None) -> SessionScope:
    """Scope code to a session: ``with session(s):``, ``async with``, or ``@session(s)``.

    Spans started inside get the session (and user) id from :class:`SessionSpanProcessor`;
    asyncio tasks and threads that copy the context inherit it; nested scopes restore the outer
    one on exit. Raises :class:`InvalidIdError` for an invalid id and ``TypeError`` for a value
    that is neither a :class:`Session` nor a string.
    """
    max_length = env_positive_int(ENV_MAX_ID_LENGTH, DEFAULT_MAX_ID_LENGTH)
    session_id = check_id(Session.get_id(session_or_id), max_length)
    if user_id is not None:
        user_id = check_id(user_id, max_length, "user id")
    return SessionScope(session_id, user_id)


def _first_valid(keys: tuple[str, ...], context: Context | None) -> str | None:
    entries = baggage.get_all(context)
    max_length = env_positive_int(ENV_MAX_ID_LENGTH, DEFAULT_MAX_ID_LENGTH)
    for key in keys:
        value = entries.get(key)
        if value is not None:
            if isinstance(value, str) and id_problem(value, max_length) is None:
                return value
            return None
    return None


def current_session_id(context: Context | None = None) -> str | None:
    """The session id in force (what a span started now would be stamped with), or ``None``."""
    return _first_valid(session_baggage_keys(), context)


def current_user_id(context: Context | None = None) -> str | None:
    """The user id in force, or ``None``."""
    return _first_valid(user_baggage_keys(), context)
