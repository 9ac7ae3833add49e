"""Which baggage keys carry session and user ids, and how a ``baggage`` header's keys decode.

The one source of truth for the processor, ``session()``, the propagator guard, the
``langfuse_baggage`` propagator and the middleware:

* every :class:`~langfuse_otel_sessions.SessionSpanProcessor` registers the
  :class:`IdKeys` it reads (weakly: a processor that is gone no longer counts);
* :func:`known_keys` is what the rest consults, at call time, so the order in which processors,
  guards and middlewares are built does not matter: the guarded keys are the default keys, the
  keys named in the environment, and every live processor's keys;
* :func:`member_key` decodes a baggage list-member's key exactly as OpenTelemetry's W3C
  extractor does, so "is this a session key?" is answered the way OpenTelemetry will read it.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Iterable, Set
from dataclasses import dataclass, field, replace
from urllib.parse import unquote_plus

from .attributes import (
    BAGGAGE_LANGFUSE_PREFIX,
    BAGGAGE_LANGFUSE_SESSION_ID,
    BAGGAGE_LANGFUSE_TRACE_ID,
    BAGGAGE_LANGFUSE_USER_ID,
    BAGGAGE_TRACE_ATTRIBUTES,
    DEFAULT_SESSION_BAGGAGE_KEYS,
    DEFAULT_USER_BAGGAGE_KEYS,
    ENV_SESSION_BAGGAGE_KEYS,
    ENV_TRUST_REMOTE_BAGGAGE,
    ENV_USER_BAGGAGE_KEYS,
    LANGFUSE_SESSION_ID,
    LANGFUSE_USER_ID,
)
from .environment import env_bool, env_keys, env_reader


@dataclass(frozen=True)
class IdKeys:
    """How one reader (a :class:`SessionSpanProcessor`) takes ids from baggage and stamps them.

    ``session`` / ``user``: baggage keys read in order (the first present one wins);
    ``session_attributes`` / ``user_attributes``: span attributes it stamps the ids on;
    ``given_session_attributes``: those of them stamped only with session ids that were given,
    never with generated ones (``gen_ai.conversation.id`` under ``also_emit``).
    """

    session: tuple[str, ...] = DEFAULT_SESSION_BAGGAGE_KEYS
    user: tuple[str, ...] = DEFAULT_USER_BAGGAGE_KEYS
    session_attributes: tuple[str, ...] = (LANGFUSE_SESSION_ID,)
    user_attributes: tuple[str, ...] = (LANGFUSE_USER_ID,)
    given_session_attributes: tuple[str, ...] = ()
    trust_remote: bool = False

    @property
    def session_write_key(self) -> str:
        """The key ``session()`` writes for this reader: the Langfuse SDK's key
        (``langfuse_session_id``) when the reader reads it, else its first key."""
        return _write_key(self.session, BAGGAGE_LANGFUSE_SESSION_ID)

    @property
    def user_write_key(self) -> str:
        """The key written for the user id (``langfuse_user_id`` when read, else the first)."""
        return _write_key(self.user, BAGGAGE_LANGFUSE_USER_ID)


def _write_key(keys: tuple[str, ...], preferred: str) -> str:
    if preferred in keys or not keys:
        return preferred
    return keys[0]


def is_langfuse_entry(key: object) -> bool:
    """Whether the Langfuse SDK's span processor would stamp a baggage entry under ``key``
    (decoded as OpenTelemetry decodes it): every ``langfuse_``-prefixed key — unknown ones
    become ``langfuse.trace.metadata.<x>`` — except the ``langfuse_trace_id`` root claim."""
    return (
        isinstance(key, str)
        and key.startswith(BAGGAGE_LANGFUSE_PREFIX)
        and key != BAGGAGE_LANGFUSE_TRACE_ID
    )


class GuardedKeys(frozenset[str]):
    """Guarded baggage keys: the session/user keys and every key the Langfuse SDK would stamp
    (:func:`is_langfuse_entry`: ``langfuse_tags``, ``langfuse_metadata_<k>``, ``langfuse_<x>``)."""

    __slots__ = ()

    def __contains__(self, key: object) -> bool:
        return frozenset.__contains__(self, key) or is_langfuse_entry(key)

    def isdisjoint(self, other: Iterable[object]) -> bool:
        other = tuple(other)
        return frozenset.isdisjoint(self, other) and not any(key in self for key in other)

    def __or__(self, other: Set[str]) -> GuardedKeys:  # type: ignore[override]
        return GuardedKeys(frozenset.__or__(self, frozenset(other)))


@dataclass(frozen=True)
class KnownKeys:
    """Everything the trust boundary and ``session()`` need to know about keys, at one moment.

    ``reader``: the keys of the first live processor (else from the environment): what
    :func:`~langfuse_otel_sessions.current_session_id` mirrors.
    ``session`` / ``user``: every baggage key any reader takes an id from, defaults included.
    ``session_writes`` / ``user_writes``: the keys ``session()`` writes, one per distinct reader.
    ``session_attributes`` / ``user_attributes``: every span attribute a reader may stamp;
    ``given_session_attributes``: those no reader stamps with a generated session id.
    """

    reader: IdKeys
    session: frozenset[str]
    user: frozenset[str]
    session_writes: tuple[str, ...]
    user_writes: tuple[str, ...]
    session_attributes: frozenset[str]
    user_attributes: frozenset[str]
    given_session_attributes: frozenset[str] = frozenset()
    guarded: GuardedKeys = field(init=False)

    def __post_init__(self) -> None:
        guarded = GuardedKeys(self.session | self.user | BAGGAGE_TRACE_ATTRIBUTES.keys())
        object.__setattr__(self, "guarded", guarded)


#: The variables :func:`known_keys` / :func:`guarded_keys` depend on, read for their cache
#: checks (several times a request: see benchmarks/middleware.py).
_known_keys_variables = env_reader(
    ENV_SESSION_BAGGAGE_KEYS, ENV_USER_BAGGAGE_KEYS, ENV_TRUST_REMOTE_BAGGAGE
)
_guarded_keys_variables = env_reader(ENV_SESSION_BAGGAGE_KEYS, ENV_USER_BAGGAGE_KEYS)

_readers: weakref.WeakValueDictionary[int, IdKeys] = weakref.WeakValueDictionary()
_order = itertools.count()
_lock = threading.Lock()
_cache: tuple[object, KnownKeys] | None = None
_generation = 0


def register_reader(keys: IdKeys) -> None:
    """Count ``keys`` among the live readers for as long as the object exists (keep a
    reference to it, as the processor does)."""
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


def environment_keys() -> IdKeys:
    """The keys a processor built now without arguments would read."""
    return IdKeys(
        session=env_keys(ENV_SESSION_BAGGAGE_KEYS, DEFAULT_SESSION_BAGGAGE_KEYS),
        user=env_keys(ENV_USER_BAGGAGE_KEYS, DEFAULT_USER_BAGGAGE_KEYS),
        trust_remote=env_bool(ENV_TRUST_REMOTE_BAGGAGE, False),
    )


def known_keys() -> KnownKeys:
    """The keys in force now: live readers, the environment's keys and the defaults.

    Cheap on repeat calls (cached until a reader comes or goes or the environment changes).
    """
    global _cache  # noqa: PLW0603 - a process-wide cache of the registry
    stamp = (_generation, _known_keys_variables())
    cached = _cache
    if cached is not None and cached[0] == stamp:
        return cached[1]
    live = readers()
    environment = environment_keys()
    writers = live or (environment,)
    every = (*live, environment, IdKeys())
    known = KnownKeys(
        reader=replace(live[0]) if live else environment,  # a copy: the cache keeps no reader alive
        session=frozenset(key for keys in every for key in keys.session),
        user=frozenset(key for keys in every for key in keys.user),
        session_writes=tuple(dict.fromkeys(keys.session_write_key for keys in writers)),
        user_writes=tuple(dict.fromkeys(keys.user_write_key for keys in writers)),
        session_attributes=frozenset(key for keys in every for key in keys.session_attributes),
        user_attributes=frozenset(key for keys in every for key in keys.user_attributes),
        given_session_attributes=frozenset(
            key for keys in every for key in keys.given_session_attributes
        ),
    )
    _cache = (stamp, known)
    return known


_guarded_cache: tuple[object, frozenset[str]] | None = None


def guarded_keys() -> frozenset[str]:
    """Every baggage key the boundary withholds from remote baggage (see :func:`known_keys`).

    On every request's ``extract``: cached on the two environment variables it depends on."""
    global _guarded_cache  # noqa: PLW0603 - a process-wide cache of the registry
    stamp = (_generation, _guarded_keys_variables())
    cached = _guarded_cache
    if cached is not None and cached[0] == stamp:
        return cached[1]
    guarded = known_keys().guarded
    _guarded_cache = (stamp, guarded)
    return guarded


