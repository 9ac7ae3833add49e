"""`session()`: scope code to a session through OpenTelemetry baggage.

Inside the scope the baggage holds ``langfuse_session_id`` (and ``langfuse_user_id``): the key the
Langfuse Python SDK writes and reads, which :class:`SessionSpanProcessor` reads too, and which an
instrumented HTTP client sends downstream in the W3C ``baggage`` header. Other session/user keys
(``langfuse.session.id``, ``session.id``, ...) are removed inside the scope so that no stale or
remote value outranks the one set here.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import baggage
from opentelemetry.context import Context, get_current
from opentelemetry.trace import TracerProvider

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
from .scope_entries import Root, decorate, enter, leave
from .session import Session

P = ParamSpec("P")
R = TypeVar("R")


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
    return baggage.set_baggage(key, value, context)


class SessionScope:
    """What :func:`session` returns: a context manager (sync and async) and a decorator."""

    __slots__ = ("__weakref__", "root", "session_id", "user_id")

    def __init__(self, session_id: str, user_id: str | None, root: Root = None) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.root = root  # with new_trace: the scope's own root span (name, tracer provider)

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

    def _entered_context(self, parent: Context) -> Context:
        warn_once_without_processor()
        return self.context(parent)

    def __enter__(self) -> SessionScope:
        enter(self, self._entered_context, self.root)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        leave(self, exc)

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
        """Decorate a function: each call runs inside the scope. Generators (sync and async)
        and whatever a function returns to be awaited or iterated later (an async function
        under a plain decorator) run each step inside the scope, and nothing of it is left in
        the caller between steps."""
        if not callable(func):
            raise TypeError(f"session() decorates a callable, not {type(func).__name__}")
        return decorate(self, self._entered_context, self.root, func)


def session(
    session_or_id: Session | str,
    *,
    user_id: str | None = None,
    new_trace: bool = False,
    trace_name: str = "session",
    tracer_provider: TracerProvider | None = None,
) -> SessionScope:
    """Scope code to a session: ``with session(s):``, ``async with``, or ``@session(s)``.

    Spans started inside get the session (and user) id from :class:`SessionSpanProcessor`;
    asyncio tasks and threads that copy the context inherit it; nested scopes restore the outer
    one on exit. With ``new_trace=True`` the scope starts a span named ``trace_name`` in a trace
    of its own, linked to the span current on entry, and ends it on exit: Langfuse files each
    trace in one session, so a job looping over sessions gets one trace per session. The span
    comes from ``tracer_provider`` (default: the global one). Raises
    :class:`InvalidIdError` for an invalid id and ``TypeError`` for a value that is neither a
    :class:`Session` nor a string.
    """
    max_length = env_positive_int(ENV_MAX_ID_LENGTH, DEFAULT_MAX_ID_LENGTH)
    session_id = check_id(Session.get_id(session_or_id), max_length)
    if user_id is not None:
        user_id = check_id(user_id, max_length, "user id")
    if not isinstance(trace_name, str) or not trace_name:
        raise TypeError("trace_name must be a non-empty string")
    return SessionScope(session_id, user_id, (trace_name, tracer_provider) if new_trace else None)


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
