"""Where remote baggage enters the process: ``extract`` withholds the session and user entries a
request brings unless trusted (``docs/trust-boundary.md``); ``inject`` applies :mod:`.outbound`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from types import MappingProxyType

from opentelemetry import baggage
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context, get_current, get_value, set_value
from opentelemetry.propagators import textmap

from .._logging import RateLimitedLog
from ..attributes import ENV_TRUST_REMOTE_BAGGAGE
from ..baggage_keys import guarded_keys
from ..environment import env_bool
from ..sessions.context_slots import (
    GENERATED_SESSION_ID,
    WITHHELD_REMOTE_ENTRIES,
    mark_own,
    withheld_remote_entries,
)
from .header_ids import with_header_ids
from .outbound import outbound_context, resolve_outbound_policy

#: The entries our session middleware decided and wrote into the ``baggage`` header of the
#: request it hands on (``None`` outside one). A ContextVar: OpenTelemetry's server
#: instrumentation extracts into a context of its own, made from the headers alone.
DECIDED: ContextVar[Mapping[str, object] | None] = ContextVar(
    "langfuse-otel-sessions.decided", default=None
)
_EMPTY: Mapping[str, object] = MappingProxyType({})
_log = RateLimitedLog()
_Extract = Callable[[textmap.CarrierT, Context | None, textmap.Getter[textmap.CarrierT]], Context]


def deciding(entries: dict[str, str]) -> Token[Mapping[str, object] | None]:
    """Vouch for ``entries`` (what our middleware decided; handed over, not copied) until
    ``DECIDED.reset`` with the token."""
    return DECIDED.set(MappingProxyType(entries))


def _own_vouched(extracted: Context) -> Context:
    """``extracted`` with the vouched entries it holds recorded as this package's (so the
    outbound policy applies to them), and whether the middleware generated the session."""
    vouched = DECIDED.get() or _EMPTY
    present = baggage.get_all(extracted)
    mine = {key: value for key, value in vouched.items() if present.get(key) == value}
    if not mine:
        return extracted
    generated = get_value(GENERATED_SESSION_ID)
    if generated is not None and generated in mine.values():
        extracted = set_value(GENERATED_SESSION_ID, generated, extracted)
    return mark_own(extracted, mine)


def _withhold(extracted: Context, context: Context | None) -> Context:
    """``extracted`` without the session and user entries extraction brought (put back to what
    ``context`` held, if given), recorded aside."""
    guarded = guarded_keys()
    entries = baggage.get_all(extracted)
    if guarded.isdisjoint(entries):
        return extracted  # the common case: nothing to withhold
    start = baggage.get_all(get_current() if context is None else context)
    vouched = DECIDED.get() or _EMPTY
    withheld = {}
    for key, value in entries.items():
        if key in guarded and start.get(key) is not value and vouched.get(key) != value:
            withheld[key] = value
            if context is not None and key in start:
                extracted = baggage.set_baggage(key, start[key], extracted)
            else:
                extracted = baggage.remove_baggage(key, extracted)
    if not withheld:
        return extracted
    merged = MappingProxyType({**withheld_remote_entries(extracted), **withheld})
    return set_value(WITHHELD_REMOTE_ENTRIES, merged, extracted)


def _guarded_extract(
    extract: _Extract[textmap.CarrierT],
    trusted: bool,
    carrier: textmap.CarrierT,
    context: Context | None,
    getter: textmap.Getter[textmap.CarrierT],
) -> Context:
    """A propagator's ``extract`` behind the boundary, then the configured header ids added."""
    extracted = extract(carrier, context, getter)
    try:
        extracted = _own_vouched(extracted if trusted else _withhold(extracted, context))
    except Exception:  # noqa: BLE001 - never raise into the host application; fail closed
        _log.exception("guard", "Could not separate remote session baggage; ignoring it all")
        return Context() if context is None else context
    if DECIDED.get() is not None:  # a session middleware decides this request: its word is final
        return extracted
    return with_header_ids(extracted, context, carrier, getter)


class BaggageGuard(textmap.TextMapPropagator):
    """Wraps any propagator (usually the global composite): its ``extract`` behind the trust
    boundary, its ``inject`` under the outbound policy, its ``fields``."""

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


class SessionBaggagePropagator(BaggageGuard):
    """W3C baggage behind the trust boundary: the ``langfuse_baggage`` entry point
    (``OTEL_PROPAGATORS=tracecontext,langfuse_baggage``). Trust defaults to
    ``LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE``."""

    def __init__(
        self,
        trust_remote_baggage: bool | None = None,
        *,
        propagate_session_to: Sequence[str] | None = None,
    ) -> None:
        if trust_remote_baggage is None:
            trust_remote_baggage = env_bool(ENV_TRUST_REMOTE_BAGGAGE, False)
        super().__init__(
            W3CBaggagePropagator(),
            trust_remote_baggage=trust_remote_baggage,
            propagate_session_to=propagate_session_to,
        )


def install_baggage_guard(
    *, trust_remote_baggage: bool = False, propagate_session_to: Sequence[str] | None = None
) -> bool:
    """Wrap the global propagator in a :class:`BaggageGuard`; ``True`` if it did. On a guard
    already there, an untrusting call makes it untrusting and ``propagate_session_to`` replaces
    its policy."""
    # Imported here: opentelemetry.propagate loads OTEL_PROPAGATORS (langfuse_baggage among them).
    from opentelemetry import propagate  # noqa: PLC0415

    current = propagate.get_global_textmap()
    if isinstance(current, BaggageGuard):
        if not trust_remote_baggage:
            current.trusted = False
        if propagate_session_to is not None:
            current.outbound = resolve_outbound_policy(propagate_session_to)
        return False
    guard = BaggageGuard(
        current,
        trust_remote_baggage=trust_remote_baggage,
        propagate_session_to=propagate_session_to,
    )
    propagate.set_global_textmap(guard)
    return True