def member_key(member: str) -> str | None:
    """The key OpenTelemetry's W3C baggage extractor reads from one list-member of a
    ``baggage`` header, or ``None`` when it reads none (no ``=``).

    OpenTelemetry strips spaces and tabs, percent-decodes with ``unquote_plus`` (so ``%2E`` is
    ``.`` and ``+`` a space), then strips whitespace: ``session%2Eid``, ``session.id+`` and
    `` session.id`` are all ``session.id``.
    """
    name, separator, _ = member.partition("=")
    if not separator:
        return None
    if "%" not in name and "+" not in name:  # nothing to decode (the common case)
        return name.strip()
    return unquote_plus(name.strip(" \t")).strip()


def member_value(member: str) -> str:
    """The value OpenTelemetry's W3C extractor reads from a list-member that has a key."""
    return unquote_plus(member.partition("=")[2].strip(" \t")).strip()


def split_members(header: str) -> list[str]:
    """The list-members of a ``baggage`` header, as OpenTelemetry splits them (on commas;
    the spaces and tabs around each comma are stripped by :func:`member_key` and the value
    decoding alike)."""
    return header.split(",")


def keys_generation() -> int:
    """A number that changes whenever a reader comes or goes: a cache of :func:`known_keys`
    checked against it reads the environment once (the middleware, on every request)."""
    return _generation
