"""The trust boundary: where remote baggage enters the process.

Baggage extracted from an incoming request is written by the client, so anyone could send
``baggage: langfuse.session.id=victim`` and file their requests under someone else's session.
At span start that cannot be told apart from baggage the app set itself (a forged header with no
``traceparent`` makes a root span whose parent context holds the forged entries), so the decision
is taken here, in ``extract``:

* untrusted (the default): the ``baggage`` header's list-members whose key — decoded exactly as
  OpenTelemetry's W3C extractor decodes it — is a session or user key (see
  :func:`known_keys`) are withheld: the wrapped propagator never
  sees them, so no span processor (ours, ``BaggageSpanProcessor``, Langfuse's) stamps them and
  they are not forwarded downstream; they are kept aside in the context, where a processor built
  with ``trust_remote_baggage=True`` can still read them;
* trusted (``LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE=true``, for services behind a trusted edge):
  baggage passes through unchanged, as with OpenTelemetry's own propagator.

Everything else is OpenTelemetry's: the same context to start from (``extract`` without a
context starts where the wrapped propagator starts), the same other entries, ``inject`` and
``fields`` unchanged. One exception, private to this package: the entries our own session
middleware wrote into the header of the request it is handling (it vouches for them in the
context) pass, so that the middleware may sit outside OpenTelemetry's server instrumentation.

Zero code, ``extract`` also takes the session / user id from the request headers named by
``LANGFUSE_OTEL_SESSION_HEADER`` / ``LANGFUSE_OTEL_USER_HEADER`` (:mod:`.header_ids`).

On the way out, ``inject`` applies the outbound policy (:mod:`.outbound`): the ids this package
wrote — the vouched entries included — are not sent unless the user opted in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any

from opentelemetry import baggage
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context, get_current, set_value
from opentelemetry.propagators import textmap

from .._logging import RateLimitedLog, logger
from ..attributes import ENV_TRUST_REMOTE_BAGGAGE
from ..baggage_keys import guarded_keys, member_key, member_value, split_members
from ..environment import env_bool
from ..sessions.context_slots import (
    GENERATED_SESSION_ID,
    WITHHELD_REMOTE_ENTRIES,
    generated_session_id,
    mark_own,
    withheld_remote_entries,
)
from .header_ids import with_header_ids
from .outbound import outbound_context, resolve_outbound_policy

#: The entries (key -> value) our session middleware decided and wrote into the ``baggage``
#: header of the request it is handing on, while it does; ``None`` outside a middleware. Not in
#: OpenTelemetry's context: its server instrumentation attaches a context of its own, made from
#: the headers alone, before it starts the server span.
_decided: ContextVar[Mapping[str, object] | None] = ContextVar(
    "langfuse-otel-sessions.decided", default=None
)


def deciding(entries: Mapping[str, str]) -> Token[Mapping[str, object] | None]:
    """Vouch for ``entries`` until the token is reset: the ids our middleware decided for the
    request it runs (possibly none). Only this package calls it."""
    return _decided.set(MappingProxyType(dict(entries)))


def done_deciding(token: Token[Mapping[str, object] | None]) -> None:
    """End what :func:`deciding` started."""
    _decided.reset(token)


def decided_entries() -> Mapping[str, object] | None:
    """What the middleware running now decided for its request, or ``None`` outside one."""
    return _decided.get()


def _vouched() -> Mapping[str, object]:
    return _decided.get() or _EMPTY


_BAGGAGE_HEADER = "baggage"
_EMPTY: Mapping[str, object] = MappingProxyType({})
_log = RateLimitedLog()


def _own_vouched(extracted: Context) -> Context:
    """``extracted`` with the vouched entries it holds recorded as this package's (they are the
    ids our middleware decided), so the outbound policy applies to them, and — when the
    middleware generated the session — recording that it was generated (:mod:`.context_slots`)."""
    vouched = _vouched()
    if not vouched:
        return extracted
    present = baggage.get_all(extracted)
    mine = {key: value for key, value in vouched.items() if present.get(key) == value}
    if not mine:
        return extracted
    generated = generated_session_id()  # the middleware generated the session it vouches for
    if generated is not None and generated in mine.values():
        extracted = set_value(GENERATED_SESSION_ID, generated, extracted)
    return mark_own(extracted, mine)


def separate_members(header: str, guarded: frozenset[str] | None = None) -> tuple[str, list[str]]:
    """Split a ``baggage`` header into what may pass and the guarded members withheld.

    A member is withheld when OpenTelemetry would read a session or user key (``guarded``,
    default :func:`guarded_keys`) from it, unless our middleware
    vouched for exactly that key and value in the current context.
    """
    if guarded is None:
        guarded = guarded_keys()
    vouched = _vouched()
    kept: list[str] = []
    withheld: list[str] = []
    for member in split_members(header):
        key = member_key(member)
        if key in guarded and vouched.get(key, _EMPTY) != member_value(member):
            withheld.append(member)
        else:
            kept.append(member)
    if not withheld:
        return header, withheld
    return ",".join(kept), withheld


class _GuardedGetter(textmap.Getter[textmap.CarrierT]):
    """Hands the wrapped propagator the carrier's ``baggage`` header minus guarded members,
    and remembers what it withheld. One per ``extract`` call."""

    def __init__(self, inner: textmap.Getter[textmap.CarrierT]) -> None:
        self.inner = inner
        self.guarded = guarded_keys()
        self.withheld: list[str] = []

    def get(self, carrier: textmap.CarrierT, key: str) -> list[str] | None:
        values = self.inner.get(carrier, key)
        if values is None or key.lower() != _BAGGAGE_HEADER:
            return values
        try:
            passed: list[str] = []
            for value in values:
                if isinstance(value, str):
                    value, withheld = separate_members(value, self.guarded)  # noqa: PLW2901 - the filtered value
                    self.withheld.extend(withheld)
                passed.append(value)
        except Exception:  # noqa: BLE001 - never raise into the host application; fail closed
            _log.exception("guard", "Could not separate remote session baggage; ignoring it")
            return None
        return passed

    def keys(self, carrier: textmap.CarrierT) -> list[str]:
        return self.inner.keys(carrier)


def _decoded(members: Sequence[str]) -> Mapping[str, object]:
    """The entries OpenTelemetry's own extractor reads from ``members``."""
    extracted = W3CBaggagePropagator().extract({_BAGGAGE_HEADER: ",".join(members)}, Context())
    return baggage.get_all(extracted)


