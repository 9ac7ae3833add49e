"""`session()`: scope code to a session through OpenTelemetry baggage (``docs/sessions.md``)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import baggage
from opentelemetry.context import Context, get_current
from opentelemetry.trace import TracerProvider

from .._logging import RateLimitedLog
from ..attributes import BAGGAGE_LANGFUSE_TAGS, DEFAULT_MAX_ID_LENGTH
from ..baggage_keys import IdKeys, KnownKeys, known_keys
from ..ids import check_id, id_problem
from ._setup_warnings import warn_once_on_setup_gaps
from .context_slots import GENERATED_SESSION_ID, PLANS, with_own_entries, withheld_remote_entries
from .scope_stack import Root, decorate, enter, leave
from .session import Session
from .trace_attributes import baggage_entries, merged_tags

P = ParamSpec("P")
R = TypeVar("R")


def scoped_context(
    parent: Context,
    session_id: str | None,
    user_id: str | None,
    attributes: Mapping[str, str] | None = None,
    *,
    generated: bool = False,
    known: KnownKeys | None = None,
) -> Context:
    """``parent`` with the ids under the keys the processors read, and the trace attributes."""
    if session_id is not None or user_id is not None or attributes:
        warn_once_on_setup_gaps()
    known = known_keys() if known is None else known
    own = dict(attributes) if attributes else {}  # ours: they leave only where the user opted in
    if BAGGAGE_LANGFUSE_TAGS in own:
        inherited = baggage.get_baggage(BAGGAGE_LANGFUSE_TAGS, parent)
        if inherited is not None:
            own[BAGGAGE_LANGFUSE_TAGS] = merged_tags(inherited, own[BAGGAGE_LANGFUSE_TAGS])
    rival_session, rival_user = known.rivals  # worked out once per KnownKeys
    rivals = rival_session if session_id is not None else ()
    slots: dict[str, object] = {PLANS: {}}  # processors work out once what its spans get
    if session_id is not None:
        own.update(dict.fromkeys(known.session_writes, session_id))
        if generated or parent.get(GENERATED_SESSION_ID) is not None:
            slots[GENERATED_SESSION_ID] = session_id if generated else None
    if user_id is not None:
        own.update(dict.fromkeys(known.user_writes, user_id))
        rivals += rival_user
    return with_own_entries(parent, own, rivals, slots)


@dataclass(eq=False)  # identity: one scope may be entered many times at once
class SessionScope:
    """What :func:`session` returns: a context manager (sync and async) and a decorator."""

    session_id: str
    user_id: str | None
    root: Root = field(default=None, repr=False)
    attributes: Mapping[str, str] = field(default_factory=dict, repr=False)  # baggage entries
    generated: bool = field(default=False, repr=False, kw_only=True)
    _open: list[Any] = field(default_factory=list, init=False, repr=False)  # entered, not left

    def context(self, parent: Context | None = None) -> Context:
        """This scope's OTel context, derived from ``parent`` (default: the current one)."""
        return scoped_context(
            get_current() if parent is None else parent,
            self.session_id,
            self.user_id,
            self.attributes,
            generated=self.generated,
        )

    def __enter__(self) -> SessionScope:
        enter(self._open, self.context, self.root)
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        leave(self._open, error)

    async def __aenter__(self) -> SessionScope:
        return self.__enter__()

    async def __aexit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        leave(self._open, error)

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        """Run each call of ``func`` (each step of a generator or awaitable) inside the scope."""
        if not callable(func):
            raise TypeError(f"session() decorates a callable, not {type(func).__name__}")
        return decorate(self, self.context, self.root, func)


def session(
    session_or_id: Session | str,
    *,
    user_id: str | None = None,
    tags: list[str] | tuple[str, ...] | None = None,
    metadata: Mapping[str, str] | None = None,
    environment: str | None = None,
    release: str | None = None,
    version: str | None = None,
    trace_name: str | None = None,
    new_trace: bool = False,
    tracer_provider: TracerProvider | None = None,
) -> SessionScope:
    """Scope code to a session: ``with session(s):``, ``async with``, or ``@session(s)``
    (``docs/sessions.md``)."""
    session_id = check_id(Session.get_id(session_or_id), DEFAULT_MAX_ID_LENGTH)
    if user_id is not None:
        user_id = check_id(user_id, DEFAULT_MAX_ID_LENGTH, "user id")
    attributes = baggage_entries(
        tags=tags,
        metadata=metadata,
        environment=environment,
        release=release,
        version=version,
        trace_name=trace_name,
    )
    root = (trace_name or "session", tracer_provider) if new_trace else None
    generated = isinstance(session_or_id, Session) and session_or_id.id_generated
    return SessionScope(session_id, user_id, root, attributes, generated=generated)


def _first_valid(
    entries: Mapping[str, object], keys: Sequence[str], what: str, log: RateLimitedLog | None
) -> str | None:
    """The first present entry of ``keys`` if a valid id (else ``log`` says why)."""
    value = None
    for key in keys:  # a loop, not next(generator): this runs for each new context's spans
        if (value := entries.get(key)) is not None:
            break
    problem = None if value is None else id_problem(value, DEFAULT_MAX_ID_LENGTH)
    if problem is None:
        return value  # type: ignore[return-value]  # id_problem proved it a str
    if log is not None:
        log.warning(f"invalid-{what}", "Not stamping a %s id from baggage: %s", what, problem)
    return None


def ids_of(
    entries: Mapping[str, object], reader: IdKeys, log: RateLimitedLog | None = None
) -> tuple[str | None, str | None]:
    """The session and user id ``reader`` takes from baggage ``entries``."""
    return (
        _first_valid(entries, reader.session, "session", log),
        _first_valid(entries, reader.user, "user", log),
    )


def ids_in_force(
    context: Context | None, reader: IdKeys | None = None
) -> tuple[str | None, str | None]:
    """The ids the configured processor (or ``reader``) would stamp on a span started now."""
    reader = known_keys().reader if reader is None else reader
    for entries in (baggage.get_all(context), withheld_remote_entries(context)):
        session_id, user_id = ids_of(entries, reader)
        if session_id is not None or user_id is not None or not reader.trust_remote:
            return session_id, user_id
    return None, None


def current_session_id(context: Context | None = None) -> str | None:
    """The session id a span started now would get, or ``None``."""
    return ids_in_force(context)[0]


def current_user_id(context: Context | None = None) -> str | None:
    """The user id a span started now would get, or ``None``."""
    return ids_in_force(context)[1]
