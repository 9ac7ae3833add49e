"""The trust boundary: where remote baggage enters the process.

Baggage extracted from an incoming request is written by the client, so anyone could send
``baggage: langfuse.session.id=victim`` and file their requests under someone else's session.
At span start that cannot be told apart from baggage the app set itself (a forged header with no
``traceparent`` makes a root span whose parent context holds the forged entries), so the decision
is taken here, in ``extract``:

* untrusted (the default): session and user entries that the extract *added* are withheld —
  removed from the baggage, so no span processor (ours, ``BaggageSpanProcessor``, Langfuse's)
  stamps them and they are not forwarded downstream — and kept aside in the context, where a
  processor built with ``trust_remote_baggage=True`` can still read them;
* trusted (``LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE=true``, for services behind a trusted edge):
  baggage passes through unchanged, as with OpenTelemetry's own propagator.

Everything else in the baggage is left alone. On the way out, ``inject`` applies the outbound
policy (:mod:`.outbound`): the ids this package wrote are not sent unless the user opted in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from opentelemetry import baggage, propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context, create_key, get_current, get_value, set_value
from opentelemetry.propagators import textmap

from ._logging import logger
from .attributes import (
    DEFAULT_SESSION_BAGGAGE_KEYS,
    DEFAULT_USER_BAGGAGE_KEYS,
    ENV_SESSION_BAGGAGE_KEYS,
    ENV_TRUST_REMOTE_BAGGAGE,
    ENV_USER_BAGGAGE_KEYS,
)
from .environment import env_bool, env_keys
from .outbound import outbound_context, resolve_outbound_policy

#: Context slot holding the session/user entries withheld from remote baggage.
WITHHELD_REMOTE_ENTRIES = create_key("langfuse-otel-sessions.withheld-remote-baggage")


def guarded_baggage_keys() -> frozenset[str]:
    """The baggage keys the boundary withholds: the default session and user keys plus any
    configured through the key environment variables."""
    return frozenset(
        (
            *DEFAULT_SESSION_BAGGAGE_KEYS,
            *DEFAULT_USER_BAGGAGE_KEYS,
            *env_keys(ENV_SESSION_BAGGAGE_KEYS, ()),
            *env_keys(ENV_USER_BAGGAGE_KEYS, ()),
        )
    )


def withheld_remote_entries(context: Context | None = None) -> Mapping[str, object]:
    """The session/user entries the boundary withheld from the request's remote baggage."""
    entries = get_value(WITHHELD_REMOTE_ENTRIES, context)
    return entries if isinstance(entries, Mapping) else MappingProxyType({})


def withhold_remote_entries(before: Context, after: Context, keys: Iterable[str]) -> Context:
    """Return ``after`` with the guarded entries that ``extract`` added or changed since
    ``before`` put back to what they were, and recorded in :data:`WITHHELD_REMOTE_ENTRIES`."""
    extracted = baggage.get_all(after)
    if not extracted:
        return after
    local = baggage.get_all(before)
    withheld = {
        key: extracted[key]
        for key in keys
        if key in extracted and (key not in local or local[key] is not extracted[key])
    }
    if not withheld:
        return after
    context = after
    for key in withheld:
        if key in local:
            context = baggage.set_baggage(key, local[key], context)
        else:
            context = baggage.remove_baggage(key, context)
    earlier = withheld_remote_entries(before)
    return set_value(WITHHELD_REMOTE_ENTRIES, MappingProxyType({**earlier, **withheld}), context)


def _withhold_or_drop(before: Context, after: Context, keys: Iterable[str]) -> Context:
    """:func:`withhold_remote_entries`, failing closed: should it ever raise, the request's
    remote context is dropped rather than let its session entries through."""
    try:
        return withhold_remote_entries(before, after, keys)
    except Exception:  # noqa: BLE001 - never raise into the host application
        logger.exception("Could not separate remote session baggage; ignoring remote context")
        return before


class SessionBaggagePropagator(W3CBaggagePropagator):
    """W3C baggage propagator that withholds remote session and user entries unless trusted.

    Registered as the ``langfuse_baggage`` entry point:
    ``OTEL_PROPAGATORS=tracecontext,langfuse_baggage``.
    Trust comes from ``trust_remote_baggage`` or ``LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE``; where
    the ids this package wrote may be injected, from ``propagate_session_to`` or
    ``LANGFUSE_OTEL_PROPAGATE_SESSION_TO`` (default: nowhere).
    """

    def __init__(
        self,
        trust_remote_baggage: bool | None = None,
        *,
        propagate_session_to: Sequence[str] | None = None,
    ) -> None:
        self._trusted = (
            env_bool(ENV_TRUST_REMOTE_BAGGAGE, False)
            if trust_remote_baggage is None
            else trust_remote_baggage
        )
        self._keys = guarded_baggage_keys()
        self.outbound = resolve_outbound_policy(propagate_session_to)

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        super().inject(carrier, outbound_context(context, self.outbound), setter)

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        before = get_current() if context is None else context
        after = super().extract(carrier, before, getter)
        if self._trusted or after is before:
            return after
        return _withhold_or_drop(before, after, self._keys)


class BaggageGuard(textmap.TextMapPropagator):
    """Wraps any propagator (usually the global composite) and withholds the remote session and
    user entries its ``extract`` adds (unless ``trust_remote_baggage``). ``inject`` is the wrapped
    propagator's, under the outbound policy (``propagate_session_to``, default from
    ``LANGFUSE_OTEL_PROPAGATE_SESSION_TO``); ``fields`` are the wrapped propagator's.

    Called without a context, ``extract`` builds on the current context (OpenTelemetry's own
    propagators start from an empty one), so what the process decided before the request's
    headers were read — e.g. a session middleware placed outside the server instrumentation —
    is kept, and only what the headers add is weighed.
    """

    def __init__(
        self,
        inner: textmap.TextMapPropagator,
        *,
        trust_remote_baggage: bool = False,
        propagate_session_to: Sequence[str] | None = None,
    ) -> None:
        self.inner = inner
        self.trusted = trust_remote_baggage
        self._keys = guarded_baggage_keys()
        self.outbound = resolve_outbound_policy(propagate_session_to)

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        before = get_current() if context is None else context
        after = self.inner.extract(carrier, before, getter)
        if self.trusted or after is before:
            return after
        return _withhold_or_drop(before, after, self._keys)

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        self.inner.inject(carrier, outbound_context(context, self.outbound), setter)

    @property
    def fields(self) -> set[str]:
        return self.inner.fields


def install_baggage_guard(
    *, trust_remote_baggage: bool = False, propagate_session_to: Sequence[str] | None = None
) -> bool:
    """Wrap the global propagator in a :class:`BaggageGuard` unless it already is one.

    Returns ``True`` when it installed the guard. Instrumentations call
    ``opentelemetry.propagate.extract``/``inject``, which read the global propagator at each
    request, so the guard applies from the next request on. An explicit ``propagate_session_to``
    also replaces the outbound policy of a guard already installed.
    """
    current = propagate.get_global_textmap()
    if isinstance(current, BaggageGuard):
        if not trust_remote_baggage:
            current.trusted = False  # the stricter wins
        if propagate_session_to is not None:
            current.outbound = resolve_outbound_policy(propagate_session_to)
        return False
    propagate.set_global_textmap(
        BaggageGuard(
            current,
            trust_remote_baggage=trust_remote_baggage,
            propagate_session_to=propagate_session_to,
        )
    )
    logger.debug("Guarding remote session baggage around %s", type(current).__name__)
    return True