def _record_withheld(context: Context, withheld: Mapping[str, object]) -> Context:
    if not withheld:
        return context
    merged = MappingProxyType({**withheld_remote_entries(context), **withheld})
    return set_value(WITHHELD_REMOTE_ENTRIES, merged, context)


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
        return _guarded_extract(super().extract, self._trusted, carrier, context, getter)


class BaggageGuard(textmap.TextMapPropagator):
    """Wraps any propagator (usually the global composite) and withholds the remote session and
    user entries of the ``baggage`` header from it (unless ``trust_remote_baggage``); ``extract``
    starts from the same context the wrapped one starts from. ``inject`` is the wrapped
    propagator's under the outbound policy (``propagate_session_to``, default from
    ``LANGFUSE_OTEL_PROPAGATE_SESSION_TO``: nowhere); ``fields`` are the wrapped propagator's.

    Entries another propagator brings in some other way (not through the ``baggage`` header)
    are checked after the fact: a session or user entry that was not in the context extraction
    started from is withheld too.
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
        self.outbound = resolve_outbound_policy(propagate_session_to)

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        return _guarded_extract(self.inner.extract, self.trusted, carrier, context, getter)

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


def _guarded_extract(
    extract: Callable[
        [textmap.CarrierT, Context | None, textmap.Getter[textmap.CarrierT]], Context
    ],
    trusted: bool,
    carrier: textmap.CarrierT,
    context: Context | None,
    getter: textmap.Getter[textmap.CarrierT],
) -> Context:
    """A propagator's ``extract`` behind the boundary: the remote session and user entries
    withheld (unless ``trusted``), then the ids of the configured request headers added."""
    if trusted:
        extracted = _own_vouched(extract(carrier, context, getter))
    else:
        guarded = _GuardedGetter(getter)
        extracted = _finish(extract(carrier, context, guarded), context, guarded)
    if _decided.get() is not None:  # a session middleware decides this request: its word is final
        return extracted
    return with_header_ids(extracted, context, carrier, getter)


def _finish(extracted: Context, context: Context | None, getter: _GuardedGetter[Any]) -> Context:
    """Record the withheld members in ``extracted``, after withholding any guarded entry that
    reached it some other way (put back to what ``context`` held, if given). Fails closed:
    should it raise, no remote context is used."""
    try:
        guarded, members = getter.guarded, getter.withheld
        entries = baggage.get_all(extracted)
        if not members and guarded.isdisjoint(entries):
            return extracted  # the common case: nothing to withhold
        withheld = dict(_decoded(members)) if members else {}
        start = baggage.get_all(get_current() if context is None else context)
        vouched = _vouched()
        for key, value in entries.items():
            if key in guarded and start.get(key) is not value and vouched.get(key) != value:
                withheld[key] = value
                if context is not None and key in start:
                    extracted = baggage.set_baggage(key, start[key], extracted)
                else:
                    extracted = baggage.remove_baggage(key, extracted)
        return _own_vouched(_record_withheld(extracted, withheld))
    except Exception:  # noqa: BLE001 - never raise into the host application
        _log.exception("guard", "Could not separate remote session baggage; ignoring it all")
        return Context() if context is None else context


def install_baggage_guard(
    *, trust_remote_baggage: bool = False, propagate_session_to: Sequence[str] | None = None
) -> bool:
    """Wrap the global propagator in a :class:`BaggageGuard` unless it already is one.

    Returns ``True`` when it installed the guard. Instrumentations call
    ``opentelemetry.propagate.extract``/``inject``, which read the global propagator at each
    request, so the guard applies from the next request on. An explicit ``propagate_session_to``
    also replaces the outbound policy of a guard already installed; an untrusting call makes a
    trusting guard untrusting (the stricter wins).
    """
    # Imported here: ``opentelemetry.propagate`` loads the propagators named in OTEL_PROPAGATORS
    # when first imported, ``langfuse_baggage`` (this module) among them.
    from opentelemetry import propagate  # noqa: PLC0415

    current = propagate.get_global_textmap()
    if isinstance(current, BaggageGuard):
        if not trust_remote_baggage:
            current.trusted = False
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
