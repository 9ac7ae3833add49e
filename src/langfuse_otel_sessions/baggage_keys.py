"""Which baggage keys carry session and user ids: those each live ``SessionSpanProcessor``
registered, the defaults and the environment's, read at call time."""

from __future__ import annotations

import itertools
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from urllib.parse import unquote_plus

from .attributes import (
    BAGGAGE_LANGFUSE_PREFIX,
    BAGGAGE_LANGFUSE_SESSION_ID,
    BAGGAGE_LANGFUSE_TRACE_ID,
    BAGGAGE_LANGFUSE_USER_ID,
    DEFAULT_SESSION_BAGGAGE_KEYS,
    DEFAULT_USER_BAGGAGE_KEYS,
    ENV_SESSION_BAGGAGE_KEYS,
    ENV_TRUST_REMOTE_BAGGAGE,
    ENV_USER_BAGGAGE_KEYS,
    LANGFUSE_SESSION_ID,
    LANGFUSE_USER_ID,
)
from .environment import env_bool, env_keys


@dataclass(frozen=True)
class IdKeys:
    """How one processor reads ids from baggage (``session``/``user``, first present wins) and
    stamps them (``*_attributes``; ``given_session_attributes`` only for ids not generated)."""

    session: tuple[str, ...] = DEFAULT_SESSION_BAGGAGE_KEYS
    user: tuple[str, ...] = DEFAULT_USER_BAGGAGE_KEYS
    session_attributes: tuple[str, ...] = (LANGFUSE_SESSION_ID,)
    user_attributes: tuple[str, ...] = (LANGFUSE_USER_ID,)
    given_session_attributes: tuple[str, ...] = ()
    trust_remote: bool = False


def _write_key(keys: tuple[str, ...], preferred: str) -> str:
    """The key ``session()`` writes for a reader: the Langfuse SDK's when read, else the first."""
    return preferred if preferred in keys or not keys else keys[0]


class GuardedKeys(frozenset[str]):
    """The session/user keys, and every ``langfuse_<x>`` key the Langfuse SDK's processor would
    stamp (all but the ``langfuse_trace_id`` root claim)."""

    __slots__ = ()

    def __contains__(self, key: object) -> bool:
        return frozenset.__contains__(self, key) or (
            isinstance(key, str)
            and key.startswith(BAGGAGE_LANGFUSE_PREFIX)
            and key != BAGGAGE_LANGFUSE_TRACE_ID
        )

    def isdisjoint(self, other: Iterable[object]) -> bool:
        return not any(key in self for key in other)


@dataclass(frozen=True)
class KnownKeys:
    """The keys in force: ``reader`` (the first live processor's, else the environment's), the
    unions over every reader, and the keys ``session()`` writes (one per distinct reader)."""

    reader: IdKeys
    session: frozenset[str]
    user: frozenset[str]
    session_writes: tuple[str, ...]
    user_writes: tuple[str, ...]
    session_attributes: frozenset[str]
    user_attributes: frozenset[str]
    given_session_attributes: frozenset[str] = frozenset()

    @cached_property
    def rivals(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The session and user keys read but not written: a scope removes those entries."""
        return (
            tuple(self.session.difference(self.session_writes)),
            tuple(self.user.difference(self.user_writes)),
        )

    @cached_property
    def guarded(self) -> GuardedKeys:
        return GuardedKeys(self.session | self.user)

    @cached_property
    def may_guard(self) -> Callable[[str], bool]:
        """A quick test: ``False`` proves no member of a ``baggage`` header under a guarded key
        (a decoded key is part of the decoded header)."""
        words = (BAGGAGE_LANGFUSE_PREFIX, *sorted(self.guarded))
        search = re.compile("|".join(map(re.escape, words))).search  # OpenTelemetry decodes % and +
        return lambda t: bool(search(t) or (("%" in t or "+" in t) and search(unquote_plus(t))))


_VARIABLES = (ENV_SESSION_BAGGAGE_KEYS, ENV_USER_BAGGAGE_KEYS, ENV_TRUST_REMOTE_BAGGAGE)
_readers: weakref.WeakValueDictionary[int, IdKeys] = weakref.WeakValueDictionary()
_order = itertools.count()
_lock = threading.Lock()
_cache: tuple[object, KnownKeys] | None = None
_generation = 0


def register_reader(keys: IdKeys) -> None:
    """Count ``keys`` among the live readers for as long as the object exists."""
    global _generation  # noqa: PLW0603 - the registry is process-wide by design
    with _lock:
        _readers[next(_order)] = keys
        _generation += 1
        weakref.finalize(keys, _forget)


def _forget() -> None:
    global _generation  # noqa: PLW0603 - the registry is process-wide by design
    _generation += 1


def readers() -> tuple[IdKeys, ...]:
    """The live readers, oldest first."""
    with _lock:
        return tuple(keys for _, keys in sorted(_readers.items()))


def known_keys() -> KnownKeys:
    """The keys in force now (cached until a reader comes or goes or the environment changes)."""
    global _cache  # noqa: PLW0603 - a process-wide cache of the registry
    stamp = (_generation, tuple(map(os.environ.get, _VARIABLES)))
    cached = _cache
    if cached is not None and cached[0] == stamp:
        return cached[1]
    live = readers()
    environment = IdKeys(
        session=env_keys(ENV_SESSION_BAGGAGE_KEYS, DEFAULT_SESSION_BAGGAGE_KEYS),
        user=env_keys(ENV_USER_BAGGAGE_KEYS, DEFAULT_USER_BAGGAGE_KEYS),
        trust_remote=env_bool(ENV_TRUST_REMOTE_BAGGAGE, False),
    )
    writers = live or (environment,)
    every = (*live, environment, IdKeys())

    def union(field: str) -> frozenset[str]:
        return frozenset(key for keys in every for key in getattr(keys, field))

    known = KnownKeys(
        reader=replace(live[0]) if live else environment,  # a copy: the cache keeps no reader alive
        session=union("session"),
        user=union("user"),
        session_writes=tuple(
            dict.fromkeys(_write_key(keys.session, BAGGAGE_LANGFUSE_SESSION_ID) for keys in writers)
        ),
        user_writes=tuple(
            dict.fromkeys(_write_key(keys.user, BAGGAGE_LANGFUSE_USER_ID) for keys in writers)
        ),
        session_attributes=union("session_attributes"),
        user_attributes=union("user_attributes"),
        given_session_attributes=union("given_session_attributes"),
    )
    _cache = (stamp, known)
    return known


def guarded_keys() -> frozenset[str]:
    """Every baggage key the boundary withholds from remote baggage."""
    return known_keys().guarded


def member_key(member: str) -> str | None:
    """The key OpenTelemetry's W3C extractor reads from a ``baggage`` list-member (or ``None``)."""
    name, separator, _ = member.partition("=")
    return unquote_plus(name.strip(" \t")).strip() if separator else None


def member_value(member: str) -> str:
    """The value OpenTelemetry's W3C extractor reads from a list-member that has a key."""
    return unquote_plus(member.partition("=")[2].strip(" \t")).strip()


def keys_generation() -> int:
    """A number that changes whenever a reader comes or goes (for caches of :func:`known_keys`)."""
    return _generation
